"""Live inputs: webcams and network streams, read on their own thread, newest frame only, reconnecting.

A ``LiveSource`` decodes on a capture thread and keeps only the newest frame (``Mailbox``): if the
pipeline falls behind, the older frame is dropped and counted instead of queued, so latency cannot grow.
A dropped or stalled input (error, end of stream, or no data for ``read_timeout_s``) is reopened with
exponential backoff; each outage is recorded as a ``Gap`` and logged when it starts and ends.

Frames are converted to BGR only when taken, so frames that are dropped cost nothing but their decode.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error

from faceanon_video.errors import ConfigError, FaceanonError, InputError, SourceLost
from faceanon_video.inputs import is_stream_input
from faceanon_video.io.decode import open_input, to_frame
from faceanon_video.live.mailbox import Mailbox
from faceanon_video.types import Frame

log = logging.getLogger(__name__)


def is_live_input(name: str) -> bool:
    """Whether an INPUT is a stream URL (rtsp://, rtmp://, http(s)://, udp://, srt://, tcp://...) rather than a file."""
    return is_stream_input(name)


def camera_input(index: int) -> tuple[str, str]:
    """(device, FFmpeg input format) of webcam number ``index`` on this platform."""
    if index < 0:
        raise ConfigError("--camera must be >= 0")
    if sys.platform.startswith("linux"):
        return f"/dev/video{index}", "v4l2"
    if sys.platform == "darwin":
        return str(index), "avfoundation"
    # DirectShow names devices, not numbers: "video=Integrated Camera" cannot be derived from an index.
    raise ConfigError("--camera works on Linux (v4l2) and macOS; on Windows use a stream URL as INPUT")


def protocol_missing(exc: BaseException) -> bool:
    """Whether an open failed because this FFmpeg build lacks the protocol (e.g. PyAV's wheels have no
    SRT): retrying cannot help, so it is reported at once instead of reconnected forever."""
    return isinstance(exc, av.error.ProtocolNotFoundError) or isinstance(exc.__cause__, av.error.ProtocolNotFoundError)


def input_options(url: str, open_timeout_s: float, user: dict[str, str] | None = None) -> dict[str, str]:
    """FFmpeg options for a live input: low-delay demuxing and decoding, TCP for RTSP; ``user``'s win."""
    options = {
        "flags": "low_delay",  # decoder: output each frame as soon as it is complete
        # 1 s / 1 MB of probing instead of FFmpeg's 5 s: reconnects take ~1 s, and every live codec we
        # know of announces its parameters within one keyframe interval.
        "analyzeduration": "1000000",
        "probesize": "1000000",
    }
    # No "fflags nobuffer": it throws away the packets read while probing, and with them the stream's
    # first keyframe; an encoder that sends one every 10 s then gave no frame for 10 s (and a 7 s
    # stream none at all). The probed packets come out first; the newest-frame mailbox drops the
    # older ones at once, so latency is back to normal within the first second.
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = "tcp"  # RTP over UDP loses packets under load (smeared frames); TCP does not
    if scheme == "udp":
        options["overrun_nonfatal"] = "1"  # a burst that overflows the socket buffer loses packets, not the stream
    merged = {**options, **(user or {})}
    if merged.get("rtsp_flags") == "listen" and "listen_timeout" not in merged:
        # FFmpeg 8's default (-1) makes listen mode fail with "Numerical result out of range".
        merged["listen_timeout"] = str(max(1, round(open_timeout_s)))
    return merged


@dataclass
class Gap:
    """An outage of the source: monotonic start and end (None while it lasts), why, and reopen attempts."""

    start_s: float
    reason: str
    end_s: float | None = None
    attempts: int = 0
    #: True for the wait before the very first frame (a source not up yet), which is not a reconnect.
    initial: bool = False

    @property
    def duration_s(self) -> float:
        return (self.end_s if self.end_s is not None else time.monotonic()) - self.start_s


_STOPPED = "stopped"
_END_OF_STREAM = "end of stream"


class LiveSource:
    """A camera, stream URL or (paced) file as an endless sequence of newest frames.

    Args:
        url: a stream URL, a device (``/dev/video0``) or a file (read at its own frame rate, ends at EOF).
        av_format: FFmpeg input format, e.g. ``"v4l2"`` for cameras; None detects it.
        options: FFmpeg options, merged over ``input_options``'s low-delay defaults.
        open_timeout_s: how long connecting may take before it counts as a failed attempt. Longer suits
            slow RTSP cameras; shorter notices a dead source sooner.
        read_timeout_s: how long without data counts as a stall. Shorter fills outputs with obscured
            frames sooner after a drop, but a source with long pauses (e.g. motion-triggered) reconnects needlessly.
        reconnect_initial_s, reconnect_max_s: backoff between reopen attempts, doubling from the first to
            the second. A small maximum recovers sooner; a large one is gentler on a struggling server.
        give_up_s: after this long without the source, ``get`` raises ``SourceLost``; None retries forever.

    ``get`` returns ``Frame``s numbered in the order taken (so detect-every-N schedules stay regular
    whatever is dropped), with ``capture_s`` = ``time.monotonic()`` when the frame was decoded.
    """

    def __init__(
        self,
        url: str,
        av_format: str | None = None,
        options: dict[str, str] | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 3.0,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        give_up_s: float | None = None,
    ) -> None:
        self.url = str(url)
        self.av_format = av_format
        self.is_network = is_live_input(self.url)
        self.is_file = not self.is_network and av_format is None and Path(self.url).is_file()
        self.options = input_options(self.url, open_timeout_s, options)
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_initial_s)
        self.give_up_s = give_up_s
        #: Nominal frame rate of the stream, known once it has been opened.
        self.fps: Fraction | None = None
        self.gaps: list[Gap] = []
        self.captured = 0
        self.reconnects = 0
        self.decode_errors = 0
        self.ended = False
        self._frames: Mailbox[tuple[av.VideoFrame, float]] = Mailbox()
        self._stop = threading.Event()
        self._failed: FaceanonError | None = None
        self._delay_s = reconnect_initial_s
        self._taken = 0
        self._last_frame_s = time.monotonic()
        self._thread: threading.Thread | None = None

    # 1. Life cycle.

    def start(self) -> LiveSource:
        """Start capturing. A missing file or camera fails here; a network source that is not up yet
        is retried like any outage."""
        self._last_frame_s = time.monotonic()  # the give-up clock starts now
        if self.av_format == "v4l2" and not Path(self.url).exists():
            raise InputError(f"{self.url}: no such camera (connected cameras are listed by 'ls /dev/video*')")
        first = None if self.is_network else self._open()
        self._thread = threading.Thread(target=self._capture, args=(first,), name="live-capture", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._frames.close()
        if self._thread is not None:
            # The thread may sit in a blocking read until read_timeout_s; it is a daemon, so the outputs
            # are finalised without waiting for it.
            self._thread.join(timeout=1.0)

    def __enter__(self) -> LiveSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # 2. Taking frames.

    def get(self, timeout_s: float | None) -> Frame | None:
        """The newest frame not yet taken, or None if none arrives within ``timeout_s``.

        Raises ``SourceLost`` once the source has been down for ``give_up_s``.
        """
        item = self._frames.get(timeout_s)
        if item is None:
            if self._failed is not None:
                raise self._failed
            # Checked here, not only when a reopen attempt fails: an attempt may block for
            # open_timeout_s, and --give-up-after 4 must not mean 11 s.
            down_s = time.monotonic() - self._last_frame_s
            if self.give_up_s is not None and down_s >= self.give_up_s:
                reason = self.gaps[-1].reason if self.gaps else f"no data for {down_s:.0f} s"
                self._failed = SourceLost(f"{self.url}: no frames for {down_s:.0f} s ({reason}); gave up")
                raise self._failed
            return None
        av_frame, capture_s = item
        frame = to_frame(av_frame, index=self._taken, pts=av_frame.pts, time_base=av_frame.time_base, capture_s=capture_s)
        self._taken += 1
        return frame

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one before they were taken (the pipeline was busy)."""
        return self._frames.dropped

    @property
    def in_gap(self) -> bool:
        return bool(self.gaps) and self.gaps[-1].end_s is None

    # 3. The capture thread.

    def _open(self):
        return open_input(self.url, options=self.options, timeout_s=(self.open_timeout_s, self.read_timeout_s), format=self.av_format)

    def _capture(self, container) -> None:
        while not self._stop.is_set():
            reason = self._read(container)
            container = None
            if reason == _STOPPED or self._stop.is_set():
                break
            if self.is_file and reason == _END_OF_STREAM:
                self.ended = True
                break
            if not self._outage(reason):
                break
            self._stop.wait(self._delay_s)
            self._delay_s = min(self._delay_s * 2, self.reconnect_max_s)
        self._frames.close()

    def _outage(self, reason: str) -> bool:
        """Record a failed read or reopen; False once it is time to give up."""
        now = time.monotonic()
        if not self.in_gap:
            self.gaps.append(Gap(start_s=now, reason=reason, initial=self.captured == 0))
            if self.captured:
                log.warning("%s: source lost (%s); reconnecting, outputs get black frames meanwhile", self.url, reason)
            else:
                log.warning("%s: source not reachable yet (%s); retrying", self.url, reason)
        gap = self.gaps[-1]
        gap.attempts += 1
        log.info("%s: reconnect attempt %d failed (%s); next in %.1f s", self.url, gap.attempts, reason, self._delay_s)
        if self.give_up_s is not None and now - gap.start_s >= self.give_up_s:
            self._failed = SourceLost(f"{self.url}: no frames for {now - gap.start_s:.0f} s ({reason}); gave up")
            return False
        return True

    def _read(self, container) -> str:
        """Decode until the source fails; returns why it stopped."""
        try:
            container = container or self._open()
        except InputError as exc:
            if protocol_missing(exc):
                self._failed = InputError(f"{self.url}: this FFmpeg build cannot read {self.url.split(':', 1)[0]}:// streams")
                return _STOPPED
            return str(exc).removeprefix(f"{self.url}: ")
        try:
            if not container.streams.video:
                return "no video stream"
            stream = container.streams.video[0]
            # Slice threads only: frame threading holds back one frame per extra thread.
            stream.thread_type = "SLICE"
            self.fps = Fraction(stream.average_rate or stream.guessed_rate or stream.base_rate or 0) or self.fps
            clock = _Pacer(self._stop) if self.is_file else None
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return _STOPPED
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    # A damaged packet (lost datagrams): skip it; the next keyframe repairs the picture.
                    self.decode_errors += 1
                    continue
                for av_frame in decoded:
                    if clock is not None and not clock.wait(av_frame.time):
                        return _STOPPED
                    self._publish(av_frame)
            return _END_OF_STREAM
        except av.error.ExitError:
            return f"no data for {self.read_timeout_s:g} s"
        except (av.error.FFmpegError, OSError) as exc:
            return f"read failed: {getattr(exc, 'strerror', None) or exc}"
        finally:
            container.close()

    def _publish(self, av_frame: av.VideoFrame) -> None:
        now = time.monotonic()
        self._last_frame_s = now
        self._frames.put((av_frame, now))
        self.captured += 1
        if self.in_gap:
            gap = self.gaps[-1]
            gap.end_s = now
            self.reconnects += not gap.initial
            log.warning("%s: source %s after %.1f s (%d attempts)", self.url, "up" if gap.initial else "back", gap.duration_s, gap.attempts)
        self._delay_s = self.reconnect_initial_s


class _Pacer:
    """Releases a file's frames at their timestamps, so a file can stand in for a camera (tests, demos)."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._origin: tuple[float, float] | None = None

    def wait(self, time_s: float | None) -> bool:
        if time_s is None:
            return not self._stop.is_set()
        if self._origin is None:
            self._origin = (time.monotonic(), time_s)
        due_s = self._origin[0] + time_s - self._origin[1]
        return not self._stop.wait(max(0.0, due_s - time.monotonic()))
