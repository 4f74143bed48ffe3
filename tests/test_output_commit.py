"""A run with several outputs (video, vault, tracks, people sidecar, reports, plan) commits them
together: a write that fails in any of them, however late (the report is written after the video
is encoded), leaves no file at any destination and no temporary file; --overwrite keeps the
user's previous files until the new set is complete."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from faceanon_video import segments
from faceanon_video.cli import main
from faceanon_video.errors import EXIT_FAILED, OutputError
from faceanon_video.io.decode import video_sha256
from faceanon_video.track.tracks_io import TrackWriter
from tests.conftest import CARPHONE

OUTPUTS = ["out.mp4", "v.favault", "t.jsonl", "p.people", "r.json", "r.md"]


def every_output(out: Path, key: Path) -> list[str]:
    return [
        "-o", out / "out.mp4", "--vault", out / "v.favault", "--key-file", key, "--save-tracks", out / "t.jsonl",
        "--people", out / "p.people", "--report", out / "r.json", "--report", out / "r.md",
    ]


@pytest.fixture
def key(tmp_path) -> Path:
    path = tmp_path / "key"
    path.write_bytes(b"k" * 32)
    return path


@pytest.fixture
def out(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def run(argv, capsys) -> tuple[int, list[str]]:
    code = main([str(a) for a in argv])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def disk_full_on(monkeypatch, name: str) -> None:
    """fsync of the temporary file of output ``name`` fails as on a full disk (the report's, the
    people sidecar's and the plan's in ``write_atomic``, the vault's in ``VaultWriter.finish``)."""
    real_fsync = os.fsync
    stem, suffix = os.path.splitext(name)

    def fsync(fd: int) -> None:
        path = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if path.startswith(f".{stem}.partial-") and path.endswith(suffix):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def tracks_fail_to_close(monkeypatch) -> None:
    real_close = TrackWriter.close

    def close(self, success: bool = True) -> None:
        real_close(self, success=False)
        if success:
            raise OutputError(f"tracks file {self.path}: no space left on {self.path.parent}")

    monkeypatch.setattr(TrackWriter, "close", close)


def assert_failed_with_nothing_written(code: int, err: list[str], out: Path, words: str, before: dict[str, bytes] | None = None) -> None:
    assert code == EXIT_FAILED, err
    assert len(err) == 1 and err[0].startswith("faceanon-video: error:") and words in err[0], err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == (before or {})  # no new file, no temporary file, old ones intact


def digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}


