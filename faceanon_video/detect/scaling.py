"""How far a frame may be shrunk before detection without losing the smallest face we promise to find."""

from __future__ import annotations


def detection_scale(shape: tuple[int, ...], min_face_px: float, model_min_face_px: float, min_side_px: int = 64) -> float:
    """Scale in (0, 1] at which a ``min_face_px`` face becomes ``model_min_face_px`` at the model's input.

    Never upscales (a face smaller than the model can see is not made findable by interpolation), and
    never shrinks the short side below ``min_side_px``.
    """
    if min_face_px <= 0:
        return 1.0
    scale = min(1.0, model_min_face_px / float(min_face_px))
    short_side = min(shape[0], shape[1])
    return max(scale, min(1.0, min_side_px / short_side))
