"""LiveSource: newest-frame capture, numbering, reconnect with a real FFmpeg publisher, giving up."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from faceanon_video.errors import InputError, SourceLost
from faceanon_video.live.mailbox import Mailbox
from faceanon_video.live.sources import LiveSource, camera_input, input_options
from tests.conftest import CARPHONE
from tests.live.conftest import free_port, needs_ffmpeg, read_barcode, udp_publisher_args, wait_for


def test_mailbox_keeps_newest_and_counts_drops():
    box: Mailbox[int] = Mailbox()
    for i in range(10):
        box.put(i)
    assert box.get(timeout_s=0) == 9 and box.dropped == 9
    got = []
    consumer = threading.Thread(target=lambda: got.append(box.get(timeout_s=5)))
    consumer.start()
    time.sleep(0.05)
    box.close()  # wakes a waiting consumer at once
    consumer.join(1)
    assert got == [None] and not consumer.is_alive()


def test_file_source_is_paced_numbered_and_ends():
    with LiveSource(str(CARPHONE)) as source:
        started = time.monotonic()
        frames = []
        while True:
            frame = source.get(timeout_s=0.2)
            if frame is not None:
                frames.append(frame)
            elif source.ended:
                break
        elapsed = time.monotonic() - started
    # 120 frames at 29.97 fps: released in real time, not as fast as they decode.
    assert 3.5 < elapsed < 8
    assert source.captured == 120
    assert [f.index for f in frames] == list(range(len(frames)))  # numbered as taken, whatever was dropped
    assert len(frames) + source.dropped == 120
    captures = [f.capture_s for f in frames]
    assert captures == sorted(captures)


def test_missing_inputs_fail_at_start(tmp_path):
    with pytest.raises(InputError):
        LiveSource(str(tmp_path / "missing.mp4")).start()
    device, av_format = camera_input(99)
    assert (device, av_format) == ("/dev/video99", "v4l2")
    with pytest.raises(InputError, match="no such camera"):
        LiveSource(device, av_format=av_format).start()


def test_input_options_defaults_and_overrides():
    rtsp = input_options("rtsp://cam/stream", 10)
    assert rtsp["rtsp_transport"] == "tcp" and "nobuffer" not in rtsp.get("fflags", "")  # it loses the first keyframe
    assert input_options("rtsp://cam/stream", 10, {"rtsp_transport": "udp"})["rtsp_transport"] == "udp"
    assert input_options("rtsp://0.0.0.0:8554/in", 7, {"rtsp_flags": "listen"})["listen_timeout"] == "7"
    assert input_options("udp://127.0.0.1:5000", 10)["overrun_nonfatal"] == "1"


def test_unreachable_source_gives_up_with_source_lost():
    port = free_port(socket.SOCK_DGRAM)  # nobody sends to it
    source = LiveSource(f"udp://127.0.0.1:{port}", open_timeout_s=0.4, read_timeout_s=0.4, reconnect_initial_s=0.1, reconnect_max_s=0.2, give_up_s=1.0)
    started = time.monotonic()
    with source, pytest.raises(SourceLost, match="gave up"):
        while time.monotonic() - started < 10:
            assert source.get(timeout_s=0.1) is None
    assert time.monotonic() - started < 5
    assert source.gaps and source.gaps[0].attempts >= 2 and source.captured == 0


@needs_ffmpeg
def test_udp_source_reconnects_after_the_publisher_dies(barcode_clip, peers):
    port = free_port(socket.SOCK_DGRAM)
    publisher = peers(*udp_publisher_args(barcode_clip.path, port))
    source = LiveSource(f"udp://127.0.0.1:{port}", read_timeout_s=0.7, reconnect_initial_s=0.2, reconnect_max_s=0.5)
    with source:
        assert wait_for(lambda: source.get(timeout_s=0.1) is not None, 15), "no frame from the publisher"
        time.sleep(1.0)
        publisher.kill()  # SIGKILL: no goodbye, the stream just stops
        assert wait_for(lambda: source.in_gap, 5), "the stall was not noticed"
        assert source.reconnects == 0
        time.sleep(1.0)
        peers(*udp_publisher_args(barcode_clip.path, port))
        assert wait_for(lambda: source.reconnects == 1, 15), "did not reconnect"

        def numbered_frame() -> bool:
            frame = source.get(timeout_s=0.1)
            return frame is not None and read_barcode(frame.bgr) is not None

        assert wait_for(numbered_frame, 5), "frames after the reconnect are not the clip's"
    gap = source.gaps[0]
    assert gap.end_s is not None and 1.0 < gap.duration_s < 10
    assert "no data" in gap.reason


def numbered_frames(source: LiveSource, count: int, timeout_s: float) -> int:
    """How many of the next frames (up to ``count``) carry the clip's barcode."""
    got = 0
    deadline_s = time.monotonic() + timeout_s
    while got < count and time.monotonic() < deadline_s:
        frame = source.get(timeout_s=0.1)
        got += frame is not None and read_barcode(frame.bgr) is not None
    return got


