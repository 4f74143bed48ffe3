"""The tracker interface every tracker implements (``ByteTracker``, ``PassThroughTracker``).

Only ``track.stage.TrackingStage`` calls it; the rest of the package talks to that stage.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from faceanon_video.types import Detections, Frame


@runtime_checkable
class Tracker(Protocol):
    """Turns per-frame detections into tracks.

    ``update`` gets ``None`` on frames where the detector did not run (detect-every-N); the tracker
    must still return its predicted boxes so those faces stay covered. The result has
    ``track_id``, ``predicted`` and ``seed`` filled.
    """

    #: True if a face keeps its id from frame to frame (so held frames can follow it back, and
    #: re-detection around its predicted box makes sense); False for pass-through trackers.
    follows_faces: bool

    def update(self, detections: Detections | None, frame: Frame) -> Detections: ...

    def predict_xyxy(self) -> np.ndarray:
        """(n, 4) where the live tracks are expected in the next frame; (0, 4) if none."""
        ...

    def cut(self) -> None:
        """A shot change: end every track (ids keep counting)."""
        ...

    def reset(self) -> None:
        """Forget everything; ids restart (call between unrelated videos or images)."""
        ...
