"""Decoding with PyAV: container -> video ``Frame``s (in display orientation) plus the other streams'
packets, in demux order, so the encoder can copy audio/subtitles without re-encoding them."""

from __future__ import annotations

import hashlib
import heapq
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from faceanon_video.errors import InputError
from faceanon_video.io import codec_threads
from faceanon_video.types import Frame

log = logging.getLogger(__name__)

# A decoded count this far below the header's frame count means the file was cut short. The header
# count of some muxers is off by a frame or two, hence the slack.
TRUNCATION_SLACK = 0.02
#: How much sooner than the container's duration (which includes audio) the picture may end.
CONTAINER_DURATION_SLACK_S = 1.0
#: Smallest frame side: 4:2:0 encoding halves each side for chroma, and no detector finds a face in less.
MIN_SIZE_PX = 8


@dataclass(frozen=True)
class VideoInfo:
    """What the encoder needs to reproduce the input's timing and layout."""

    width: int  # coded size; frames are rotated upright, so theirs may be swapped
    height: int
    fps: Fraction
    time_base: Fraction
    frame_count: int  # from the header; 0 when unknown (live, some containers)
    duration_s: float | None
    codec: str
    format_name: str
    start_pts: int | None


def open_input(url: str | Path, options: dict | None = None, timeout_s: float | None = None, **kwargs):
    """``av.open`` with the failures a user can cause turned into one-line ``InputError``s."""
    name = str(url)
    is_url = "://" in name
    if not is_url and not Path(name).exists():
        raise InputError(f"{name}: no such file")
    if not is_url and Path(name).is_file() and Path(name).stat().st_size == 0:
        raise InputError(f"{name}: file is empty")
    try:
        return av.open(name, options=options or {}, timeout=timeout_s, **kwargs)
    except av.error.FileNotFoundError as exc:
        raise InputError(f"{name}: no such file or device") from exc
    except av.error.PermissionError as exc:
        raise InputError(f"{name}: permission denied") from exc
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        raise InputError(f"{name}: not a readable video (unknown format or damaged file)") from exc
    except av.error.FFmpegError as exc:
        raise InputError(f"{name}: cannot open ({exc.strerror or exc})") from exc


def _is_i420(av_frame: av.VideoFrame) -> bool:
    return av_frame.format.name == "yuv420p" and av_frame.width % 2 == 0 and av_frame.height % 2 == 0


