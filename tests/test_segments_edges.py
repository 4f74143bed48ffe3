"""Edges of segment-parallel and file runs found by the red team: ``--jobs`` on a live stream is
refused, a ``file://`` URL is the file it names (not a live stream), and the work folders of an
earlier run with other settings do not stay next to the output forever."""

from __future__ import annotations

import fcntl
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from faceanon_video import segments
from faceanon_video.cli import main
from faceanon_video.errors import InputError, OutputError
from faceanon_video.inputs import expand_inputs, file_url_path, is_stream_input


def _tiny_clip(path: Path, frames: int = 12) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((64, 96, 3), 10 * i, np.uint8), format="bgr24")))
        container.mux(stream.encode())
    return path


def test_jobs_on_a_live_stream_is_refused_in_one_line(tmp_path, capsys):
    # Nothing listens on this port: the refusal comes before any attempt to open the stream.
    code = main(["udp://127.0.0.1:9", "--jobs", "2", "-o", str(tmp_path / "out.ts"), "-q"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "--jobs works on files" in err
    assert list(tmp_path.iterdir()) == []


def test_file_urls_are_files_not_streams(tmp_path, capsys):
    source = _tiny_clip(tmp_path / "my clip.mp4")
    url = "file://" + str(source).replace(" ", "%20")
    assert not is_stream_input(url) and is_stream_input("rtsp://cam/1") and not is_stream_input(str(source))
    assert file_url_path(url) == source and file_url_path("file://localhost" + str(source)) == source
    assert expand_inputs([url]) == [source]
    out = tmp_path / "out.mp4"
    # A file run (a live run would refuse --report, and would not keep the frame count).
    assert main([url, "-o", str(out), "-q", "--report", str(tmp_path / "r.json")]) == 0
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12
    with pytest.raises(InputError, match="on this machine"):
        file_url_path("file://otherhost/data/x.mp4")
    assert main(["file://otherhost/data/x.mp4", "-o", str(tmp_path / "o2.mp4"), "-q"]) != 0
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["file://" + str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o3.mp4"), "-q"]) != 0
    assert "no such file" in capsys.readouterr().err


def _work(parent: Path, name: str, age_s: float) -> Path:
    folder = parent / name
    folder.mkdir()
    (folder / "segment-0000.json").write_text("{}")
    then = time.time() - age_s
    for path in (folder / "segment-0000.json", folder):
        os.utime(path, (then, then))
    return folder


def test_stale_work_folders_of_the_same_output_are_removed_unless_in_use(tmp_path):
    destination = tmp_path / "out.mp4"
    old = 2 * segments.STALE_WORK_S
    stale = _work(tmp_path, ".out.segments-0123456789abcdef", old)
    current = _work(tmp_path, ".out.segments-1111111111111111", old)  # this run's own: never removed here
    recent = _work(tmp_path, ".out.segments-fedcba9876543210", 30)  # a run may be writing it
    locked = _work(tmp_path, ".out.segments-aaaaaaaaaaaaaaaa", old)
    other_output = _work(tmp_path, ".other.segments-0123456789abcdef", old)
    not_ours = [_work(tmp_path, name, old) for name in (".out.segments-xyz", ".out.segments-0123456789abcdef0", "out.segments-0123456789abcdef")]
    with open(locked / segments.WORK_LOCK, "a") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # a running driver's lock
        os.utime(locked, (time.time() - old,) * 2)
        os.utime(locked / segments.WORK_LOCK, (time.time() - old,) * 2)
        segments.remove_stale_work(destination, keep=current)
        # The same output and settings while that run holds the folder: refused, not removed under it.
        with pytest.raises(OutputError, match="another run is using this work folder"):
            segments._lock_work(locked)
    assert not stale.exists()
    assert current.exists() and recent.exists() and locked.exists() and other_output.exists()
    assert all(p.exists() for p in not_ours)
    segments.remove_stale_work(destination, keep=current)  # the lock released: now it goes
    assert not locked.exists()


def test_a_segmented_run_removes_an_earlier_runs_work_folder(tmp_path, monkeypatch):
    from faceanon_video.config import RunConfig
    from faceanon_video.pipeline import process_file

    monkeypatch.setattr(segments, "MAX_SEGMENT_S", 0.2)
    monkeypatch.setattr(segments, "OVERLAP_S", 0.1)
    source = _tiny_clip(tmp_path / "clip.mp4")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    stale = _work(out_dir, ".out.segments-0123456789abcdef", 2 * segments.STALE_WORK_S)
    summary = process_file(source, out_dir / "out.mp4", RunConfig(jobs=2, progress=False))
    assert summary.frames == 12
    assert sorted(p.name for p in out_dir.iterdir()) == ["out.mp4"]
    assert not stale.exists()


@pytest.mark.parametrize("url", ["file:", "file://", "file://localhost", "FILE:"])
def test_a_file_url_naming_no_file_is_refused_not_read_as_the_current_folder(url, tmp_path, monkeypatch, capsys):
    """``file:`` with no path used to become Path("") == ".": every video of the current folder was processed."""
    monkeypatch.chdir(tmp_path)
    _tiny_clip(tmp_path / "bystander.mp4")
    with pytest.raises(InputError, match="names no file"):
        file_url_path(url)
    assert main([url, "-q"]) == 2
    assert "names no file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bystander.mp4"]


def test_stale_removal_leaves_folders_and_links_named_like_ours_that_are_not_work_folders(tmp_path):
    """A user's folder named like a work folder (with their files in it), or a symlink so named
    to any folder, is not ours: it used to be removed (the link: a .lock left in its target)."""
    destination = tmp_path / "out.mp4"
    old = 2 * segments.STALE_WORK_S
    theirs = _work(tmp_path, ".out.segments-0123456789abcdef", old)
    (theirs / "holiday.jpg").write_bytes(b"precious")
    os.utime(theirs, (time.time() - old,) * 2)
    target = _work(tmp_path, "elsewhere", old)  # looks like a work folder, but is reached through a link
    link = tmp_path / ".out.segments-fedcba9876543210"
    link.symlink_to(target, target_is_directory=True)
    segments.remove_stale_work(destination, keep=tmp_path / ".out.segments-1111111111111111")
    assert (theirs / "holiday.jpg").read_bytes() == b"precious" and (theirs / "segment-0000.json").exists()
    assert link.is_symlink() and sorted(p.name for p in target.iterdir()) == ["segment-0000.json"]
