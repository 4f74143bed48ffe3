"""``--no-track``: no tracking, but every face still gets an id and a keyed seed."""

from __future__ import annotations

import numpy as np

from faceanon_video.track.seeds import TrackSeeder, random_key
from faceanon_video.types import Detections, Frame

__all__ = ["PassThroughTracker"]


class PassThroughTracker:
    """Each detection is anonymized in its own frame only (a missed frame leaks the face) and gets a
    fresh id, so anonymizers that draw from ``Detections.seed`` work unchanged, but a face's seed
    changes every frame. Ids are deterministic (1, 2, ... in detection order from ``reset()``).

    >>> t = PassThroughTracker(key=b"k" * 32)
    >>> frame = Frame(bgr=np.zeros((10, 10, 3), np.uint8), index=0)
    >>> t.update(Detections(xyxy=[[0, 0, 5, 5], [5, 5, 9, 9]], score=[0.9, 0.8]), frame).track_id.tolist()
    [1, 2]
    """

    follows_faces = False  # a new id every frame: nothing to follow back or re-detect around

    def __init__(self, key: bytes | None = None, seeder: TrackSeeder | None = None) -> None:
        self.seeder = seeder or TrackSeeder(key if key is not None else random_key())
        self.reset()

    def reset(self) -> None:
        self._next_id = 1

    def cut(self) -> None:
        pass  # no tracks to end

    def predict_xyxy(self) -> np.ndarray:
        return np.zeros((0, 4), np.float32)

    def update(self, detections: Detections | None, frame: Frame) -> Detections:
        if detections is None or not len(detections):
            return Detections.empty()
        n = len(detections)
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        out = detections[np.arange(n)]
        out.track_id, out.predicted, out.seed = ids, np.zeros(n, bool), self.seeder.seeds_for(ids)
        return out
