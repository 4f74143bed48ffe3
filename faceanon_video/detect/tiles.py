"""Small faces at any resolution: a shrunk full-frame pass plus one enlarged tile per pass, cycling.

Why: YuNet finds frontal faces 12-14 px wide at its input, but real small faces (grey-scale, dim,
turned, cut by the frame edge) need far more. On the recall clips (``testing.recall``, 24-40 px
faces, 720p) the share of faces found at score >= 0.5 by input size of a 24-40 px face:

=================  ==================  ==========  ===========  ============
frame scale        (24 px face is ...)  plain       grey-scale   at the edge
=================  ==================  ==========  ===========  ============
0.58 (full pass)   14 px               0.59        0.00         0.29
1.0                24 px               0.92        0.00         0.57
1.5 (tile)         36 px               1.00        0.88         0.90
=================  ==================  ==========  ===========  ============

Detecting the whole frame enlarged 1.5x costs ~6.6x the shrunk pass. Instead, each pass runs the
shrunk full frame (large faces, every pass) plus ONE tile of the frame enlarged so a ``min_face_px``
face is ``tile_face_px`` at the network's input. Tiles overlap by ``overlap_px`` so that every face
smaller than that lies wholly inside some tile; larger faces are the full pass's. Tile size is set so
a tile costs ``tile_budget`` times the full pass, which makes the number of tiles the same at every
resolution (8 at the defaults). Which tile a frame gets depends only on its index (``schedule``), so
results do not depend on thread timing, and every tile comes round within ``period`` passes for any
``--detect-every`` that is not a multiple of ``period`` (a prime). Faces found by a tile late are
covered back to where they appeared by the look-back (``track.backfill``), which holds at least
``period * detect_every`` frames.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceanon_video.detect.base import Detector, Image, as_frame
from faceanon_video.types import Detections

__all__ = ["TiledDetector", "tile_grid", "schedule_period"]


def schedule_period(n_tiles: int) -> int:
    """The smallest prime >= max(n_tiles, 5): frame ``i`` gets tile ``(i % period) % n_tiles``, so
    passes every N frames visit every tile within ``period`` passes unless N is a multiple of it."""
    p = max(n_tiles, 5)
    while any(p % d == 0 for d in range(2, int(math.isqrt(p)) + 1)):
        p += 1
    return p


def tile_grid(width: int, height: int, side_px: int, overlap_px: int) -> np.ndarray:
    """(n, 4) int xyxy tiles of about ``side_px`` covering the frame, neighbours overlapping by at
    least ``overlap_px``, spread evenly (no sliver tile at the right or bottom)."""

    def starts(length: int) -> np.ndarray:
        if side_px >= length:
            return np.array([0]), length
        n = math.ceil((length - overlap_px) / (side_px - overlap_px))
        size = math.ceil((length + (n - 1) * overlap_px) / n)
        return np.round(np.linspace(0, length - size, n)).astype(int), size

    xs, w = starts(width)
    ys, h = starts(height)
    return np.array([(x, y, x + w, y + h) for y in ys for x in xs], np.int64)


class TiledDetector:
    """``full`` on the (shrunk) frame, plus ``tile_detector`` on one enlarged tile per frame.

    Args:
        full: the full-frame detector (it shrinks large frames, see ``detect.scaling``).
        tile_detector: a detector that does not shrink (``min_face_px=0``), with the same threshold.
        min_face_px: the smallest face promised (``--min-face``).
        tile_face_px: the size a ``min_face_px`` face is enlarged to in a tile.
        overlap_px: tiles overlap by this (frame pixels); faces up to this size lie wholly in a tile.
        tile_budget: network input pixels of a tile, relative to the full pass (its cost).
    """

    def __init__(self, full: Detector, tile_detector: Detector, min_face_px: float = 24, tile_face_px: float = 36, overlap_px: int = 64, tile_budget: float = 2.0) -> None:
        self.full = full
        self.tile_detector = tile_detector
        self.min_face_px = min_face_px
        self.threshold = getattr(full, "threshold", None)
        self.tile_scale = max(1.0, tile_face_px / float(min_face_px)) if min_face_px > 0 else 1.0
        self.overlap_px = overlap_px
        self.tile_budget = tile_budget
        self._grids: dict[tuple[int, int], np.ndarray] = {}

    def input_scale(self, shape: tuple[int, ...]) -> float:
        return self.full.input_scale(shape)

    def tiles(self, shape: tuple[int, ...]) -> np.ndarray:
        """The tile grid for frames of ``shape`` (cached)."""
        height, width = shape[:2]
        grid = self._grids.get((width, height))
        if grid is None:
            full_px = width * height * self.full.input_scale(shape) ** 2
            side = int(math.sqrt(self.tile_budget * full_px) / self.tile_scale)
            grid = self._grids[(width, height)] = tile_grid(width, height, max(side, 2 * self.overlap_px), self.overlap_px)
        return grid

    def tile_for(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        grid = self.tiles(shape)
        return grid[(index % schedule_period(len(grid))) % len(grid)]

    def searched(self, index: int, shape: tuple[int, ...], xyxy: np.ndarray) -> np.ndarray:
        """(n,) bool: whether the pass on frame ``index`` looked for each face box at a scale where
        a face of its size is at least ``tile_face_px`` at the network's input (wholly inside that
        frame's tile, or large enough for the shrunk full pass). A miss there is evidence the face
        is gone; a miss elsewhere is not (the tracker keeps such faces, ``ByteTracker.update``)."""
        height, width = shape[:2]
        xyxy = np.clip(np.asarray(xyxy, np.float32).reshape(-1, 4), 0, [width, height, width, height])
        full_scale = self.full.input_scale(shape)
        if full_scale >= self.tile_scale:
            return np.ones(len(xyxy), bool)
        size_px = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
        x0, y0, x1, y1 = self.tile_for(index, shape)
        inside = (xyxy[:, 0] >= x0) & (xyxy[:, 1] >= y0) & (xyxy[:, 2] <= x1) & (xyxy[:, 3] <= y1)
        return inside | (size_px * full_scale >= self.min_face_px * self.tile_scale)

    def detect(self, image: Image) -> Detections:
        frame = as_frame(image)
        found = self.full.detect(frame)
        if self.full.input_scale(frame.shape) >= self.tile_scale:
            return found  # the full pass already sees a min_face_px face at tile_face_px
        x0, y0, x1, y1 = (int(v) for v in self.tile_for(frame.index, frame.shape))
        crop = cv2.resize(frame.crop_bgr(x0, y0, x1, y1), None, fx=self.tile_scale, fy=self.tile_scale, interpolation=cv2.INTER_LINEAR)
        in_tile = self.tile_detector.detect(crop)
        if len(in_tile):
            # A box cut by the tile's inner edge is part of a face another tile or the full pass sees whole.
            w, h = crop.shape[1], crop.shape[0]
            lo_cut = (in_tile.xyxy[:, :2] <= 1) & (np.array([x0, y0]) > 0)
            hi_cut = (in_tile.xyxy[:, 2:] >= np.array([w, h]) - 1) & (np.array([x1, y1]) < np.array([frame.width, frame.height]))
            in_tile = in_tile[~(lo_cut.any(axis=1) | hi_cut.any(axis=1))]
            in_tile.xyxy = in_tile.xyxy / self.tile_scale + np.array([x0, y0, x0, y0], np.float32)
            in_tile.landmarks = in_tile.landmarks / self.tile_scale + np.array([x0, y0], np.float32)
        if not len(in_tile):
            return found
        merged = Detections.merge([found, in_tile]) if len(found) else in_tile
        xywh = np.concatenate([merged.xyxy[:, :2], merged.xyxy[:, 2:] - merged.xyxy[:, :2]], axis=1)
        keep = cv2.dnn.NMSBoxes(xywh.tolist(), merged.score.tolist(), 0.0, 0.3)
        return merged[np.sort(np.asarray(keep, np.int64).reshape(-1))]
