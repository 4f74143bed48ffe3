"""One table of run options for the main command, bench and eval: command line > run file > defaults."""

from __future__ import annotations

import argparse
import pytest

from faceanon_video.cli import build_parser
from faceanon_video.config import RunConfig
from faceanon_video.errors import ConfigError
from faceanon_video.options import OPTIONS, add_pipeline_arguments, config_from_args


@pytest.fixture
def run_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(RunConfig(mode="mosaic", min_face_px=40, track=False, crf=30, input_options={"a": "1"}).to_json())
    return path


def test_main_command_precedence(run_file):
    parser = build_parser()
    config = config_from_args(parser.parse_args(["in.mp4", "--config", str(run_file), "--mode", "blur", "--crf", "20", "--input-option", "b=2"]))
    assert (config.mode, config.crf) == ("blur", 20)  # given: both equal RunConfig's defaults
    assert config.min_face_px == 40 and config.track is False  # from the run file
    assert config.input_options == {"b": "2"}  # given: replaces the file's
    assert config.preset == RunConfig().preset  # neither: the default
    assert config_from_args(parser.parse_args(["in.mp4"])) == RunConfig()


@pytest.mark.parametrize("command", ["bench", "eval"])
def test_bench_and_eval_take_the_same_options_with_the_same_precedence(run_file, command):
    parser = argparse.ArgumentParser()
    add_pipeline_arguments(parser)
    args = parser.parse_args(["--config", str(run_file), "--mode", "blur", "--min-face", "24"])
    config = config_from_args(args, progress=False)
    assert (config.mode, config.min_face_px, config.track, config.crf, config.progress) == ("blur", 24, False, 30, False)
    shared = {o.dest for o in OPTIONS if o.shared}
    assert {"mode", "detector", "thresh", "track", "detect_every", "workers", "backend", "steps", "key_file"} <= shared
    assert config_from_args(parser.parse_args(["--no-track"])).track is False


def test_help_shows_every_default():
    text = " ".join(build_parser().format_help().split())
    for shown in ("how faces are replaced (default: blur)", "(default: 1.3)", "(default: 24)", "(default: 15)", "(default: ultrafast)", "(default: 200.0)"):
        assert shown in text
    parser = argparse.ArgumentParser()
    add_pipeline_arguments(parser)
    assert "(default: 1.3)" in " ".join(parser.format_help().split())


def test_model_dir_falls_back_to_the_environment(monkeypatch, run_file):
    monkeypatch.setenv("FACEANON_MODEL_DIR", "/models")
    parser = build_parser()
    assert config_from_args(parser.parse_args(["x"])).model_dir == "/models"
    assert config_from_args(parser.parse_args(["x", "--model-dir", "/other"])).model_dir == "/other"


def test_second_detector_is_on_by_default_and_checked_in_run_files(tmp_path):
    parser = build_parser()
    assert config_from_args(parser.parse_args(["in.mp4"])).second_detector is True
    assert config_from_args(parser.parse_args(["in.mp4", "--no-second-detector"])).second_detector is False
    assert config_from_args(parser.parse_args(["in.mp4", "--second-detector"])).second_detector is True
    with pytest.raises(ConfigError, match="--second-detector must be true or false"):  # a run file's value: typed
        RunConfig(second_detector="no")


@pytest.mark.parametrize("start, end", [(1e308, None), (None, 1e308), (1e18, None)])
def test_a_span_beyond_any_video_is_a_settings_error(start, end):
    # --start 1e308 once reached the decoder's seek and overflowed there (an internal error).
    from faceanon_video.errors import ConfigError

    with pytest.raises(ConfigError, match="seconds"):
        RunConfig(start_s=start, end_s=end).validate()


def test_help_never_shows_a_missing_default():
    # --report, --spare and --only (list fields) showed "(default: <dataclasses._MISSING_TYPE object at 0x...>)".
    text = build_parser().format_help()
    assert "MISSING" not in text and "object at 0x" not in text


def test_vault_quality_without_a_vault_is_refused():
    # It was accepted and silently ignored: a user asking for an exact vault got no vault at all.
    with pytest.raises(ConfigError, match="--vault-quality needs --vault"):
        RunConfig(vault_quality="exact").validate()
