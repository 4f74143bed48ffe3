"""How far a frame may be shrunk before detection without losing the smallest face we promise to find."""

from __future__ import annotations

import math

import numpy as np

from faceanon_video.types import Detections

#: Frames up to this many pixels (640x480) are always detected at full resolution: it is cheap there
#: (~10 ms for YuNet), and partly visible faces at the frame edge are found a frame or two sooner.
FULL_RESOLUTION_PX = 640 * 480


def detection_scale(shape: tuple[int, ...], min_face_px: float, model_min_face_px: float, full_resolution_px: int = FULL_RESOLUTION_PX) -> float:
    """Scale in (0, 1] for detecting in a frame of ``shape``.

    The largest of: the scale at which a ``min_face_px`` face becomes ``model_min_face_px`` at the
    model's input, and the scale that keeps ``full_resolution_px`` pixels. Never upscales (a face
    smaller than the model can see is not made findable by interpolation). ``min_face_px <= 0``
    means full resolution.
    """
    if min_face_px <= 0:
        return 1.0
    by_face = model_min_face_px / float(min_face_px)
    by_budget = math.sqrt(full_resolution_px / float(shape[0] * shape[1]))
    return min(1.0, max(by_face, by_budget))


def aligned_side(side: float, multiple: int = 32) -> int:
    """``side`` rounded up to a multiple of ``multiple`` (at least one): the input sides CNN
    detectors with stride-``multiple`` feature maps accept."""
    return max(multiple, int(math.ceil(side / multiple)) * multiple)


def scale_to_frame(faces: Detections, sx: float, sy: float) -> Detections:
    """Map boxes and landmarks found in a resized image back to the frame (in place)."""
    faces.xyxy *= np.array([sx, sy, sx, sy], np.float32)
    faces.landmarks *= np.array([sx, sy], np.float32)
    return faces
