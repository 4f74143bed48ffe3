"""The live command end to end, against real FFmpeg peers on 127.0.0.1.

An FFmpeg publisher plays the barcode clip (frames numbered in pixels) into ``faceanon-video``; its
outputs are read back by FFmpeg receivers and checked frame by frame: every face in every numbered
frame must have lost its detail compared with the same face in the source, and outages must appear
as black frames.
"""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import pytest

from faceanon_video.cli import main
from tests.live.conftest import decode_frames, free_port, is_black, needs_ffmpeg, udp_publisher_args, wait_for


def start_app(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "faceanon_video.cli", *args, "--preset", "ultrafast"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def runs(frames) -> list[tuple[str, int]]:
    return [(kind, len(list(group))) for kind, group in itertools.groupby("black" if is_black(f) else "picture" for f in frames)]


def preview_has_frame(url: str) -> bool:
    try:
        return urllib.request.urlopen(url + "snapshot.jpg", timeout=2).status == 200
    except OSError:  # refused, 503 "no frame yet", or still waiting for the first frame after 2 s
        return False


@needs_ffmpeg
def test_source_outage_is_bridged_and_every_output_stays_anonymized(tmp_path, barcode_clip, peers):
    source_port, push_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    record, pushed, stats = tmp_path / "live.mp4", tmp_path / "pushed.ts", tmp_path / "stats.json"
    app = start_app(
        f"udp://127.0.0.1:{source_port}", "-o", str(record), "--output-url", f"udp://127.0.0.1:{push_port}",
        "--preview", "--preview-port", "0", "--read-timeout", "1", "--reconnect-max", "1", "--stats", str(stats),
    )  # fmt: skip
    try:
        # The app is up before its camera, and waits for it.
        preview_url = app.stdout.readline().removeprefix("preview: ").strip()
        assert preview_url.startswith("http://127.0.0.1:"), preview_url
        publisher = peers(*udp_publisher_args(barcode_clip.path, source_port))
        assert wait_for(lambda: preview_has_frame(preview_url), 30), "no frame reached the preview"
        # Receives our push from now on; ends 3 s after the push stops.
        receiver = peers("-i", f"udp://127.0.0.1:{push_port}?timeout=3000000", "-c", "copy", "-f", "mpegts", str(pushed))
        time.sleep(2.5)
        publisher.kill()  # the camera dies mid-stream
        time.sleep(2.5)
        peers(*udp_publisher_args(barcode_clip.path, source_port))
        time.sleep(3)
        assert app.poll() is None, "the app did not survive the outage"
        app.send_signal(signal.SIGINT)
        out, err = app.communicate(timeout=30)
    finally:
        app.kill()
    assert app.returncode == 0, err
    assert "source back after" in err and "black frames" in err
    summary = json.loads(stats.read_text())
    assert summary["reconnects"] >= 1 and summary["filler_frames"] >= 20
    assert any("no data" in gap["reason"] for gap in summary["gaps"])
    assert summary["latency_ms"][str(record)]["n"] > 30

    receiver.process.wait(15)
    # Finalised on SIGINT: the recording holds every frame written, up to the last one.
    assert len(decode_frames(record)) == summary["written"][str(record)]
    for path in (record, pushed):
        frames = decode_frames(path)
        counts = barcode_clip.check(frames)  # asserts every checked face is anonymized
        # Enough faces were compared for the check to mean something, even at a few fps on a busy machine.
        assert counts["faces"] >= 8 and counts["numbered"] >= counts["unnumbered"], (path.name, counts)
        # The outage is the longest black run (at the nominal rate; a loaded machine may add short
        # ones: any 0.5 s without frames is bridged), and pictures come back after it.
        spans = runs(frames)
        outage = max(range(len(spans)), key=lambda i: spans[i][1] if spans[i][0] == "black" else 0)
        assert spans[outage][0] == "black" and spans[outage][1] >= 20, spans
        assert sum(n for kind, n in spans[outage + 1 :] if kind == "picture") >= 10, spans
        if path == record:  # recorded from the first frame on (the receiver of the push joined later)
            assert sum(n for kind, n in spans[:outage] if kind == "picture") >= 10, spans


@needs_ffmpeg
def test_rtsp_in_rtmp_out_and_a_killed_app_leaves_a_playable_recording(tmp_path, barcode_clip, peers):
    rtsp_url = f"rtsp://127.0.0.1:{free_port()}/camera"
    rtmp_url = f"rtmp://127.0.0.1:{free_port()}/live/anonymized"
    record, relayed = tmp_path / "live.mkv", tmp_path / "relayed.flv"
    server = peers("-listen", "1", "-i", rtmp_url, "-c", "copy", str(relayed))
    # We are the RTSP server here (listen mode); the camera publishes to us, as with ffmpeg -f rtsp.
    app = start_app(rtsp_url, "--input-option", "rtsp_flags=listen", "-o", str(record), "--output-url", rtmp_url, "-q")
    try:
        publish = ["-re", "-stream_loop", "-1", "-i", str(barcode_clip.path), "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", rtsp_url]

        def publishing() -> bool:  # retried until the app listens
            publisher = peers(*publish)
            time.sleep(1.0)
            return publisher.process.poll() is None

        assert wait_for(publishing, 30, step_s=0.2), "the app never accepted the RTSP publisher"
        assert wait_for(lambda: record.exists() and record.stat().st_size > 200_000, 30), "nothing recorded"
        time.sleep(2)
        assert app.poll() is None
    finally:
        app.kill()  # SIGKILL: no chance to finalise anything
        print(app.communicate(timeout=10)[1])  # shown if the test fails
    server.process.wait(15)  # the RTMP connection dropped with the app
    recorded = decode_frames(record)
    assert len(recorded) >= 30
    assert barcode_clip.check(recorded)["faces"] >= 20
    relayed_frames = decode_frames(relayed)
    assert len(relayed_frames) >= 30
    assert barcode_clip.check(relayed_frames)["faces"] >= 20


def loopback_camera() -> str | None:
    for name_file in sorted(Path("/sys/devices/virtual/video4linux").glob("video*/name")):
        if "loopback" in name_file.read_text().lower() or "dummy" in name_file.read_text().lower():
            return name_file.parent.name.removeprefix("video")
    return None


@needs_ffmpeg
@pytest.mark.skipif(loopback_camera() is None, reason="no v4l2loopback device: the module cannot be loaded in this VM/container (no modprobe, no /dev/video*)")
def test_virtual_webcam(tmp_path, barcode_clip, peers):
    number = loopback_camera()
    peers("-re", "-stream_loop", "-1", "-i", str(barcode_clip.path), "-pix_fmt", "yuv420p", "-f", "v4l2", f"/dev/video{number}")
    time.sleep(1)
    record = tmp_path / "camera.mp4"
    assert main(["--camera", number, "-o", str(record), "--duration", "4", "-q"]) == 0
    assert barcode_clip.check(decode_frames(record))["faces"] >= 20


def test_the_leak_check_catches_raw_frames(tmp_path, barcode_clip):
    # Raw frames re-encoded the way live outputs are (x264 ultrafast, crf 20) must be flagged.
    raw = tmp_path / "raw.mp4"
    with av.open(str(raw), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "crf": "20"}
        for bgr in decode_frames(barcode_clip.path):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))
        out.mux(stream.encode())
    counts, leaks = barcode_clip.inspect(decode_frames(raw))
    assert counts["faces"] == sum(len(found) for found in barcode_clip.faces.values())
    assert len(leaks) == counts["faces"]  # every one


def test_live_command_errors_are_one_line(tmp_path, capsys):
    assert main([f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"]) == 2
    assert "live mode needs an output" in capsys.readouterr().err
    assert main(["--camera", "99", "-o", str(tmp_path / "x.mp4")]) == 2
    assert "no such camera" in capsys.readouterr().err
    assert main(["udp://127.0.0.1:1", "-o", str(tmp_path / "x.avi")]) == 2
    assert "survive a crash" in capsys.readouterr().err
    assert main(["udp://127.0.0.1:1", "-o", str(tmp_path / "x.mp4"), "--deadline-ms", "0"]) == 2
    assert "--deadline-ms must be > 0" in capsys.readouterr().err
