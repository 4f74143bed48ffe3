"""The tracker interface: ``update(detections | None, frame) -> Detections`` with track ids."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from faceanon_video.types import Detections, Frame


@runtime_checkable
class Tracker(Protocol):
    """Turns per-frame detections into tracks.

    ``update`` gets ``None`` on frames where the detector did not run (detect-every-N); the tracker
    must still return its predicted boxes so those faces stay covered. The result has
    ``track_id``, ``predicted`` and ``seed`` filled. ``reset()`` between videos.
    """

    def update(self, detections: Detections | None, frame: Frame) -> Detections: ...

    def reset(self) -> None: ...


class NoTracker:
    """Passes detections through: every face is anonymized only in frames where it was detected."""

    def update(self, detections: Detections | None, frame: Frame) -> Detections:
        return detections if detections is not None else Detections.empty()

    def reset(self) -> None:
        pass