def test_all_outputs_appear_and_the_video_is_the_one_of_a_run_without_them(tmp_path, out, key, capsys):
    plain = tmp_path / "plain.mp4"
    assert run([CARPHONE, "-q", "-o", plain], capsys)[0] == 0
    assert run([CARPHONE, "-q", *every_output(out, key)], capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    video = out / "out.mp4"
    assert video.read_bytes() == plain.read_bytes()
    report = json.loads((out / "r.json").read_text())
    # The report hashed the video under its temporary name: the same bytes as the one in place.
    assert report["output"]["path"] == str(video) and report["output"]["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert report["output"]["bytes"] == video.stat().st_size and report["metadata"]["in_output"] is not None
    from faceanon_video.vault import VaultReader

    with VaultReader(out / "v.favault", key.read_bytes()) as vault:
        assert vault.info["video_sha256"] == video_sha256(video) and vault.frames == 120


@pytest.mark.parametrize(
    "fault, words",
    [
        ("r.md", "no space left on"),  # the last report: the video, vault, tracks and people were complete
        ("r.json", "no space left on"),
        ("p.people", "no space left on"),
        ("v.favault", "no space left on"),
        ("tracks", "tracks file"),
    ],
)
def test_a_late_write_fault_leaves_no_output_anywhere(out, key, capsys, monkeypatch, fault, words):
    if fault == "tracks":
        tracks_fail_to_close(monkeypatch)
    else:
        disk_full_on(monkeypatch, fault)
    code, err = run([CARPHONE, "-q", *every_output(out, key)], capsys)
    assert_failed_with_nothing_written(code, err, out, words)


def test_overwrite_keeps_the_previous_outputs_when_the_new_set_fails(out, key, capsys, monkeypatch):
    assert run([CARPHONE, "-q", "--end", "1", *every_output(out, key)], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    disk_full_on(monkeypatch, "r.md")
    code, err = run([CARPHONE, "-q", "--overwrite", "--mode", "solid", *every_output(out, key)], capsys)
    assert_failed_with_nothing_written(code, err, out, "no space left on", before)
    monkeypatch.undo()
    assert run([CARPHONE, "-q", "--overwrite", "--mode", "solid", *every_output(out, key)], capsys)[0] == 0
    after = digests(out)
    assert sorted(after) == sorted(OUTPUTS) and all(after[name] != hashlib.sha256(before[name]).hexdigest() for name in OUTPUTS)


# Plans: --save-plan writes the plan and the people sidecar; a --plan render writes the video and reports.


def test_save_plan_and_its_people_sidecar_commit_together(out, key, capsys, monkeypatch):
    argv = [CARPHONE, "-q", "--end", "1", "--save-plan", out / "c.plan.json", "--people", out / "p.people", "--key-file", key]
    disk_full_on(monkeypatch, "p.people")
    assert_failed_with_nothing_written(*run(argv, capsys), out, "no space left on")
    monkeypatch.undo()
    assert run(argv, capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["c.plan.json", "p.people"]


def test_a_plan_render_whose_report_fails_leaves_no_video(tmp_path, out, key, capsys, monkeypatch):
    plan = tmp_path / "c.plan.json"
    assert run([CARPHONE, "-q", "--end", "1", "--save-plan", plan], capsys)[0] == 0
    argv = [CARPHONE, "-q", "--plan", plan, "-o", out / "out.mp4", "--save-tracks", out / "t.jsonl", "--report", out / "r.json"]
    disk_full_on(monkeypatch, "r.json")
    assert_failed_with_nothing_written(*run(argv, capsys), out, "no space left on")
    monkeypatch.undo()
    assert run(argv, capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["out.mp4", "r.json", "t.jsonl"]


# The segments driver: joined video, merged vault and tracks, people sidecar and reports.


@pytest.fixture(scope="module")
def keyframed_clip(tmp_path_factory) -> Path:
    """test_segments' clip: 120 frames with a keyframe every 30, cut into 4 segments below."""
    from faceanon_video.testing.synthetic import render_clip
    from tests.test_segments import _write_clip

    path = tmp_path_factory.mktemp("segments") / "clip.mp4"
    _write_clip(render_clip(n_frames=120, seed=0).frames, path)
    return path


@pytest.mark.parametrize("fault", ["r.json", "p.people", None])
def test_segmented_run_commits_its_outputs_together(keyframed_clip, out, key, capsys, monkeypatch, fault):
    monkeypatch.setattr(segments, "MAX_SEGMENT_S", 2.0)
    monkeypatch.setattr(segments, "OVERLAP_S", 1.0)
    joined = []
    real_join = segments._join
    monkeypatch.setattr(segments, "_join", lambda *args: joined.append(len(args[3])) or real_join(*args))
    argv = [keyframed_clip, "-q", "--jobs", "2", *every_output(out, key)[:-2]]  # one report is enough here
    if fault:
        disk_full_on(monkeypatch, fault)
    code, err = run(argv, capsys)
    assert joined == [4]  # really the segments driver
    if fault:
        # A fault before the join's end keeps the finished segments for --resume (one warning says where).
        work = [p for p in out.iterdir() if p.is_dir() and p.name.startswith(".out.segments-")]
        errors = [line for line in err if "error:" in line]
        assert code == EXIT_FAILED and len(errors) == 1 and "no space left on" in errors[0], err
        assert all(line == errors[0] or "WARNING" in line for line in err), err
        assert [p.name for p in out.iterdir() if p not in work] == []
    else:
        assert code == 0, err
        assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS[:-1])
