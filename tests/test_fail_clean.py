"""Fail clean (issue 14): every user mistake is one line and exit 2 before any work; every output
follows one rule (temporary name, renamed on success, refused if present without --overwrite); a full
or read-only destination and SIGTERM leave nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from faceanon_video.cli import main
from faceanon_video.errors import EXIT_INTERRUPTED, EXIT_USER
from tests.conftest import CARPHONE, HAMILTON

ROOT = Path(__file__).resolve().parents[1]


def run(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def files_in(folder: Path) -> list[str]:
    """Every file in ``folder``, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir())


def one_line_user_error(code: int, err: str, *words: str) -> None:
    assert code == EXIT_USER, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("faceanon-video: error:"), err
    for word in words:
        assert word in lines[0], err


@pytest.mark.parametrize(
    "option, named",
    [
        (["--crf", "99"], "--crf"),
        (["--crf", "-1"], "--crf"),
        (["--preset", "fastest"], "--preset"),
        (["--codec", "nope"], "--codec"),
        (["--codec", "aac"], "--codec"),
        (["--start", "nan"], "--start"),
        (["--end", "inf"], "--end"),
        (["--start", "-3"], "--start"),
        (["--mask-scale", "nan"], "--mask-scale"),
        (["--thresh", "nan"], "--thresh"),
        (["--deadline-ms", "nan"], "--deadline"),
        (["--detect-every", "1000000"], "--detect-every"),
        (["--detect-every", "31"], "--detect-every"),
        (["--min-face", "inf"], "--min-face"),
    ],
)
def test_bad_setting_is_one_line_user_error_and_nothing_written(tmp_path, capsys, option, named):
    out = tmp_path / "out.mp4"
    code, err = run([CARPHONE, "-o", out, "-q", *option], capsys)
    one_line_user_error(code, err, named)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", ["--config", "not valid JSON"]),
        ('["blur"]', ["--config", "JSON object"]),
        ('{"crf": "high"}', ["--crf", "whole number"]),
        ('{"mask_scale": null}', ["--mask-scale", "must be set"]),
        ('{"track": "yes"}', ["--no-track", "true or false"]),
        ('{"colour": 1}', ["unknown settings", "colour"]),
        (b"\xff\xfe\x00\x81binary", ["--config", "not a text file"]),
        (None, ["--config", "No such file"]),
    ],
)
def test_bad_run_file_is_one_line_user_error(tmp_path, capsys, content, words):
    config = tmp_path / "run.json"
    if isinstance(content, bytes):
        config.write_bytes(content)
    elif content is not None:
        config.write_text(content)
    code, err = run([CARPHONE, "-o", tmp_path / "out.mp4", "-q", "--config", config], capsys)
    one_line_user_error(code, err, *words)
    assert not (tmp_path / "out.mp4").exists()


def test_save_config_into_missing_folder_is_user_error(tmp_path, capsys):
    code, err = run([CARPHONE, "-o", tmp_path / "out.mp4", "-q", "--save-config", tmp_path / "no" / "run.json"], capsys)
    one_line_user_error(code, err, "does not exist")
    assert files_in(tmp_path) == []


def test_save_config_is_refused_over_an_existing_file(tmp_path, capsys):
    saved = tmp_path / "run.json"
    saved.write_text("mine")
    code, err = run([CARPHONE, "-o", tmp_path / "out.mp4", "-q", "--save-config", saved], capsys)
    one_line_user_error(code, err, "already exists")
    assert saved.read_text() == "mine"


def test_image_with_video_output_name_is_user_error(tmp_path, capsys):
    image = ROOT / "tests" / "data" / "images" / "astronaut.png"
    code, err = run([image, "-o", tmp_path / "out.mp4", "-q"], capsys)
    one_line_user_error(code, err, "is an image")
    assert files_in(tmp_path) == []


def test_video_with_image_output_name_is_user_error(tmp_path, capsys):
    code, err = run([CARPHONE, "-o", tmp_path / "out.png", "-q"], capsys)
    one_line_user_error(code, err, "is a video")
    assert files_in(tmp_path) == []


def test_gif_with_default_output_name_becomes_mp4(tmp_path, capsys):
    gif = tmp_path / "clip.gif"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(CARPHONE), "-frames:v", "12", str(gif)], check=True)
    code, err = run([gif, "-q"], capsys)
    assert code == 0, err
    with av.open(str(tmp_path / "clip_anonymized.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12


def write_video(path: Path, width: int, height: int, frames: int = 5, codec: str = "ffv1") -> Path:
    with av.open(str(path), "w") as c:
        stream = c.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 90, np.uint8), format="rgb24")
            frame.pts = i
            c.mux(stream.encode(frame))
        c.mux(stream.encode())
    return path


def test_1x1_video_is_a_clear_user_error(tmp_path, capsys):
    tiny = write_video(tmp_path / "tiny.mkv", 1, 1)
    code, err = run([tiny, "-o", tmp_path / "out.mp4", "-q"], capsys)
    one_line_user_error(code, err, "1x1 pixels")
    assert files_in(tmp_path) == ["tiny.mkv"]


