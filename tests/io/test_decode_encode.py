"""Decode -> encode round trips keep what the input had: frames, timing, audio, orientation."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from faceanon_video.errors import InputError
from faceanon_video.io.decode import VideoReader
from faceanon_video.io.encode import VideoWriter
from faceanon_video.types import Frame
from tests.conftest import CARPHONE, HAMILTON, decode_all


def copy_through(src, dst, **kwargs):
    with VideoReader(src, **kwargs) as reader:
        writer = VideoWriter(dst, reader.info.fps, reader.info.time_base, templates=reader.copy_streams)
        with writer:
            for item in reader.items():
                writer.write(item) if isinstance(item, Frame) else writer.write_packet(item)
    return reader


def test_round_trip_keeps_frames_timestamps_and_audio(tmp_path):
    out = tmp_path / "out.mp4"
    copy_through(HAMILTON, out)
    _, src_pts = decode_all(HAMILTON)
    _, out_pts = decode_all(out)
    assert out_pts == src_pts  # same count, same (non-zero-start) timestamps
    with av.open(str(HAMILTON)) as a, av.open(str(out)) as b:
        assert b.streams.video[0].average_rate == a.streams.video[0].average_rate
        assert len(b.streams.audio) == 1
        assert b.streams.audio[0].codec_context.name == "aac"
        src_audio = [bytes(p) for p in a.demux(audio=0) if p.size]
        out_audio = [bytes(p) for p in b.demux(audio=0) if p.size]
        assert out_audio == src_audio  # copied bit for bit, not re-encoded
        assert abs(b.duration - a.duration) / a.duration < 0.01


def test_variable_frame_rate_timestamps_are_kept(tmp_path):
    src = tmp_path / "vfr.mkv"
    pts_ms = [0, 33, 66, 150, 160, 400, 433, 900]
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(pts_ms):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="bgr24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            c.mux(s.encode(f))
        c.mux(s.encode())
    out = tmp_path / "out.mkv"
    copy_through(src, out)
    _, src_pts = decode_all(src)
    _, out_pts = decode_all(out)
    assert out_pts == src_pts == pts_ms


def test_rotation_metadata_is_applied_to_pixels(tmp_path):
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(CARPHONE)) as src, av.open(str(rotated), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        out.set_display_rotation(90)
        for packet in src.demux(video=0):
            if packet.size:
                packet.stream = out
                dst.mux(packet)
    with VideoReader(rotated) as reader:
        first = next(iter(reader))
    assert first.bgr.shape[:2] == (176, 144)  # 176x144 stored, shown upright as 144 wide
    with VideoReader(CARPHONE) as reader:
        plain = next(iter(reader)).bgr
    assert np.array_equal(first.bgr, np.rot90(plain, k=1)) or np.array_equal(first.bgr, np.rot90(plain, k=-1))


def test_start_end_span(tmp_path):
    with VideoReader(HAMILTON, start_s=2.0, end_s=4.0) as reader:
        times = [f.time_s - reader.start_offset_s for f in reader]  # spans count from the first frame
    assert 50 <= len(times) <= 62
    assert min(times) >= 2.0 - 1e-6 and max(times) <= 4.0 + 1e-6


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100])
def test_bad_inputs_raise_input_error(tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(InputError):
        with VideoReader(bad) as reader:
            list(reader)


def test_truncated_file_is_detected(tmp_path):
    # Moov atom first (faststart), then cut the media data: the header promises more frames than exist.
    faststart = tmp_path / "fast.mp4"
    with av.open(str(HAMILTON)) as src, av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.size:
                packet.stream = out
                dst.mux(packet)
    data = faststart.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated|decod"):
        with VideoReader(cut) as reader:
            list(reader)


def test_writer_leaves_nothing_on_failure(tmp_path):
    dst = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(dst, Fraction(30), Fraction(1, 30)) as writer:
            writer.write(Frame(bgr=np.zeros((48, 64, 3), np.uint8), index=0, pts=0, time_base=Fraction(1, 30)))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size", [(642, 362), (642, 360), (640, 360), (1282, 722)])
def test_decoded_4_2_0_frames_are_encoded_bit_for_bit(tmp_path, size):
    # Frames stay I420 from decoder to encoder; heights that are not a multiple of 4 take a copying
    # path (PyAV's zero-copy import would misread them). Lossless x264 shows every sample survives.
    width, height = size
    rng = np.random.default_rng(0)
    src = tmp_path / "src.mp4"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"crf": "0", "preset": "ultrafast"}
        for i in range(3):
            planes = (rng.random((height * 3 // 2, width)) * 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    dst = tmp_path / "dst.mp4"
    with VideoReader(src) as reader, VideoWriter(dst, reader.info.fps, reader.info.time_base, crf=0) as writer:
        for frame in reader:
            assert frame.is_i420
            writer.write(frame)
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        pairs = list(zip((f.to_ndarray() for f in a.decode(video=0)), (f.to_ndarray() for f in b.decode(video=0))))
    assert len(pairs) == 3 and all(np.array_equal(x, y) for x, y in pairs)
