"""Damaged and unusual inputs (issue 14), each built here from the vendored clips: a file cut short is
reported whatever the container; a damaged-but-readable file gives an output with every frame, the
damaged ones obscured; unusual-but-valid files are not mistaken for damaged ones."""

from __future__ import annotations

import subprocess

import av
import numpy as np
import pytest

from faceanon_video.cli import main
from faceanon_video.errors import EXIT_OBSCURED, EXIT_USER, InputError
from faceanon_video.io.decode import VideoReader
from tests.conftest import CARPHONE, HAMILTON, decode_all


def ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", *map(str, args)], check=True)


def read_all(path, **kwargs) -> tuple[list, VideoReader]:
    with VideoReader(path, **kwargs) as reader:
        return list(reader), reader


@pytest.mark.parametrize("suffix, codec", [(".mkv", "libx264"), (".webm", "libvpx-vp9")])
def test_matroska_cut_in_half_is_reported(tmp_path, suffix, codec):
    whole = tmp_path / f"whole{suffix}"
    ffmpeg("-i", CARPHONE, "-c:v", codec, "-deadline", "realtime", "-cpu-used", "8", "-preset", "ultrafast", whole)
    cut = tmp_path / f"cut{suffix}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated: the file ends at"):
        read_all(cut)


def test_mp4_with_an_edit_list_is_not_truncated(tmp_path):
    edited = tmp_path / "edited.mp4"
    ffmpeg("-ss", "0.5", "-i", CARPHONE, "-c", "copy", edited)  # keeps the GOP, cuts with an edit list
    frames, reader = read_all(edited)
    assert len(frames) == len(decode_all(edited)[0]) == 105 and reader.damaged_frames == 0


def test_mjpeg_avi_with_repeated_frames_is_not_truncated(tmp_path):
    avi = tmp_path / "repeats.avi"
    ffmpeg("-i", CARPHONE, "-c:v", "mjpeg", "-r", "50", "-q:v", "5", avi)  # the header counts 200 frames, 120 are stored
    frames, reader = read_all(avi)
    assert len(frames) == 120 and reader.damaged_frames == 0 and not any(f.obscured for f in frames)


def test_mpegts_with_negative_start_and_wrapping_clock_keeps_every_frame(tmp_path):
    ts = tmp_path / "wrap.ts"
    # The 33-bit MPEG-TS clock wraps 0.8 s in: FFmpeg gives the frames before the wrap negative times.
    ffmpeg("-i", CARPHONE, "-c:v", "libx264", "-preset", "ultrafast", "-output_ts_offset", "95441.5", ts)
    with av.open(str(ts)) as c:
        assert c.streams.video[0].start_time < 0
    out = tmp_path / "out.mp4"
    assert main([str(ts), "-o", str(out), "-q"]) == 0
    frames, pts = decode_all(out)  # PyAV honours the MP4 edit list, like players
    assert len(frames) == 120 and pts[0] >= 0 and pts == sorted(pts)


@pytest.fixture(scope="module")
def garbled(tmp_path_factory):
    """The Hamilton clip with 4 KB of garbage in the middle of its media data."""
    data = bytearray(HAMILTON.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = np.random.default_rng(14).bytes(4096)
    path = tmp_path_factory.mktemp("garbled") / "garbled.mp4"
    path.write_bytes(bytes(data))
    return path


def test_garbage_in_the_middle_gives_every_frame_with_damaged_ones_obscured(garbled, tmp_path, capsys, caplog):
    out = tmp_path / "out.mp4"
    assert main([str(garbled), "-o", str(out)]) == EXIT_OBSCURED
    captured = capsys.readouterr()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "damaged or missing frames" in warnings[0], warnings
    damaged = int(warnings[0].split(": ")[-1].split()[0])
    obscured = int(captured.out.split(", ")[-1].split()[0])
    # A damaged frame that was due a full detection pass also fails the skipped frames next to it.
    assert 0 < damaged <= obscured <= damaged + 4, captured.out
    frames, _ = decode_all(out)
    source_frames, _ = decode_all(HAMILTON)
    assert len(frames) == len(source_frames) == 275
    black = [i for i, f in enumerate(frames) if f.mean() < 3]
    assert len(black) == obscured
    # The clip's opening is dark (~16); the black frames are those around the garbage, not the start.
    assert min(black) > 100


def test_strict_makes_a_damaged_frame_an_error(garbled, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main([str(garbled), "-o", str(out), "-q", "--strict"]) == EXIT_USER
    err = capsys.readouterr().err
    assert "damaged frame at" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
