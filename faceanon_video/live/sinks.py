"""Live outputs: a recording that survives a crash, a stream push, and a local preview.

Every sink has the same three calls: ``open(fps)`` once the source's rate is known, ``write(frame) ->
bool`` (False when the frame could not be sent, e.g. while a push is reconnecting) and ``close()``.
Each runs on its own ``SinkWorker`` thread behind a one-frame ``Mailbox``, so a slow or stalled output
drops its own oldest frames instead of holding back the pipeline or the other outputs.

Sinks only ever receive frames the runner has anonymized or obscured; none of them sees a raw frame.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections import deque
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import av.error
import cv2

from faceanon_video.errors import ConfigError, FaceanonError, InputError
from faceanon_video.io.encode import VideoWriter
from faceanon_video.live.mailbox import Mailbox
from faceanon_video.live.sources import protocol_missing
from faceanon_video.types import Frame

log = logging.getLogger(__name__)

#: Timestamps of live outputs: 90 kHz (MPEG-TS's native clock); the MP4/FLV muxers rescale from it.
LIVE_TIME_BASE = Fraction(1, 90000)

#: Latency samples kept per output for the percentiles (~1 hour at 30 fps; memory stays flat on long runs).
LATENCY_WINDOW = 100_000


class Sink(Protocol):
    name: str

    def open(self, fps: Fraction) -> None: ...

    def write(self, frame: Frame) -> bool: ...

    def close(self) -> None: ...


class LiveWriter(VideoWriter):
    """``VideoWriter`` set up for live output.

    x264's ``tune=zerolatency`` turns off B-frames and lookahead, which otherwise hold each frame back
    for ~40 later ones (over a second at 30 fps). A keyframe every second bounds what a crash loses from
    a fragmented recording, where segments can be cut, and how long a viewer joining a stream waits.
    """

    def _open_video(self, frame: Frame) -> None:
        super()._open_video(frame)
        context = self.video.codec_context
        if self.codec in ("libx264", "libx265"):
            context.options = {**context.options, "tune": "zerolatency"}
        context.gop_size = max(1, round(self.fps))
        context.thread_count = 0  # x264's sliced threads: each frame encodes sooner (latency over CPU)


# 1. Recording.

FRAGMENTED_MP4 = "frag_keyframe+empty_moov+default_base_moof"
#: Output extension -> (FFmpeg muxer, its options). All three stay playable when the process is killed:
#: fragmented MP4 has no index to write at the end, Matroska and MPEG-TS never needed one.
RECORD_FORMATS = {
    ".mp4": ("mp4", {"movflags": FRAGMENTED_MP4}),
    ".m4v": ("mp4", {"movflags": FRAGMENTED_MP4}),
    ".mov": ("mov", {"movflags": FRAGMENTED_MP4}),
    ".mkv": ("matroska", {"cluster_time_limit": "1000"}),  # close a cluster each second: at most ~1 s lost
    ".ts": ("mpegts", {}),
}


class FileSink:
    """Records to ``path`` as it goes (no temporary file: a killed run keeps everything up to the last
    second), optionally split into ``segment_s``-second files named ``STEM_YYYYmmdd-HHMMSS.EXT``.

    Settings:
        crf, preset, codec: as for files (``io.encode.VideoWriter``); live encoding must keep up with the
            camera, so ``ultrafast``/``superfast`` suit 720p and up on small CPUs.
        segment_s: rotate files this often (cut at the next keyframe, i.e. within a second). Shorter files
            are easier to ship and prune; each starts with its own header and keyframe. None: one file.
    """

    def __init__(self, path: str | Path, crf: int = 20, preset: str = "ultrafast", codec: str | None = None, segment_s: float | None = None, overwrite: bool = False) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in RECORD_FORMATS:
            raise ConfigError(f"{self.path}: live recordings must be {', '.join(RECORD_FORMATS)} (formats that survive a crash)")
        if not self.path.parent.is_dir():
            raise InputError(f"{self.path}: output folder does not exist")
        if segment_s is None and self.path.exists() and not overwrite:
            raise InputError(f"{self.path}: already exists (use --overwrite to replace it)")
        self.name = str(self.path)
        self.format, options = RECORD_FORMATS[suffix]
        # Hand each packet to the OS at once: a killed process cannot flush FFmpeg's 32 KB I/O buffer.
        self.options = {**options, "flush_packets": "1"}
        self.segment_s = segment_s
        self.encoder = {"crf": crf, "preset": preset, "codec": codec}
        self.fps = Fraction(30)
        self._writer: LiveWriter | None = None

    def open(self, fps: Fraction) -> None:
        self.fps = Fraction(fps)

    def _new_writer(self) -> LiveWriter:
        if self.segment_s is None:
            return LiveWriter(self.path, self.fps, LIVE_TIME_BASE, container_format=self.format, container_options=self.options, atomic=False, **self.encoder)
        pattern = self.path.with_name(f"{self.path.stem}_%Y%m%d-%H%M%S{self.path.suffix}")
        options = {
            "segment_time": f"{self.segment_s:g}",
            "segment_format": self.format,
            "segment_format_options": ":".join(f"{k}={v}" for k, v in self.options.items()),
            "reset_timestamps": "1",  # each file starts at 0, as players expect
            "strftime": "1",  # names from the wall clock: a restarted recorder never overwrites earlier files
        }
        return LiveWriter(pattern, self.fps, LIVE_TIME_BASE, container_format="segment", container_options=options, atomic=False, **self.encoder)

    def write(self, frame: Frame) -> bool:
        if self._writer is None:
            self._writer = self._new_writer()
        self._writer.write(frame)
        return True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close(success=True)


# 2. Stream push.

#: URL scheme -> FFmpeg muxer for pushing.
PUSH_FORMATS = {"udp": "mpegts", "tcp": "mpegts", "srt": "mpegts", "rtp": "rtp_mpegts", "rtmp": "flv", "rtmps": "flv", "rtsp": "rtsp", "rtsps": "rtsp"}


def push_target(url: str) -> tuple[str, dict[str, str]]:
    """The URL to open and the muxer options for pushing to it.

    Protocol options must go in the URL: ``VideoWriter`` hands its options to the muxer, not to the
    connection. A peer that stalls without closing can block a push; it then blocks only its own
    ``SinkWorker`` thread, never the pipeline or the other outputs.
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme == "udp" and "pkt_size=" not in url:
        # 7 MPEG-TS packets per datagram: fits an Ethernet frame, so nothing is fragmented on the way.
        return url + ("&" if "?" in url else "?") + "pkt_size=1316", {}
    if scheme in ("rtsp", "rtsps"):
        return url, {"rtsp_transport": "tcp"}
    return url, {}


