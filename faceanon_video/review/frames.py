"""Frame-accurate random access to a video for the review page: frame index -> BGR pixels -> JPEG.

The index is the one every run uses (``io.decode.VideoReader``: frames in display order, counted
from 0). It is built once by demuxing the video packets without decoding them: their timestamps,
sorted, give every frame's pts, and the keyframe flags say where decoding can start.

A request seeks to the keyframe at or before the frame and decodes forward to it. The decoder stays
open, so the next frames (playback, stepping with the arrow keys) decode forward without a seek;
a small LRU cache of decoded frames serves repeats (the two views, the thumbnails of one frame).
PyAV has seeking but no "frame N" accessor, hence this small index (about 20 bytes a frame).
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import OrderedDict

import av
import cv2
import numpy as np

from faceanon_video.errors import InputError
from faceanon_video.io.decode import open_input, to_frame

log = logging.getLogger(__name__)

#: Decoded frames kept for repeats (both views of a frame, thumbnails, stepping back a few frames).
CACHE_BYTES = 256 * 1024 * 1024
JPEG_QUALITY = 85
#: Largest reordering delay of H.264/HEVC (frames decoded before an earlier one is shown).
REORDER_FRAMES = 16


class FrameSource:
    """``bgr(index)`` and ``jpeg(image)`` for one video file; thread-safe (one decoder, one lock).

    >>> source = FrameSource("tests/data/carphone_pristine.mp4")  # doctest: +SKIP
    >>> source.frame_count, source.bgr(57).shape  # doctest: +SKIP
    (120, (144, 176, 3))
    """

    def __init__(self, path, cache_bytes: int = CACHE_BYTES, index: tuple[list[int], list[int]] | None = None) -> None:
        """``index``: the (pts, keyframe_pts) of another ``FrameSource`` of the same file, to skip
        demuxing the whole file again."""
        self.path = str(path)
        self._lock = threading.Lock()
        self._open()
        self.pts, self.keyframe_pts = index or self._index()
        if not self.pts:
            self.container.close()
            raise InputError(f"{self.path}: no video frames")
        self._position: dict[int, int] = {p: i for i, p in enumerate(self.pts)}
        # AVI stores no presentation times: FFmpeg guesses frames' pts from the decode order, so there
        # a frame's place is counted from the keyframe decoding started at (its GOP is closed).
        self._counting = "avi" in self.container.format.name.split(",")
        self.fps = float(self.stream.average_rate or self.stream.guessed_rate or 30)
        self._packets = None  # the open demux iterator; the decoder has output frame self._last
        self._last = -1
        self._fresh = False  # no frame decoded since the last seek yet
        # Decoded frames as the decoder gave them (4:2:0 is half the size of BGR); converted per request.
        self._cache: OrderedDict[int, av.VideoFrame] = OrderedDict()
        context = self.stream.codec_context
        self._cache_frames = max(REORDER_FRAMES + 1, cache_bytes // max(1, int(context.width * context.height * 1.5)))
        self.seeks = 0  # for the benchmark: how many requests needed a seek
        first = self.bgr(0)
        self.height, self.width = first.shape[:2]

    def _open(self) -> None:
        self.container = open_input(self.path)
        videos = [s for s in self.container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            self.container.close()
            raise InputError(f"{self.path}: has no video stream")
        self.stream = videos[0]
        self.stream.thread_type = "AUTO"

    @property
    def frame_count(self) -> int:
        return len(self.pts)

    def _index(self) -> tuple[list[int], list[int]]:
        """Every frame's pts in display order and the keyframes' pts, from the packets alone."""
        pts, keys = [], []
        try:
            for packet in self.container.demux(self.stream):
                if packet.pts is None or not packet.size or packet.is_discard:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot index the video ({exc})") from exc
        return sorted(pts), sorted(keys)

    def decode_cost(self, index: int) -> int:
        """Frames to decode to reach frame ``index`` after a seek: its distance from the keyframe before it."""
        return index - self._keyframe_before(index)[1]

    def _keyframe_before(self, index: int) -> tuple[int, int]:
        """(number, frame index) of the keyframe at or before frame ``index``; (-1, 0) when none."""
        key = bisect.bisect_right(self.keyframe_pts, self.pts[index]) - 1
        return key, self._position[self.keyframe_pts[key]] if key >= 0 else 0

    def close(self) -> None:
        with self._lock:
            self.container.close()

    def bgr(self, index: int) -> np.ndarray:
        """Frame ``index`` as BGR pixels (display orientation). Callers must not modify it."""
        if not 0 <= index < len(self.pts):
            raise IndexError(f"frame {index} is outside 0..{len(self.pts) - 1}")
        with self._lock:
            av_frame = self._cache.get(index)
            if av_frame is not None:
                self._cache.move_to_end(index)
            else:
                av_frame = self._decode(index)
            return to_frame(av_frame, index=index).bgr

    def _decode(self, index: int) -> av.VideoFrame:
        key, key_position = self._keyframe_before(index)
        # Decode forward when that is no longer than from the keyframe a seek would land on (playback,
        # stepping, and crossing into the next GOP); the slack saves a seek for a few frames more.
        forward = self._packets is not None and self._last < index and index - self._last <= index - key_position + REORDER_FRAMES
        if not forward:
            self._seek(key)
        while True:
            av_frame = self._decode_to(index)
            if av_frame is not None:
                return av_frame
            if not self._fresh or key < 0:
                self._packets = None
                raise InputError(f"{self.path}: frame {index} could not be decoded (damaged)")
            # The seek landed after the frame (imprecise seeking, e.g. MPEG-TS): from the keyframe
            # before, and at last from the start of the file.
            key -= 1
            self._seek(key)

    def _seek(self, key: int) -> None:
        """Position the decoder at keyframe number ``key`` (-1: the start of the file, reopened)."""
        if key >= 0:
            self.container.seek(self.keyframe_pts[key], stream=self.stream, backward=True, any_frame=False)
        else:
            self.container.close()
            self._open()
        self._packets = self.container.demux(self.stream)
        self._last = self._position[self.keyframe_pts[key]] - 1 if key >= 0 else -1  # counting mode starts here
        self._fresh = True
        self.seeks += 1

    def _decode_to(self, index: int) -> av.VideoFrame | None:
        """Decode forward to frame ``index``; None when a fresh seek landed past it."""
        # Frames well before the target are decoded only if later frames refer to them: skipping the
        # others (B-frames mostly) halves the time to reach a frame deep in a long GOP. The frames
        # within REORDER_FRAMES of it are all decoded, whatever the decoder's output delay. Not when
        # frames are counted: a skipped frame would not be counted.
        full_from_pts = self.pts[max(0, index - REORDER_FRAMES)]
        context = self.stream.codec_context
        for packet in self._packets:
            skip = not self._counting and packet.pts is not None and packet.pts < full_from_pts
            context.skip_frame = "NONREF" if skip else "DEFAULT"
            for av_frame in self._decode_packet(packet):
                position = self._last + 1 if self._counting else self._position.get(av_frame.pts)
                if position is None:
                    continue
                if position > index and self._fresh:
                    return None
                self._fresh = False
                self._last = position
                if position >= index - REORDER_FRAMES:
                    self._remember(position, av_frame)  # stepping back a few frames needs no seek
                if position == index:
                    return av_frame
                if position > index:
                    break
        if self._fresh:
            return None  # nothing decodable after the seek (it landed past the keyframe): seek earlier
        self._packets = None
        raise InputError(f"{self.path}: frame {index} could not be decoded")

    def _decode_packet(self, packet) -> list:
        try:
            return packet.decode()
        except (av.error.InvalidDataError, av.error.UndefinedError) as exc:
            log.debug("%s: packet at pts %s: %s", self.path, packet.pts, exc)
            return []

    def _remember(self, index: int, av_frame: av.VideoFrame) -> None:
        self._cache[index] = av_frame
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)


def jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()
