"""Re-detection in regions around live tracks, at full resolution.

On frames where the full-frame detector is skipped (``--detect-every N``), the faces already being
tracked are looked for again in padded crops around their predicted boxes. The crops are taken from
the full-resolution frame (the full-frame detector may shrink large frames, see
``detect.scaling``), scaled so each face has a size the detector handles well, and packed into one
small mosaic so a single detector call covers them all: a fraction of a full-frame pass. New faces
that appear away from every track are only found at the next full-frame pass: that delay is the
price of ``--detect-every``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from faceanon_video.detect.base import Detector, Image, as_frame
from faceanon_video.types import Detections

__all__ = ["RoiRedetector", "pack_tiles"]

@dataclass
class RoiRedetector:
    """Runs a ``Detector`` on padded crops around given boxes and maps the faces back."""

    #: Any ``Detector``; it must accept images of any size. Give it its own instance (calls come
    #: from the in-order tracking step, not the detection threads).
    detector: Detector
    #: Margin around each box, as a fraction of its larger side, per side. Larger = finds a face
    #: that moved further than predicted, at more pixels searched.
    pad: float = 0.5
    #: Crops are at least this big (as the detector sees them), for some context.
    min_crop_px: int = 64
    #: Each crop is scaled so its face has this height: small faces are upscaled (detectors miss
    #: 20-30 px faces far more often than 60 px ones), big ones shrunk (cheaper, still well found).
    target_face_px: float = 48
    #: Limits of that scaling: interpolation adds no detail beyond ``max_upscale``.
    max_upscale: float = 3.0
    min_scale: float = 0.25
    #: Grey gap between crops in the mosaic the detector sees.
    gap_px: int = 16
    #: IoU above which two boxes from overlapping crops are taken for the same face.
    nms_iou: float = 0.45
    #: If the crops, as the detector sees them, hold more than this fraction of the pixels of a
    #: full-frame pass, that pass is run instead (it is cheaper and also finds new faces).
    full_frame_fraction: float = 0.6
    #: The detector for that full-frame pass (the pipeline's own, which may shrink large frames);
    #: None uses ``detector`` on the whole frame.
    full_frame_detector: Detector | None = None

    def regions(self, boxes_xyxy: np.ndarray, frame_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Integer crop rectangles (n, 4), one per box (padded, clipped to the frame), and the scale
        (n,) at which each is searched. Crops may overlap (duplicates are suppressed after
        detection); merging them instead would mix face sizes in one crop and defeat the per-face
        scaling."""
        height, width = frame_shape[:2]
        boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        size = boxes[:, 2:] - boxes[:, :2]
        scale = np.clip(self.target_face_px / np.maximum(size[:, 1], 1.0), self.min_scale, self.max_upscale)
        center = (boxes[:, :2] + boxes[:, 2:]) / 2
        half = np.maximum(size / 2 + self.pad * size.max(axis=1, keepdims=True), (self.min_crop_px / 2 / scale)[:, None])
        padded = np.concatenate([np.floor(center - half), np.ceil(center + half)], axis=1)
        padded = np.clip(padded, 0, [width, height, width, height]).astype(np.int64)
        valid = (padded[:, 2] > padded[:, 0]) & (padded[:, 3] > padded[:, 1])
        return padded[valid], scale[valid]

    def detect(self, image: Image, boxes_xyxy: np.ndarray) -> Detections:
        """Faces found near ``boxes_xyxy`` (frame coordinates)."""
        frame = as_frame(image)
        regions, scales = self.regions(boxes_xyxy, frame.shape)
        if not len(regions):
            return Detections.empty()
        full = self.full_frame_detector or self.detector
        searched_px = (np.prod(regions[:, 2:] - regions[:, :2], axis=1) * scales**2).sum()
        full_scale = full.input_scale(frame.shape) if hasattr(full, "input_scale") else 1.0
        full_frame_px = frame.height * frame.width * full_scale**2
        if searched_px > self.full_frame_fraction * full_frame_px:
            return full.detect(frame)
        tiles = []
        for (x0, y0, x1, y1), scale in zip(regions, scales):
            crop = frame.crop_bgr(x0, y0, x1, y1)
            if scale != 1.0:
                interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
                crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=interpolation)
            tiles.append(crop)
        # One detector call on a mosaic of all crops: per-call overhead (input reshaping, thread
        # start-up) dominates on small crops, so N calls would cost more than one full frame.
        canvas, offsets = pack_tiles(tiles, gap_px=self.gap_px)
        found = self.detector.detect(canvas)
        if not len(found):
            return Detections.empty()
        centre = (found.xyxy[:, :2] + found.xyxy[:, 2:]) / 2
        sizes = np.array([t.shape[1::-1] for t in tiles], np.float32)
        tile_of = np.full(len(found), -1)
        for k, (offset, size) in enumerate(zip(offsets, sizes)):
            inside = np.all((centre >= offset) & (centre < offset + size), axis=1)
            tile_of[inside] = k
        keep = tile_of >= 0  # a centre in a gap belongs to no crop
        # A box cut by a crop's edge (not the frame's) is part of a neighbouring face, which has its
        # own crop: keeping it would start a spurious track on half a face.
        local = found.xyxy - np.tile(offsets[np.maximum(tile_of, 0)], 2)
        tile_wh = sizes[np.maximum(tile_of, 0)]
        on_frame_lo = (regions[:, :2] <= 0)[np.maximum(tile_of, 0)]
        on_frame_hi = (regions[:, 2:] >= [frame.width, frame.height])[np.maximum(tile_of, 0)]
        cut_lo = (local[:, :2] <= 1) & ~on_frame_lo
        cut_hi = (local[:, 2:] >= tile_wh - 1) & ~on_frame_hi
        keep &= ~(cut_lo.any(axis=1) | cut_hi.any(axis=1))
        found, tile_of = found[keep], tile_of[keep]
        scale = scales.astype(np.float32)[tile_of][:, None]
        shift = offsets[tile_of]
        origin = regions[tile_of, :2].astype(np.float32)
        found.xyxy = (found.xyxy - np.tile(shift, 2)) / scale + np.tile(origin, 2)
        found.landmarks = (found.landmarks - shift[:, None]) / scale[:, :, None] + origin[:, None]
        # Overlapping crops can see the same face twice: keep the best-scoring box of each.
        xywh = np.concatenate([found.xyxy[:, :2], found.xyxy[:, 2:] - found.xyxy[:, :2]], axis=1)
        keep = cv2.dnn.NMSBoxes(xywh.tolist(), found.score.tolist(), 0.0, self.nms_iou)
        return found[np.sort(np.asarray(keep, np.int64).reshape(-1))]