class StreamSink:
    """Pushes to an RTMP/RTSP server or sends MPEG-TS over UDP/TCP/SRT; reconnects with backoff.

    While the peer is unreachable, frames are skipped (counted in ``skipped``) and the other outputs go
    on; each new connection starts with a keyframe, so viewers recover at once.
    """

    def __init__(self, url: str, crf: int = 23, preset: str = "ultrafast", codec: str | None = None, reconnect_initial_s: float = 0.5, reconnect_max_s: float = 10.0) -> None:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in PUSH_FORMATS:
            raise ConfigError(f"{url}: cannot push to this URL; use one of {', '.join(s + '://' for s in PUSH_FORMATS)}")
        self.url = self.name = url
        self.format = PUSH_FORMATS[scheme]
        self.target, self.options = push_target(url)
        self.encoder = {"crf": crf, "preset": preset, "codec": codec}
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.fps = Fraction(30)
        self.skipped = 0
        self.connects = 0
        self._writer: LiveWriter | None = None
        self._retry_at_s = 0.0
        self._delay_s = reconnect_initial_s
        self._down_since_s: float | None = None

    def open(self, fps: Fraction) -> None:
        self.fps = Fraction(fps)

    def write(self, frame: Frame) -> bool:
        if self._writer is None:
            if time.monotonic() < self._retry_at_s:
                self.skipped += 1
                return False
            try:
                self._writer = LiveWriter(self.target, self.fps, LIVE_TIME_BASE, container_format=self.format, container_options=self.options, atomic=False, **self.encoder)
            except FaceanonError as exc:
                if protocol_missing(exc):
                    raise ConfigError(f"{self.url}: this FFmpeg build cannot send {self.format} over {self.url.split(':', 1)[0]}://") from exc
                return self._lost(exc)
        try:
            self._writer.write(frame)  # the connection is made with the first frame (the header)
        except (FaceanonError, av.error.FFmpegError, OSError) as exc:
            return self._lost(exc)
        if self._down_since_s is not None or self.connects == 0:
            self.connects += 1
            if self._down_since_s is not None:
                log.warning("%s: push reconnected after %.1f s", self.url, time.monotonic() - self._down_since_s)
            self._down_since_s = None
            self._delay_s = self.reconnect_initial_s
        return True

    def _lost(self, exc: BaseException) -> bool:
        now = time.monotonic()
        if self._down_since_s is None:
            self._down_since_s = now
            log.warning("%s: push failed (%s); retrying with backoff, other outputs continue", self.url, exc)
        self._drop_writer()
        self._retry_at_s = now + self._delay_s
        self._delay_s = min(self._delay_s * 2, self.reconnect_max_s)
        self.skipped += 1
        return False

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close(success=False)
            except (FaceanonError, av.error.FFmpegError, OSError) as exc:
                log.debug("%s: closing the broken connection: %s", self.url, exc)

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close(success=True)
            except (FaceanonError, av.error.FFmpegError, OSError) as exc:
                log.warning("%s: could not end the stream cleanly: %s", self.url, exc)
            self._writer = None