def to_bgr(av_frame: av.VideoFrame) -> np.ndarray:
    """BGR pixels of a decoded frame.

    For 4:2:0 video, OpenCV's YUV->BGR conversion is used because it is the exact inverse of the one
    the encoder uses (``Frame.i420``): a frame with no faces comes back to within +-1 level.
    swscale's pair, which PyAV uses by default, drifts by ~2 levels per round trip on every pixel.
    """
    if _is_i420(av_frame):
        return cv2.cvtColor(av_frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    return av_frame.to_ndarray(format="bgr24")


def to_frame(av_frame: av.VideoFrame, **fields) -> Frame:
    """A ``Frame`` in display orientation: 4:2:0 video stays I420 as decoded (see ``Frame``), other
    pixel formats (full-range, 10-bit, 4:4:4...) and rotated video are converted to BGR."""
    turns = round((av_frame.rotation or 0) / 90) % 4
    if _is_i420(av_frame) and not turns:
        return Frame(i420=av_frame.to_ndarray(), **fields)
    # PyAV's frame.rotation is the display-matrix angle, counter-clockwise like np.rot90 (checked
    # against ffmpeg's own autorotate on a clip tagged rotate=90).
    bgr = to_bgr(av_frame)
    return Frame(bgr=np.ascontiguousarray(np.rot90(bgr, k=turns)) if turns else bgr, **fields)


class VideoReader:
    """Iterates a video file or stream as ``Frame``s in display orientation.

    ``packets=True`` also yields the non-video ``av.Packet``s (audio, subtitles, data) in demux
    order, for copying into the output. Raises ``InputError`` for missing, non-video and truncated
    inputs.

    >>> with VideoReader("tests/data/carphone_pristine.mp4") as reader:  # doctest: +SKIP
    ...     frames = [f for f in reader if isinstance(f, Frame)]
    """

    def __init__(
        self,
        url: str | Path,
        start_s: float | None = None,
        end_s: float | None = None,
        options: dict | None = None,
        timeout_s: float | None = None,
        av_format: str | None = None,
        check_truncation: bool = True,
        strict: bool = False,
        warm_up_s: float = 0.0,
    ) -> None:
        self.url = str(url)
        self.start_s = start_s
        self.end_s = end_s
        #: Seconds before ``start_s`` also yielded, as ``Frame.warm_up`` frames with indices -n..-1 (the
        #: span's frames are still 0, 1, ...): the file runner tracks them and drops them (``--start``).
        #: Only ``items``/``__iter__`` read it: it may be set after opening, before iterating.
        self.warm_up_s = warm_up_s
        self.check_truncation = check_truncation
        self.container = open_input(url, options=options, timeout_s=timeout_s, format=av_format)
        # The first real video: a cover picture (an MP4 'covr', a Matroska image attachment) is a video
        # stream too, and can come first.
        videos = [s for s in self.container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            self.container.close()
            raise InputError(f"{self.url}: has no video stream")
        self.video_stream = videos[0]
        context = self.video_stream.codec_context
        threads = codec_threads(context.width or 0, context.height or 0)
        if threads > 1:
            self.video_stream.thread_type = "AUTO"  # frame + slice threads
        context.thread_count = threads
        self.copy_streams = [
            s for s in self.container.streams if s.type in ("audio", "subtitle", "data") and s.index != self.video_stream.index
        ]
        #: Streams with no packets to copy (attachments) or that are never copied (covers, other videos),
        #: for the writer's metadata policy to keep or list as removed (see ``io.metadata``).
        self.other_streams = [
            s for s in self.container.streams if s.type in ("attachment", "video") and s.index != self.video_stream.index
        ]
        self.info = self._probe()
        self.strict = strict
        self.frames_decoded = 0  # frames yielded, damaged ones included
        self.damaged_frames = 0
        # AVI stores no presentation times: FFmpeg guesses them from the decode order, so with B-frames
        # frames come out with pts the packets never announced in that order (a false "missing frame").
        # Corrupt frames are still caught there by the decoder's own flag.
        self._track_missing = "avi" not in self.container.format.name.split(",")
        self._last_shape: tuple[int, ...] | None = None
        self._last_pts: int | None = None
        # A negative start (MPEG-TS whose clock wrapped, some edited files): every stream is moved
        # forward so the first frame is at >= 0, or MP4 edit lists would hide the frames before 0.
        start_us = self.container.start_time
        self.pts_shift_s = -start_us / av.time_base if start_us is not None and start_us < 0 else 0.0
        start = self.video_stream.start_time
        self.start_offset_s = (float(start * self.info.time_base) if start is not None else 0.0) + self.pts_shift_s

    def _probe(self) -> VideoInfo:
        s = self.video_stream
        cc = s.codec_context
        if not cc.width or not cc.height:
            raise InputError(f"{self.url}: video stream has no size (damaged header)")
        if min(cc.width, cc.height) < MIN_SIZE_PX:
            raise InputError(f"{self.url}: the video is {cc.width}x{cc.height} pixels; at least {MIN_SIZE_PX}x{MIN_SIZE_PX} can be anonymized")
        fps = s.average_rate or s.guessed_rate or s.base_rate or Fraction(30)
        duration_s = None
        if s.duration is not None and s.time_base:
            duration_s = float(s.duration * s.time_base)
        elif self.container.duration:
            duration_s = self.container.duration / av.time_base
        return VideoInfo(
            width=cc.width,
            height=cc.height,
            fps=Fraction(fps),
            time_base=Fraction(s.time_base) if s.time_base else Fraction(1, 90000),
            frame_count=int(s.frames or 0),
            duration_s=duration_s,
            codec=cc.name,
            format_name=self.container.format.name,
            start_pts=s.start_time,
        )

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    @property
    def warm_from_s(self) -> float | None:
        """Where the warm-up before ``start_s`` begins: ``warm_up_s`` before it, never before the
        video's start (None: no warm-up)."""
        if not self.start_s or self.warm_up_s <= 0:
            return None
        return max(self.start_s - self.warm_up_s, 0.0)

    def in_warm_up(self, pts: int | None, time_base) -> bool:
        """Whether a timestamp falls in the warm-up, [warm_from_s, start_s) (counted as ``in_span`` does)."""
        from_s = self.warm_from_s
        if from_s is None or pts is None or time_base is None:
            return False
        t = float(pts * time_base) - self.start_offset_s
        return from_s <= t < self.start_s

    def _seek_start(self) -> int:
        """Seek to the warm-up (else to ``start_s``); returns how many frames the warm-up has."""
        if not self.start_s:
            return 0
        from_s = self.warm_from_s
        target = int(((self.start_s if from_s is None else from_s) + self.start_offset_s) * av.time_base)
        self.container.seek(target, any_frame=False, backward=True)
        if from_s is None:
            return 0
        count = self._count_warm_up()
        self.container.seek(target, any_frame=False, backward=True)
        return count

    def _count_warm_up(self) -> int:
        """The warm-up's frames, counted from the demuxer (nothing decoded) up to ``start_s``, as
        ``items`` announces frames: their indices end at -1, so the span's first frame is 0 and the
        ``--detect-every`` schedule runs on through the warm-up unchanged (``segments`` numbers the
        frames before a segment the same way, from all the file's packets)."""
        time_base = self.info.time_base
        shift = round(self.pts_shift_s / time_base)
        count = 0
        for packet in self.container.demux(self.video_stream):
            if packet.size and packet.pts is not None and not packet.is_discard and self.in_warm_up(packet.pts + shift, time_base):
                count += 1
            # Packets come in decode order and a frame is never shown before it is decoded (dts <= pts):
            # once one decodes at or after start_s, none after it is shown before. Without dts, a
            # second of B-frame reordering is more than any encoder uses.
            decode_ts, slack_s = (packet.dts, 0.0) if packet.dts is not None else (packet.pts, 1.0)
            if decode_ts is not None and float((decode_ts + shift) * time_base) - self.start_offset_s >= self.start_s + slack_s:
                break
        return count

    def __iter__(self) -> Iterator[Frame]:
        return (item for item in self.items(packets=False) if isinstance(item, Frame))

    def items(self, packets: bool = True) -> Iterator[Frame | av.Packet]:
        """Frames (and, with ``packets=True``, the other streams' packets) in demux order.

        Damaged input is not fatal: a frame the decoder flags as corrupt, and a frame whose packet
        could not be decoded at all (a gap in the timestamps the demuxer announced), comes out black
        with ``obscured=True`` at its place in time (``damaged_frames`` counts them; ``strict=True``
        raises instead). A half-decoded frame can hide a face from the detector but not from a viewer.
        """
        warm_index = -self._seek_start()
        streams = [self.video_stream] + (self.copy_streams if packets else [])
        time_base = self.info.time_base
        fallback_pts = 0
        frame_step = (1 / self.info.fps / time_base) if self.info.fps else 1
        shift = round(self.pts_shift_s / time_base)
        # Timestamps of the video packets the decoder has not answered yet: those it passes over
        # (while it outputs the frames after them, in display order) are frames lost to damage.
        announced: list[int] = []
        try:
            for packet in self.container.demux(streams):
                if packet.stream.index != self.video_stream.index:
                    if packet.size == 0:  # the demuxer's flush packets carry nothing to copy
                        continue
                    if self.pts_shift_s:
                        self._shift_packet(packet)
                    if not self.in_span(packet.pts, packet.stream.time_base):
                        continue
                    yield packet
                    continue
                # Empty packets (an AVI's repeated frames) and those an edit list cuts decode to nothing.
                if packet.size and packet.pts is not None and not packet.is_discard and self.in_span(packet.pts + shift, time_base):
                    heapq.heappush(announced, packet.pts + shift)
                try:
                    decoded = packet.decode()
                except (av.error.InvalidDataError, av.error.UndefinedError) as exc:
                    log.debug("%s: packet at pts %s: %s", self.url, packet.pts, exc)
                    decoded = []  # its frame is missing; announced makes it a damaged frame
                for av_frame in decoded:
                    pts = av_frame.pts + shift if av_frame.pts is not None else round(fallback_pts)
                    fallback_pts = pts + frame_step
                    if not self.in_span(pts, time_base):
                        if self.end_s is not None and pts * time_base - self.start_offset_s > self.end_s:
                            return
                        if self.in_warm_up(pts, time_base):
                            # Not counted, not checked for damage (a damaged one is left out): the
                            # output never holds it. Index < 0 always (one the count missed is left out).
                            if warm_index < 0 and not av_frame.is_corrupt:
                                yield to_frame(av_frame, index=warm_index, pts=pts, time_base=time_base, capture_s=time.monotonic(), warm_up=True)
                            warm_index += 1
                        continue
                    yield from self._missing_before(announced, pts, time_base)
                    frame = to_frame(av_frame, index=self.frames_decoded, pts=pts, time_base=time_base, capture_s=time.monotonic())
                    self.frames_decoded += 1
                    self._last_shape = frame.shape
                    self._last_pts = pts
                    yield self._damaged(frame) if av_frame.is_corrupt else frame
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.url}: decoding failed after {self.frames_decoded} frames ({exc.strerror or exc})") from exc
        yield from self._missing_before(announced, None, time_base)
        if self.damaged_frames:
            log.warning("%s: %d damaged or missing frames in the input were obscured (--strict makes this an error)", self.url, self.damaged_frames)
        self._check_complete()

    def copied_packets(self) -> Iterator[av.Packet]:
        """Only the other streams' packets (audio, subtitles, data), in demux order and on the same
        clock as ``items``, without decoding any video: the audio of a segment-parallel run is
        copied once for the whole file (``segments``), those in ``start_s``..``end_s`` (as ``items`` does)."""
        if not self.copy_streams:
            return
        for packet in self.container.demux(self.copy_streams):
            if packet.size == 0:
                continue
            if self.pts_shift_s:
                self._shift_packet(packet)
            if self.in_span(packet.pts, packet.stream.time_base):
                yield packet

    def _missing_before(self, announced: list[int], pts: int | None, time_base) -> Iterator[Frame]:
        """Black stand-ins for the announced frames before ``pts`` (all of them at the end: None)."""
        if announced and pts is not None and pts not in announced:
            # This file's frames do not carry their packets' timestamps (some demuxers and decoders
            # rewrite them): gaps cannot be told from renumbering, so missing frames are not tracked.
            announced.clear()
            self._track_missing = False
        while announced and (pts is None or announced[0] <= pts):
            missing = heapq.heappop(announced)
            if missing == pts or not self._track_missing:
                continue
            shape = self._last_shape or (self.info.height, self.info.width, 3)
            frame = Frame(bgr=np.zeros(shape, np.uint8), index=self.frames_decoded, pts=missing, time_base=time_base, capture_s=time.monotonic())
            self.frames_decoded += 1
            yield self._damaged(frame)

    def _damaged(self, frame: Frame) -> Frame:
        self.damaged_frames += 1
        t = float(frame.pts * frame.time_base) - self.start_offset_s if frame.pts is not None else 0.0
        if self.strict:
            raise InputError(f"{self.url}: damaged frame at {t:.2f} s (without --strict it would be obscured)")
        log.debug("%s: frame %d (%.2f s) is damaged or missing: obscured", self.url, frame.index, t)
        frame.bgr = np.zeros(frame.shape, np.uint8)
        frame.obscured = True
        return frame

    def _shift_packet(self, packet: av.Packet) -> None:
        shift = round(self.pts_shift_s / packet.time_base)
        if packet.pts is not None:
            packet.pts += shift
        if packet.dts is not None:
            packet.dts += shift

    def in_span(self, pts: int | None, time_base) -> bool:
        """Whether a timestamp falls in [start_s, end_s], counted from the start of the video (like ffmpeg's -ss/-to)."""
        if pts is None or time_base is None or (self.start_s is None and self.end_s is None):
            return True
        t = float(pts * time_base) - self.start_offset_s
        if self.start_s is not None and t < self.start_s:
            return False
        return self.end_s is None or t <= self.end_s

    def _check_complete(self) -> None:
        """Raise ``InputError`` when the file ends before its header says, whatever the container.

        Judged by time where the header gives a duration: frame counts are not comparable (an MP4
        edit list cuts frames the header counts, an AVI counts its repeated frames, MKV has none).
        """
        if not self.check_truncation or self.end_s is not None:
            return
        if self.frames_decoded == 0:
            if self.info.frame_count or self.info.duration_s:
                raise InputError(f"{self.url}: no frame could be decoded (damaged or truncated file)")
            return
        expected_end_s, slack_s = self._expected_end_s()
        if expected_end_s is not None:
            frame_s = 1 / float(self.info.fps) if self.info.fps else 0.0
            got_end_s = float(self._last_pts * self.info.time_base) + frame_s if self._last_pts is not None else 0.0
            if got_end_s < expected_end_s - max(slack_s, 3 * frame_s, TRUNCATION_SLACK * (expected_end_s - self.start_offset_s)):
                raise InputError(
                    f"{self.url}: truncated: the file ends at {got_end_s - self.start_offset_s:.2f} s, "
                    f"its header says {expected_end_s - self.start_offset_s:.2f} s"
                )
            return
        expected = self.info.frame_count
        if expected and not self.start_s and self.frames_decoded < expected * (1 - TRUNCATION_SLACK) - 1:
            raise InputError(f"{self.url}: truncated: decoded {self.frames_decoded} of {expected} frames")

    def _expected_end_s(self) -> tuple[float | None, float]:
        """Where the header says the video ends (on the shifted clock), and how much less is normal:
        the container's duration also covers audio, which may outlast the picture a little."""
        s = self.video_stream
        if s.duration and s.time_base:
            start = s.start_time or 0
            return float((start + s.duration) * s.time_base) + self.pts_shift_s, 0.0
        if self.container.duration:
            start_us = self.container.start_time or 0
            return (start_us + self.container.duration) / av.time_base + self.pts_shift_s, CONTAINER_DURATION_SLACK_S
        return None, 0.0


def video_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's first video stream's packets, in file order, without decoding: names
    one exact encoded video (a vault is bound to the output it was written with)."""
    digest = hashlib.sha256()
    with open_input(path) as container:
        if not container.streams.video:
            raise InputError(f"{path}: has no video stream")
        for packet in container.demux(container.streams.video[0]):
            if packet.size:
                digest.update(bytes(packet))
    return digest.hexdigest()
