"""Red-team findings on output paths: an output that names one of the run's inputs (the video, the
key, the plan) is refused even with --overwrite (it used to be overwritten: the input was lost), and
the same path given for two outputs is refused with a clear line (two writers shared one temporary
file)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from faceanon_video.cli import main
from faceanon_video.errors import EXIT_USER
from tests.conftest import CARPHONE


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def clip(tmp_path) -> Path:
    path = tmp_path / "in.mp4"
    shutil.copyfile(CARPHONE, path)
    (tmp_path / "key").write_bytes(b"k" * 32)
    return path


@pytest.mark.parametrize("option", ["--save-tracks", "--vault", "--people", "--report"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(clip, tmp_path, capsys, option):
    before = digest(clip)
    target = clip if option != "--report" else clip.with_suffix(".json")  # a report must end in .json
    if option == "--report":
        shutil.copyfile(clip, target)  # "the input" here: a file the run reads is a plain input too
        argv = [str(target), "-o", str(tmp_path / "o.mp4"), "--report", str(target), "--overwrite"]
    else:
        argv = [str(clip), "-o", str(tmp_path / "o.mp4"), "--key-file", str(tmp_path / "key"), option, str(clip), "--overwrite"]
    code = main(argv + ["-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USER, err
    assert ("input" in err or "--report" in err) and len(err.strip().splitlines()) == 1
    assert digest(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.mp4", "key"] + ([target.name] if target != clip else []))


def test_an_output_that_is_the_key_file_is_refused(clip, tmp_path, capsys):
    key = tmp_path / "key"
    code = main([str(clip), "-o", str(tmp_path / "o.mp4"), "--key-file", str(key), "--vault", str(tmp_path / "v.favault"), "--save-tracks", str(key), "--overwrite", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USER and "--key-file" in err, err
    assert key.read_bytes() == b"k" * 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "key"]


@pytest.mark.parametrize("first, second", [("-o", "--save-tracks"), ("--vault", "--save-tracks"), ("--vault", "--people")])
def test_one_path_for_two_outputs_is_refused_with_a_clear_line(clip, tmp_path, capsys, first, second):
    same = tmp_path / "same.mp4"
    code = main([str(clip), "--key-file", str(tmp_path / "key"), *(["-o", str(tmp_path / "o.mp4")] if first != "-o" else []), first, str(same), second, str(same), "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USER, err
    assert first in err and second in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "key"]


def test_two_inputs_of_one_stem_sharing_a_vault_are_refused_before_any_work(tmp_path, capsys):
    """a.mp4 and a.mkv in one folder both map to VAULT/a.favault: with --overwrite the second used
    to replace the first's vault silently (a_anonymized.mp4 left with no way to restore it)."""
    folder, out, vaults = tmp_path / "in", tmp_path / "out", tmp_path / "vaults"
    for path in (folder, out, vaults):
        path.mkdir()
    shutil.copyfile(CARPHONE, folder / "a.mp4")
    shutil.copyfile(CARPHONE, folder / "a.mkv")
    (tmp_path / "key").write_bytes(b"k" * 32)
    code = main([str(folder), "-o", str(out), "--vault", str(vaults), "--key-file", str(tmp_path / "key"), "--overwrite", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USER, err
    assert "a.favault" in err and "a.mkv" in err and "a.mp4" in err and len(err.strip().splitlines()) == 1
    assert list(out.iterdir()) == [] and list(vaults.iterdir()) == []


@pytest.mark.parametrize("target", ["in.mp4", "key", "o.mp4"])
def test_save_config_naming_the_input_the_key_or_the_output_is_refused(clip, tmp_path, capsys, target):
    """--save-config was written before any check: over the input (or the key) with --overwrite."""
    before = {p.name: digest(p) for p in tmp_path.iterdir()}
    code = main([str(clip), "-o", str(tmp_path / "o.mp4"), "--key-file", str(tmp_path / "key"), "--save-config", str(tmp_path / target), "--overwrite", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USER and "--save-config" in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: digest(p) for p in tmp_path.iterdir()} == before


def test_restore_never_writes_over_its_vault(clip, tmp_path, capsys):
    """restore -o VAULT --overwrite (a vault named .mp4): only the anonymized video was protected; the
    vault, the one copy of the original faces, was replaced by the restored video."""
    vault = tmp_path / "faces.mp4"
    assert main([str(clip), "-o", str(tmp_path / "o.mp4"), "--key-file", str(tmp_path / "key"), "--vault", str(vault), "-q"]) == 0
    before = digest(vault)
    code = main(["restore", str(tmp_path / "o.mp4"), "--vault", str(vault), "--key-file", str(tmp_path / "key"), "-o", str(vault), "--overwrite", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USER and "--vault" in err, err
    assert digest(vault) == before