def pack_tiles(tiles: list[np.ndarray], gap_px: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Shelf-pack images into one canvas (rows of tiles, ``gap_px`` of grey between them), roughly
    square so the detector's input stays compact. Returns the canvas and each tile's (x, y) offset."""
    sizes = np.array([t.shape[:2] for t in tiles])  # (h, w)
    width = int(max(sizes[:, 1].max(), np.sqrt((sizes[:, 0] + gap_px) @ (sizes[:, 1] + gap_px)) * 1.2))
    offsets = np.zeros((len(tiles), 2), np.float32)
    x = y = row_h = 0
    for k in np.argsort(-sizes[:, 0], kind="stable"):
        h, w = sizes[k]
        if x > 0 and x + w > width:
            x, y, row_h = 0, y + row_h + gap_px, 0
        offsets[k] = (x, y)
        x += w + gap_px
        row_h = max(row_h, h)
    canvas_w = int((offsets[:, 0] + sizes[:, 1]).max())
    canvas_h = int((offsets[:, 1] + sizes[:, 0]).max())
    canvas = np.full((canvas_h, canvas_w, 3), 127, np.uint8)
    for tile, (ox, oy) in zip(tiles, offsets.astype(int)):
        canvas[oy : oy + tile.shape[0], ox : ox + tile.shape[1]] = tile
    return canvas, offsets