def test_save_tracks_is_refused_over_an_existing_file(tmp_path, capsys):
    tracks = tmp_path / "t.jsonl"
    tracks.write_text("mine")
    code, err = run([CARPHONE, "-o", tmp_path / "out.mp4", "-q", "--save-tracks", tracks], capsys)
    one_line_user_error(code, err, "already exists")
    assert tracks.read_text() == "mine" and files_in(tmp_path) == ["t.jsonl"]
    assert main([str(CARPHONE), "-o", str(tmp_path / "out.mp4"), "-q", "--save-tracks", str(tracks), "--overwrite"]) == 0
    assert len(tracks.read_text().splitlines()) == 120


# Full and read-only destinations: a small tmpfs mounted for the test (needs root; skipped otherwise).


@pytest.fixture
def mount_tmpfs(tmp_path):
    mounted = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def test_full_disk_reports_no_space_and_leaves_no_temp_file(tmp_path, capsys, mount_tmpfs):
    full = mount_tmpfs("full", "size=96k")
    key = tmp_path / "key"
    key.write_text("0123456789abcdef0123456789abcdef")
    code, err = run([HAMILTON, "-o", full / "out.mp4", "-q", "--vault", full / "v.favault", "--key-file", key, "--save-tracks", full / "t.jsonl"], capsys)
    assert code == 1, err
    assert f"no space left on {full}" in err and "internal error" not in err, err
    assert files_in(full) == []  # no video, vault, tracks, nor any hidden temporary file


def test_read_only_destination_is_reported(tmp_path, capsys, mount_tmpfs):
    read_only = mount_tmpfs("ro", "ro,size=1m")
    code, err = run([CARPHONE, "-o", read_only / "out.mp4", "-q"], capsys)
    assert code == 1 and f"read-only {read_only}" in err, err
    assert files_in(read_only) == []


def test_sigterm_on_a_file_run_removes_every_temp_file(tmp_path):
    key = tmp_path / "key"
    key.write_text("0123456789abcdef0123456789abcdef")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "faceanon_video.cli", str(HAMILTON), "-o", str(out / "h.mp4"), "-q", "--vault", str(out / "h.favault"), "--key-file", str(key), "--save-tracks", str(out / "h.jsonl")]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(name.startswith(".h.partial") and name.endswith(".mp4") for name in os.listdir(out)):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be interrupted"
            time.sleep(0.02)
        time.sleep(0.3)  # frames are being written
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted" in err
    assert files_in(out) == []


@pytest.mark.parametrize("role", ["input", "--spare", "verify"])
def test_truncated_photo_is_one_clear_line_and_nothing_written(tmp_path, capfd, role):
    """A cut JPEG was half-decoded by OpenCV (grey below the cut) with libjpeg's bare warning on
    stderr; a reference photo cut below the face even kept working. Now: refused, one line."""
    whole = (Path(__file__).parent / "data" / "images" / "two_people.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    out.mkdir()
    if role == "input":
        args = [cut, "-o", out / "x.jpg", "-q"]
    elif role == "--spare":
        args = [CARPHONE, "-o", out / "x.mp4", "--spare", cut, "-q"]
    else:
        key = tmp_path / "k.key"
        key.write_bytes(os.urandom(32))
        args = ["verify", "--people", tmp_path / "none.people", "--key-file", key, "--face", cut]
    code = main([str(a) for a in args])
    captured = capfd.readouterr()
    one_line_user_error(code, captured.err, "cut.jpg", "truncated")
    assert "Premature end" not in captured.out + captured.err
    assert files_in(out) == []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder nobody can create files in (Linux /proc)")
def test_report_into_a_folder_that_takes_no_files_fails_before_any_work(tmp_path, capsys):
    """The report was written after the video was committed: an unwritable report folder gave an
    'internal error: FileNotFoundError' and left the video behind."""
    out = tmp_path / "out.mp4"
    code = main([str(CARPHONE), "-o", str(out), "--report", "/proc/faceanon-report.json", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code not in (0, 70) and len(err) == 1 and err[0].startswith("faceanon-video: error: ") and "/proc" in err[0], err
    assert "does not exist" not in err[0]  # /proc exists: it takes no files
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a folder nobody can create files in (Linux /proc)")
@pytest.mark.parametrize("option,name", [("--people", "p.people"), ("--save-tracks", "t.jsonl"), ("--vault", "v.favault")])
def test_any_output_into_a_folder_that_takes_no_files_fails_before_any_work(tmp_path, capsys, monkeypatch, option, name):
    """Such a folder was found only when that output was written, after the whole video was encoded."""
    from faceanon_video import pipeline

    def never(*args, **kwargs):
        raise AssertionError("the video was processed")

    monkeypatch.setattr(pipeline, "process_video", never)
    key = tmp_path / "key"
    key.write_text("0123456789abcdef0123456789abcdef")
    out = tmp_path / "out.mp4"
    code = main([str(CARPHONE), "-o", str(out), option, f"/proc/{name}", "--key-file", str(key), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code not in (0, 70) and len(err) == 1 and err[0].startswith("faceanon-video: error: ") and "/proc" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]