# 3. Preview.

PREVIEW_FPS = 15  # enough to watch; each client costs one JPEG encode per frame sent
PREVIEW_PAGE = b"""<!doctype html><html><head><title>faceanon-video preview</title></head>
<body style="margin:0;background:#111"><img src="/stream.mjpg" style="max-width:100%;max-height:100vh;display:block;margin:auto"></body></html>"""


class MjpegPreview:
    """The newest output frame as MJPEG on ``http://127.0.0.1:PORT/`` (``/stream.mjpg``, ``/snapshot.jpg``).

    Bound to localhost only: the preview is for the operator at this machine, not a publishing channel.
    JPEGs are encoded only while someone is watching, once per frame however many clients there are.
    ``port=0`` picks a free port (see ``url``). Hand-written on ``http.server`` because the standard
    library has no MJPEG server and a web framework would be a heavy dependency for one endpoint.
    """

    def __init__(self, port: int = 8090, host: str = "127.0.0.1", max_width_px: int = 960, jpeg_quality: int = 80) -> None:
        self.max_width_px = max_width_px
        self.jpeg_quality = jpeg_quality
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._seq = 0
        self._closed = False
        self._encode_lock = threading.Lock()
        self._jpeg: tuple[int, bytes] = (0, b"")
        try:
            self._server = ThreadingHTTPServer((host, port), _PreviewHandler)
        except OSError as exc:
            raise ConfigError(f"preview: cannot listen on {host}:{port} ({exc.strerror}); choose another --preview-port") from exc
        self._server.daemon_threads = True
        self._server.preview = self
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self.name = f"preview {self.url}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="preview-http", daemon=True)
        self._thread.start()

    def open(self, fps: Fraction) -> None:
        pass

    def write(self, frame: Frame) -> bool:
        with self._cond:
            self._frame, self._seq = frame, self._seq + 1
            self._cond.notify_all()
        return True

    def next_jpeg(self, after_seq: int, timeout_s: float) -> tuple[int, bytes] | None:
        """(sequence number, JPEG) of the newest frame newer than ``after_seq``, or None on timeout/close."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after_seq or self._closed, timeout=timeout_s)
            if self._closed or self._seq <= after_seq:
                return None
            frame, seq = self._frame, self._seq
        with self._encode_lock:
            if self._jpeg[0] < seq:
                bgr = frame.read_bgr()
                if bgr.shape[1] > self.max_width_px:
                    scale = self.max_width_px / bgr.shape[1]
                    bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if ok:
                    self._jpeg = (seq, data.tobytes())
            return self._jpeg

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()


class _PreviewHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        preview: MjpegPreview = self.server.preview
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._reply(b"text/html; charset=utf-8", PREVIEW_PAGE)
        elif path == "/snapshot.jpg":
            got = preview.next_jpeg(0, timeout_s=5.0)
            if got is None:
                self.send_error(503, "no frame yet")
            else:
                self._reply(b"image/jpeg", got[1])
        elif path == "/stream.mjpg":
            self._stream(preview)
        else:
            self.send_error(404)

    def _reply(self, content_type: bytes, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type.decode())
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, preview: MjpegPreview) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seq = 0
        try:
            while not preview.closed:
                got = preview.next_jpeg(seq, timeout_s=1.0)
                if got is None:
                    continue
                seq, jpeg = got
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b\r\n" % (len(jpeg), jpeg))
                time.sleep(1 / PREVIEW_FPS)
        except (BrokenPipeError, ConnectionResetError):
            return  # the viewer closed the page

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        log.debug("preview: " + format, *args)


def window_available() -> bool:
    """Whether OpenCV can show a window: a GUI build of OpenCV (not opencv-python-headless) and a display."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return re.search(r"GUI:\s+NONE", cv2.getBuildInformation()) is None


