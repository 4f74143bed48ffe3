"""Live outputs: recordings that survive SIGKILL, segment rotation, pushes read by real FFmpeg peers,
push reconnection, and the MJPEG preview."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from fractions import Fraction

import cv2
import numpy as np
import pytest

from faceanon_video.errors import ConfigError, InputError
from faceanon_video.live.sinks import LIVE_TIME_BASE, FileSink, MjpegPreview, StreamSink, window_available
from faceanon_video.types import Frame
from tests.conftest import decode_all
from tests.live.conftest import free_port, needs_ffmpeg


def level_frame(i: int, fps: float = 30, shape=(144, 176)) -> Frame:
    """Frame ``i``: a flat grey whose level encodes ``i`` (survives H.264 to within a few levels)."""
    bgr = np.full((*shape, 3), 16 + (i * 8) % 224, np.uint8)
    return Frame(bgr=bgr, index=i, pts=round(i / fps / LIVE_TIME_BASE), time_base=LIVE_TIME_BASE, capture_s=time.monotonic())


def write_paced(sink, count: int, fps: float = 30, start: int = 0) -> list[bool]:
    started = time.monotonic()
    results = []
    for i in range(start, start + count):
        time.sleep(max(0.0, started + (i - start) / fps - time.monotonic()))
        results.append(sink.write(level_frame(i, fps)))
    return results


KILLED_WRITER = """
import sys, time
from fractions import Fraction
from faceanon_video.live.sinks import FileSink
from tests.live.test_sinks import level_frame
sink = FileSink(sys.argv[1], preset="ultrafast")
sink.open(Fraction(30))
for i in range(100000):
    sink.write(level_frame(i))
    print(i + 1, flush=True)
    time.sleep(1 / 30)
"""


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_recording_stays_playable_after_sigkill(tmp_path, suffix):
    out = tmp_path / f"rec{suffix}"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        written = 0
        for line in writer.stdout:
            written = int(line)
            if written >= 60:  # 2 s
                break
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(5)
    frames, pts = decode_all(out)
    # Everything up to the last finished fragment/cluster (one keyframe interval: 1 s) is there.
    assert written - 40 <= len(frames) <= written + 1, (len(frames), written)
    levels = [int(f.mean()) for f in frames]
    assert all(abs(level - (16 + (i * 8) % 224)) <= 4 for i, level in enumerate(levels)), levels[:10]


def test_segments_rotate_into_separate_playable_files(tmp_path):
    sink = FileSink(tmp_path / "cam.mp4", preset="ultrafast", segment_s=2)
    sink.open(Fraction(15))
    write_paced(sink, 40, fps=15)  # 2.7 s: a cut at the keyframe at 2 s
    sink.close()
    files = sorted(tmp_path.glob("cam_*.mp4"))
    assert len(files) == 2, files
    counts = []
    for path in files:
        frames, pts = decode_all(path)
        counts.append(len(frames))
        assert pts[0] == 0  # each segment starts at zero
    assert sum(counts) == 40 and counts[0] == 30


def test_file_sink_rejects_unsafe_formats_and_existing_files(tmp_path):
    with pytest.raises(ConfigError, match="survive a crash"):
        FileSink(tmp_path / "out.avi")
    existing = tmp_path / "out.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists"):
        FileSink(existing)
    with pytest.raises(ConfigError, match="cannot push"):
        StreamSink("http://example.invalid/")


@needs_ffmpeg
def test_udp_push_is_received_by_ffmpeg(tmp_path, peers):
    port = free_port(socket.SOCK_DGRAM)
    received = tmp_path / "received.ts"
    # The reader ends by itself 1 s after the data stops (SIGINT during its probing would lose everything).
    reader = peers("-i", f"udp://127.0.0.1:{port}?timeout=1000000", "-c", "copy", "-f", "mpegts", str(received))
    time.sleep(0.5)
    sink = StreamSink(f"udp://127.0.0.1:{port}", preset="ultrafast")
    sink.open(Fraction(30))
    assert all(write_paced(sink, 60))
    sink.close()
    reader.process.wait(15)
    frames, _ = decode_all(received)
    assert len(frames) >= 55
    levels = [int(f.mean()) for f in frames]
    assert max(levels) - min(levels) > 100  # the changing levels arrived, not one repeated frame


@needs_ffmpeg
def test_rtmp_push_waits_for_the_server_and_connects_when_it_appears(tmp_path, peers):
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/test"
    sink = StreamSink(url, preset="ultrafast", reconnect_initial_s=0.2, reconnect_max_s=0.4)
    sink.open(Fraction(30))
    assert not any(write_paced(sink, 20))  # nobody listening: frames skipped, nothing raised
    assert sink.skipped == 20 and sink.connects == 0
    received = tmp_path / "received.flv"
    server = peers("-listen", "1", "-i", url, "-c", "copy", str(received))
    results = write_paced(sink, 75, start=20)
    sink.close()
    assert sink.connects == 1 and sum(results) >= 45
    server.process.wait(10)
    frames, _ = decode_all(received)
    assert len(frames) >= 40


def test_mjpeg_preview_serves_the_newest_frame_on_localhost():
    preview = MjpegPreview(port=0)
    try:
        assert preview.url.startswith("http://127.0.0.1:")
        assert b"/stream.mjpg" in urllib.request.urlopen(preview.url, timeout=5).read()
        preview.write(level_frame(3))
        preview.write(level_frame(10))
        jpeg = urllib.request.urlopen(preview.url + "snapshot.jpg", timeout=5).read()
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (144, 176, 3) and abs(image.mean() - (16 + 80)) < 3

        stop = threading.Event()

        def feed() -> None:
            i = 0
            while not stop.is_set():
                preview.write(level_frame(i))
                i += 1
                time.sleep(0.02)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            stream = urllib.request.urlopen(preview.url + "stream.mjpg", timeout=5)
            assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            data = b""
            deadline_s = time.monotonic() + 5
            while data.count(b"--frame") < 3 and time.monotonic() < deadline_s:
                data += stream.read1(65536)
            parts = data.split(b"--frame")[1:3]
            assert len(parts) == 2
            assert all(b"Content-Type: image/jpeg" in part and b"\xff\xd8" in part for part in parts)
        finally:
            stop.set()
            feeder.join()
    finally:
        preview.close()


def test_no_window_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):
        assert not window_available()
