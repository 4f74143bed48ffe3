"""The data that flows through the pipeline: frames -> detections -> tracks -> anonymized frames.

Every stage takes and returns these types, so a stage can be swapped without touching the others.
Arrays are NumPy, parallel along the first axis (one row per face), and validated when built so a
bad shape fails where it is made, not three stages later.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

__all__ = ["Frame", "Detections"]


@dataclass
class Frame:
    """One decoded video frame.

    ``bgr`` is (H, W, 3) uint8 in OpenCV's BGR order: the detectors and filters all work in BGR,
    and PyAV converts to it for the same cost as RGB, so no stage pays for a channel swap.
    """

    bgr: np.ndarray
    index: int
    pts: int | None = None
    time_base: Fraction | None = None
    #: Wall-clock time (``time.monotonic()``) at which the frame was captured or decoded; live
    #: sources use it to measure latency from capture to output.
    capture_s: float | None = None
    #: Set by the pipeline when the frame had to be fully obscured because a stage failed.
    obscured: bool = False

    def __post_init__(self) -> None:
        if self.bgr.ndim != 3 or self.bgr.shape[2] != 3 or self.bgr.dtype != np.uint8:
            raise ValueError(f"Frame.bgr must be (H, W, 3) uint8, got {self.bgr.shape} {self.bgr.dtype}")

    @property
    def height(self) -> int:
        return self.bgr.shape[0]

    @property
    def width(self) -> int:
        return self.bgr.shape[1]

    @property
    def time_s(self) -> float | None:
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    def with_image(self, bgr: np.ndarray) -> Frame:
        return replace(self, bgr=bgr)


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
