"""Where to paint: padded, clipped face boxes and their ellipse or box masks."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceanon_video.config import MASK_SHAPES  # noqa: F401 - the shapes painted here, re-exported
from faceanon_video.types import Detections


@dataclass
class FaceRegion:
    """A face's paint area: a clipped box ``[y0:y1, x0:x1]`` and, for ellipses, a mask of that size."""

    x0: int
    y0: int
    x1: int
    y1: int
    face_width_px: float
    mask: np.ndarray | None = None  # (y1-y0, x1-x0) uint8, 255 inside; None paints the whole box
    #: Size of this region's pixels relative to the frame's: 0.5 on the half-size chroma planes of
    #: 4:2:0 video (filters scale their pixel sizes with it).
    scale: float = 1.0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def halved(self) -> FaceRegion:
        """The same area on a half-size (4:2:0 chroma) plane; the region must have even edges. A mask
        pixel there is set wherever any of its 2x2 frame pixels is, so the face's colour goes too."""
        mask = None
        if self.mask is not None:
            shrunk = cv2.resize(self.mask, ((self.x1 - self.x0) // 2, (self.y1 - self.y0) // 2), interpolation=cv2.INTER_AREA)
            mask = cv2.threshold(shrunk, 0, 255, cv2.THRESH_BINARY)[1]
        return FaceRegion(self.x0 // 2, self.y0 // 2, self.x1 // 2, self.y1 // 2, self.face_width_px / 2, mask, self.scale / 2)


def face_regions(faces: Detections, frame_shape: tuple[int, ...], mask_scale: float = 1.3, shape: str = "ellipse", align: int = 1) -> list[FaceRegion]:
    """One region per face, grown by ``mask_scale`` around the box centre and clipped to the frame.

    ``mask_scale`` 1.3 (deface's default) covers hair line, ears and chin that detector boxes leave out;
    an ellipse of the grown box covers the face while leaving the corners (background) untouched.
    ``align`` 2 grows each box outwards to even edges, for 4:2:0 frames (whose sides are even).
    """
    height, width = frame_shape[:2]
    regions = []
    for x0, y0, x1, y1 in faces.xyxy:
        x0, y0, x1, y1 = _extend_past_edges(x0, y0, x1, y1, width, height)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half_w, half_h = (x1 - x0) * mask_scale / 2, (y1 - y0) * mask_scale / 2
        bx0, by0 = max(0, int(np.floor(cx - half_w))), max(0, int(np.floor(cy - half_h)))
        bx1, by1 = min(width, int(np.ceil(cx + half_w))), min(height, int(np.ceil(cy + half_h)))
        if align > 1:
            bx0, by0 = bx0 - bx0 % align, by0 - by0 % align
            bx1, by1 = min(width, bx1 + (-bx1) % align), min(height, by1 + (-by1) % align)
        if bx1 <= bx0 or by1 <= by0:
            continue  # entirely outside the frame
        mask = None
        if shape == "ellipse":
            mask = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
            center = (int(round(cx - bx0)), int(round(cy - by0)))
            axes = (max(1, int(np.ceil(half_w))), max(1, int(np.ceil(half_h))))
            cv2.ellipse(mask, center, axes, 0, 0, 360, 255, thickness=-1)
        regions.append(FaceRegion(bx0, by0, bx1, by1, float(x1 - x0), mask))
    return regions


#: Width / height of a face box (YuNet's boxes of frontal faces: ~0.75-0.85).
FACE_ASPECT = 0.8


def _extend_past_edges(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> tuple[float, float, float, float]:
    """A box cut by the frame edge (a face entering or leaving) extended outwards, past the edge, to
    a whole face's proportions: the ellipse is then centred where the face's centre is, not on the
    visible part, whose far side would otherwise sit on the ellipse's narrowing rim (an 80 px face
    half in view at the left edge scored 0.92 altered, just over the 0.9 bar, on the recall clip)."""
    want_w, want_h = (y1 - y0) * FACE_ASPECT, (x1 - x0) / FACE_ASPECT
    if x1 - x0 < want_w:
        if x0 <= 0:
            x0 = x1 - want_w
        elif x1 >= width:
            x1 = x0 + want_w
    if y1 - y0 < want_h:
        if y0 <= 0:
            y0 = y1 - want_h
        elif y1 >= height:
            y1 = y0 + want_h
    return x0, y0, x1, y1
