"""The anonymizer interface: ``apply(frame, faces) -> Frame``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from faceanon_video.types import Detections, Frame


@runtime_checkable
class Anonymizer(Protocol):
    """Replaces every face in ``faces`` and returns the new frame.

    ``faces`` are the tracker's output: boxes, 5 landmarks, ``track_id`` and ``seed``. Anonymizers
    must not modify pixels far from the faces and must raise (never silently skip) when they cannot
    anonymize a face: the pipeline then obscures the whole frame (fail closed).
    """

    def apply(self, frame: Frame, faces: Detections) -> Frame: ...