@needs_ffmpeg
def test_http_source_connects_once_the_server_is_up(barcode_clip, peers):
    url = f"http://127.0.0.1:{free_port()}/live.ts"
    with LiveSource(url, open_timeout_s=2, reconnect_initial_s=0.2, reconnect_max_s=0.5) as source:
        time.sleep(0.5)  # refused meanwhile: retried, not fatal
        peers("-re", "-stream_loop", "-1", "-i", str(barcode_clip.path), "-c", "copy", "-f", "mpegts", "-listen", "1", url)
        assert numbered_frames(source, 10, 15) == 10


@needs_ffmpeg
def test_rtmp_source_in_listen_mode_receives_a_publisher(barcode_clip, peers):
    url = f"rtmp://127.0.0.1:{free_port()}/live/camera"
    with LiveSource(url, options={"listen": "1"}, open_timeout_s=10) as source:

        def publishing() -> bool:  # retried until the source listens
            publisher = peers("-re", "-stream_loop", "-1", "-i", str(barcode_clip.path), "-c", "copy", "-f", "flv", url)
            time.sleep(0.5)
            return publisher.process.poll() is None

        assert wait_for(publishing, 15, step_s=0.2)
        assert numbered_frames(source, 10, 15) == 10


def test_a_protocol_this_ffmpeg_lacks_fails_at_once():
    # PyAV's wheels are built without libsrt; a missing protocol must not be "reconnected" forever.
    source = LiveSource("srt://127.0.0.1:9?mode=caller")
    with source:
        try:
            started = time.monotonic()
            while time.monotonic() - started < 5:
                source.get(timeout_s=0.1)
        except InputError as exc:
            assert "cannot read srt://" in str(exc)
        else:
            pytest.skip("this FFmpeg build has SRT")


@needs_ffmpeg
def test_first_keyframe_is_not_lost_while_probing(peers):
    # An encoder that sends a keyframe every 10 s: the stream's first frame must come out with the
    # first keyframe, not 10 s later (FFmpeg's "nobuffer" dropped the packets read while probing).
    port = free_port(socket.SOCK_DGRAM)
    with LiveSource(f"udp://127.0.0.1:{port}", open_timeout_s=5, read_timeout_s=5) as source:
        time.sleep(0.3)  # listening
        peers("-re", "-stream_loop", "-1", "-i", str(CARPHONE), "-c:v", "libx264", "-preset", "ultrafast", "-g", "300", "-keyint_min", "300", "-sc_threshold", "0", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316")
        started = time.monotonic()
        assert wait_for(lambda: source.get(timeout_s=0.05) is not None, timeout_s=6), "no frame before the second keyframe"
        assert time.monotonic() - started < 4


def test_give_up_after_is_honoured_while_a_reopen_blocks():
    # A reopen attempt may block for open_timeout_s (here 10 s): --give-up-after 1.5 still means 1.5 s.
    port = free_port(socket.SOCK_DGRAM)
    source = LiveSource(f"udp://127.0.0.1:{port}", open_timeout_s=10, read_timeout_s=10, give_up_s=1.5)
    started = time.monotonic()
    with source:
        with pytest.raises(SourceLost, match="gave up"):
            while time.monotonic() - started < 15:
                source.get(timeout_s=0.1)
        assert 1.5 <= time.monotonic() - started < 2.0
