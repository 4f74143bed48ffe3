"""The data that flows through the pipeline: frames -> detections -> tracks -> anonymized frames.

Every stage takes and returns these types, so a stage can be swapped without touching the others.
Arrays are NumPy, parallel along the first axis (one row per face), and validated when built so a
bad shape fails where it is made, not three stages later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import cv2
import numpy as np

__all__ = ["Frame", "Detections", "bgr_to_i420", "i420_planes"]


class Frame:
    """One video frame: its pixels and where it sits in time.

    The pixels are held in one of two layouts, whichever the frame was made from:

    * ``bgr``: (H, W, 3) uint8 in OpenCV's order, what the detectors and filters work in;
    * ``i420``: (H * 3 / 2, W) uint8, planar 4:2:0 YUV (Y, then U, then V), the layout H.264 decodes
      to and encodes from.

    Decoded frames stay I420: converting a 720p frame to BGR and back, with the copies around it,
    cost ~8 ms of CPU per frame, more than the encoder. Stages read what they need without converting
    the whole frame (``resized_bgr`` for detection, ``crop_bgr`` around faces) and the filters paint
    face regions straight into the planes (``planes``), so a frame without faces reaches the encoder
    bit for bit as decoded.

    Reading ``frame.bgr`` converts the whole frame once and from then on holds it as BGR (the I420
    array is dropped), so writes into ``frame.bgr`` are never lost; ``frame.i420`` does the reverse.
    OpenCV's I420 conversion pair is used both ways: a round trip changes a pixel by at most 1 level.
    """

    __slots__ = ("_bgr", "_i420", "index", "pts", "time_base", "capture_s", "obscured", "warm_up")

    def __init__(
        self,
        bgr: np.ndarray | None = None,
        index: int = 0,
        pts: int | None = None,
        time_base: Fraction | None = None,
        capture_s: float | None = None,
        obscured: bool = False,
        *,
        i420: np.ndarray | None = None,
        warm_up: bool = False,
    ) -> None:
        if (bgr is None) == (i420 is None):
            raise ValueError("Frame needs exactly one of bgr= or i420=")
        self._bgr: np.ndarray | None = None
        self._i420: np.ndarray | None = None
        if bgr is not None:
            self.bgr = bgr
        else:
            _check_i420(i420)
            self._i420 = i420
        self.index = index
        self.pts = pts
        self.time_base = time_base
        #: Wall-clock time (``time.monotonic()``) at which the frame was captured or decoded; live
        #: sources use it to measure latency from capture to output.
        self.capture_s = capture_s
        #: Set by the pipeline when the frame had to be fully obscured because a stage failed.
        self.obscured = obscured
        #: Set by the reader on frames decoded before ``--start`` (``VideoReader.warm_up_s``, index < 0):
        #: detected and tracked so that a face already in view at the start is tracked there, never
        #: anonymized, written, recorded or counted (``FrameProcessor`` drops them on release).
        self.warm_up = warm_up

    def __repr__(self) -> str:
        layout = "i420" if self._i420 is not None else "bgr"
        return f"Frame(index={self.index}, {self.width}x{self.height} {layout}, pts={self.pts}, obscured={self.obscured})"

    # Whole-frame access (converts at most once, then holds the frame in the layout asked for).

    @property
    def bgr(self) -> np.ndarray:
        bgr = self._bgr
        if bgr is None:
            bgr = _whole_i420_to_bgr(self._i420)
            self._bgr, self._i420 = bgr, None
        return bgr

    @bgr.setter
    def bgr(self, bgr: np.ndarray) -> None:
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"Frame.bgr must be (H, W, 3) uint8, got {bgr.shape} {bgr.dtype}")
        self._bgr, self._i420 = bgr, None

    @property
    def i420(self) -> np.ndarray:
        """The pixels as one contiguous I420 array (frames with even width and height only)."""
        i420 = self._i420
        if i420 is None:
            i420 = self.read_i420()
            self._i420, self._bgr = i420, None
        return i420

    @property
    def is_i420(self) -> bool:
        return self._i420 is not None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, 3), as ``bgr.shape`` would be, without converting anything."""
        if self._bgr is not None:
            return self._bgr.shape
        return (self._i420.shape[0] * 2 // 3, self._i420.shape[1], 3)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def time_s(self) -> float | None:
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    def with_image(self, bgr: np.ndarray) -> Frame:
        """The same frame (index, timing) with other pixels."""
        return Frame(bgr=bgr, index=self.index, pts=self.pts, time_base=self.time_base, capture_s=self.capture_s, obscured=self.obscured, warm_up=self.warm_up)

    # Partial access: what the per-frame stages use, without converting the whole frame.

    def read_bgr(self) -> np.ndarray:
        """The whole frame in BGR without changing how it is held: the frame's own array for a BGR
        frame (read it, do not write it), a converted copy for an I420 frame. Safe to call from
        several threads at once (``bgr`` and ``i420`` are not)."""
        bgr, i420 = self._bgr, self._i420
        return bgr if bgr is not None else _whole_i420_to_bgr(i420)

    def read_i420(self) -> np.ndarray:
        """Like ``read_bgr``, in I420 (what the encoder takes)."""
        bgr, i420 = self._bgr, self._i420
        if i420 is not None:
            return i420
        return bgr_to_i420(bgr)

    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Writable views of the Y (H, W), U and V (H/2, W/2) planes of an I420 frame."""
        if self._i420 is None:
            raise ValueError("planes() needs an I420 frame")
        return i420_planes(self._i420)

    def resized_bgr(self, width: int, height: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """The frame scaled to (width, height) in BGR. For an I420 frame the planes are scaled first
        and only the small result is converted (a 720p frame to detector size: ~4x less work)."""
        bgr, i420 = self._bgr, self._i420
        if (width, height) == (self.width, self.height):
            return self.read_bgr()
        if bgr is not None or width % 2 or height % 2:
            return cv2.resize(self.read_bgr() if bgr is None else bgr, (width, height), interpolation=interpolation)
        sizes = ((width, height), (width // 2, height // 2), (width // 2, height // 2))
        small = [cv2.resize(plane, size, interpolation=interpolation) for plane, size in zip(i420_planes(i420), sizes)]
        return _i420_to_bgr(*small)

    def crop_bgr(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """BGR pixels of the rectangle [x0, x1) x [y0, y1) (clipped to the frame). A view for a BGR
        frame (read it, do not write it), a converted copy for an I420 frame."""
        x0, y0, x1, y1 = _clip_rect(x0, y0, x1, y1, self.width, self.height)
        bgr, i420 = self._bgr, self._i420
        if bgr is not None:
            return bgr[y0:y1, x0:x1]
        if x1 == x0 or y1 == y0:
            return np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        # 4:2:0 chroma covers 2x2 pixels: convert the even-aligned rectangle around it, then trim.
        ax0, ay0, ax1, ay1 = x0 & ~1, y0 & ~1, x1 + (x1 & 1), y1 + (y1 & 1)
        y, u, v = i420_planes(i420)
        chroma = (slice(ay0 // 2, ay1 // 2), slice(ax0 // 2, ax1 // 2))
        block = _i420_to_bgr(y[ay0:ay1, ax0:ax1], u[chroma], v[chroma])
        return block[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]


def _check_i420(i420: np.ndarray) -> None:
    rows, width = i420.shape if i420.ndim == 2 else (0, 0)
    if i420.dtype != np.uint8 or not rows or rows % 3 or (rows * 2 // 3) % 2 or width % 2 or not i420.flags.c_contiguous:
        raise ValueError(f"Frame.i420 must be a contiguous (H*3/2, W) uint8 array with even H and W, got {i420.shape} {i420.dtype}")


def bgr_to_i420(bgr: np.ndarray) -> np.ndarray:
    """An even-sized BGR image as one contiguous I420 array, with OpenCV's conversion (the inverse
    of the one frames are read with, see ``Frame``)."""
    if bgr.shape[0] % 2 or bgr.shape[1] % 2:
        raise ValueError(f"a {bgr.shape[1]}x{bgr.shape[0]} frame has no 4:2:0 layout (odd size)")
    return cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420)


def i420_planes(i420: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (H, W), U and V (H/2, W/2) planes of a contiguous I420 array."""
    height, width = i420.shape[0] * 2 // 3, i420.shape[1]
    quarter = height * width // 4
    chroma = i420[height:].reshape(-1)
    return i420[:height], chroma[:quarter].reshape(height // 2, width // 2), chroma[quarter:].reshape(height // 2, width // 2)


#: OpenCV's I420 -> BGR conversion is ~6x faster (0.6 vs 3-5 ns per pixel, OpenCV 4.14 on this
#: project's AVX-512 machine) when the width is a multiple of this; other widths are padded to it.
FAST_CONVERSION_WIDTH = 128


def _i420_to_bgr(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BGR of three planes (chroma at half size; any strides), with OpenCV's conversion."""
    height, width = y.shape
    padded = -(-width // FAST_CONVERSION_WIDTH) * FAST_CONVERSION_WIDTH
    block = np.empty((height * 3 // 2, padded), np.uint8)
    out_y, out_u, out_v = i420_planes(block)
    out_y[:, :width] = y
    out_u[:, : width // 2] = u
    out_v[:, : width // 2] = v
    bgr = cv2.cvtColor(block, cv2.COLOR_YUV2BGR_I420)
    return bgr if padded == width else bgr[:, :width]


def _whole_i420_to_bgr(i420: np.ndarray) -> np.ndarray:
    if i420.shape[1] % FAST_CONVERSION_WIDTH == 0:
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    return _i420_to_bgr(*i420_planes(i420))


def _clip_rect(x0: int, y0: int, x1: int, y1: int, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = min(max(int(x0), 0), width), min(max(int(y0), 0), height)
    return x0, y0, min(max(int(x1), x0), width), min(max(int(y1), y0), height)


@dataclass
class Detections:
    """Faces in one frame, as parallel arrays (one row per face).

    A detector fills ``xyxy``, ``score`` and ``landmarks``; a tracker adds ``track_id``, ``predicted``
    (True where the box was coasted by the motion model because the detector missed the face) and
    ``seed`` (the per-track random seed anonymizers draw from, see ``track.seeds``).

    >>> d = Detections(xyxy=np.array([[10, 10, 50, 60]], np.float32), score=np.array([0.9], np.float32))
    >>> len(d), d.widths.tolist()
    (1, [40.0])
    >>> len(d[d.score > 0.95])
    0
    """

    xyxy: np.ndarray
    score: np.ndarray
    #: (n, 5, 2) float32: right eye, left eye, nose tip, right mouth corner, left mouth corner
    #: (image coordinates, the subject's right eye first as in YuNet/RetinaFace). NaN when unknown.
    landmarks: np.ndarray | None = None
    track_id: np.ndarray | None = None
    predicted: np.ndarray | None = None
    seed: np.ndarray | None = None
    #: Free-form per-face arrays (e.g. a 478-point mesh); each must have n rows.
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.score = np.asarray(self.score, dtype=np.float32).reshape(n)
        if self.landmarks is None:
            self.landmarks = np.full((n, 5, 2), np.nan, np.float32)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(n, 5, 2)
        for name, dtype in (("track_id", np.int64), ("predicted", bool), ("seed", np.uint64)):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value, dtype=dtype).reshape(n))
        for key, value in self.data.items():
            if len(value) != n:
                raise ValueError(f"Detections.data[{key!r}] has {len(value)} rows, expected {n}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(xyxy=np.zeros((0, 4), np.float32), score=np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> Detections:
        """Select rows with a boolean mask, an index array or a slice."""
        if isinstance(index, (int, np.integer)):
            index = [index]

        def pick(a):
            return None if a is None else a[index]

        return Detections(
            xyxy=self.xyxy[index],
            score=self.score[index],
            landmarks=pick(self.landmarks),
            track_id=pick(self.track_id),
            predicted=pick(self.predicted),
            seed=pick(self.seed),
            data={k: v[index] for k, v in self.data.items()},
        )

    @property
    def widths(self) -> np.ndarray:
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def heights(self) -> np.ndarray:
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    @property
    def has_landmarks(self) -> np.ndarray:
        """(n,) bool: True where all five landmarks are known."""
        return ~np.isnan(self.landmarks).any(axis=(1, 2))

    @staticmethod
    def merge(parts: list[Detections]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Detections.empty()
        if len(parts) == 1:
            return parts[0]

        def cat(name):
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        keys = set.intersection(*(set(p.data) for p in parts))
        return Detections(
            xyxy=cat("xyxy"),
            score=cat("score"),
            landmarks=cat("landmarks"),
            track_id=cat("track_id"),
            predicted=cat("predicted"),
            seed=cat("seed"),
            data={k: np.concatenate([p.data[k] for p in parts]) for k in keys},
        )