class WindowPreview:
    """An OpenCV window; all its calls come from its SinkWorker's thread, as HighGUI requires."""

    name = "window"

    def __init__(self, title: str = "faceanon-video") -> None:
        self.title = title

    def open(self, fps: Fraction) -> None:
        pass

    def write(self, frame: Frame) -> bool:
        cv2.imshow(self.title, frame.read_bgr())
        cv2.waitKey(1)
        return True

    def close(self) -> None:
        cv2.destroyWindow(self.title)


# 4. One thread per output.


class SinkWorker:
    """Runs one sink on its own thread and measures latency from capture to written, per frame.

    A sink that raises is stopped and its error kept in ``error`` (the runner fails when every output
    has failed); the others continue.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.name = sink.name
        self._latencies_s: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._latency_lock = threading.Lock()  # copying a deque while another thread appends raises
        self.written = 0
        self.error: BaseException | None = None
        self._box: Mailbox[Frame] = Mailbox()
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}"[:40], daemon=True)

    def start(self, fps: Fraction) -> None:
        self.sink.open(fps)
        self._thread.start()

    def submit(self, frame: Frame) -> None:
        if self.error is None:
            self._box.put(frame)

    @property
    def dropped(self) -> int:
        return self._box.dropped

    def _run(self) -> None:
        while True:
            frame = self._box.get(timeout_s=0.5)
            if frame is None:
                if self._box.closed:
                    return
                continue
            try:
                written = self.sink.write(frame)
            except Exception as exc:  # noqa: BLE001 - one broken output must not stop the others
                self.error = exc
                log.error("output %s failed and was stopped: %s", self.name, exc)
                return
            if written:
                self.written += 1
                if frame.capture_s is not None:
                    with self._latency_lock:
                        self._latencies_s.append(time.monotonic() - frame.capture_s)

    def latencies_s(self) -> list[float]:
        """Capture -> written, per frame, oldest first (the last ``LATENCY_WINDOW`` frames)."""
        with self._latency_lock:
            return list(self._latencies_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is pending, then finalise the sink (flush the encoder, end the file or stream)."""
        self._box.close()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("output %s did not finish within %.0f s; closing it anyway", self.name, timeout_s)
        try:
            self.sink.close()
        except (FaceanonError, av.error.FFmpegError, OSError) as exc:
            log.error("output %s could not be finalised: %s", self.name, exc)
