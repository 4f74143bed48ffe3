"""Re-detection in regions around live tracks, at full resolution.

On frames where the full-frame detector is skipped (``--detect-every N``), the faces already being
tracked are looked for again in padded crops around their predicted boxes. Crops are small, so this
costs a fraction of a full-frame pass, and they are taken from the full-resolution frame (the
full-frame detector may shrink large frames, see ``detect.scaling``), with small faces upscaled to
a size the detector handles well. New faces that appear away from every track are only found at the
next full-frame pass: that delay is the price of ``--detect-every``.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from faceanon_video.detect.base import Detector
from faceanon_video.types import Detections

__all__ = ["RoiRedetector", "merge_regions"]

log = logging.getLogger(__name__)


def merge_regions(xyxy: np.ndarray) -> np.ndarray:
    """Union overlapping rectangles until none overlap, so no pixel is searched twice and a face
    between two nearby tracks is never cut in half by a crop border."""
    boxes = [b for b in np.asarray(xyxy, np.float64).reshape(-1, 4)]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return np.array(boxes, np.float64).reshape(-1, 4)


class RoiRedetector:
    """Runs a ``Detector`` on padded crops around given boxes and maps the faces back.

    Args:
        detector: any ``Detector``; it must accept images of any size.
        pad: margin around each box, as a fraction of its larger side, per side. Larger = finds a
            face that moved further than predicted, slower.
        min_crop_px: crops are at least this big so the detector sees some context around the face.
        target_face_px: faces predicted smaller than this are upscaled to it (up to ``max_upscale``)
            before detection; detectors miss 20-30 px faces far more often than 60 px ones.
        max_upscale: cap on that upscaling (interpolation cannot add detail beyond a point).
        full_frame_fraction: if the merged crops cover more than this fraction of the frame, one
            full-frame pass is cheaper than the crops.
    """

    def __init__(
        self,
        detector: Detector,
        pad: float = 0.6,
        min_crop_px: int = 64,
        target_face_px: float = 64,
        max_upscale: float = 3.0,
        full_frame_fraction: float = 0.6,
    ) -> None:
        self.detector = detector
        self.pad = pad
        self.min_crop_px = min_crop_px
        self.target_face_px = target_face_px
        self.max_upscale = max_upscale
        self.full_frame_fraction = full_frame_fraction

    def regions(self, boxes_xyxy: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
        """Integer crop rectangles (k, 4) for the given boxes: padded, at least ``min_crop_px``,
        clipped to the frame, overlaps merged."""
        height, width = frame_shape[:2]
        boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        if not len(boxes):
            return np.zeros((0, 4), np.int64)
        size = boxes[:, 2:] - boxes[:, :2]
        center = (boxes[:, :2] + boxes[:, 2:]) / 2
        half = np.maximum(size / 2 + self.pad * size.max(axis=1, keepdims=True), self.min_crop_px / 2)
        padded = np.concatenate([center - half, center + half], axis=1)
        padded = np.clip(padded, 0, [width, height, width, height])
        padded = padded[(padded[:, 2] > padded[:, 0]) & (padded[:, 3] > padded[:, 1])]
        merged = merge_regions(padded)
        return np.concatenate([np.floor(merged[:, :2]), np.ceil(merged[:, 2:])], axis=1).astype(np.int64)

    def detect(self, bgr: np.ndarray, boxes_xyxy: np.ndarray) -> Detections:
        """Faces found near ``boxes_xyxy`` (frame coordinates)."""
        regions = self.regions(boxes_xyxy, bgr.shape)
        if not len(regions):
            return Detections.empty()
        area = np.prod(regions[:, 2:] - regions[:, :2], axis=1).sum()
        if area > self.full_frame_fraction * bgr.shape[0] * bgr.shape[1]:
            return self.detector.detect(bgr)
        boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        parts = []
        for x0, y0, x1, y1 in regions:
            crop = bgr[y0:y1, x0:x1]
            # Smallest predicted face inside this crop decides the upscale.
            inside = (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)
            face_px = (boxes[inside, 3] - boxes[inside, 1]).min() if inside.any() else self.target_face_px
            scale = float(np.clip(self.target_face_px / max(face_px, 1.0), 1.0, self.max_upscale))
            if scale > 1.0:
                crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            found = self.detector.detect(np.ascontiguousarray(crop))
            if len(found):
                offset = np.array([x0, y0], np.float32)
                found.xyxy = found.xyxy / scale + np.tile(offset, 2)
                found.landmarks = found.landmarks / scale + offset
                parts.append(found)
        return Detections.merge(parts)
