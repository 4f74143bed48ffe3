"""Box geometry shared by tracking, evaluation and the test clips: intersections and IoU of xyxy boxes."""

from __future__ import annotations

import numpy as np

__all__ = ["box_intersection", "box_iou", "buffered_iou"]


def box_intersection(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection areas of two sets of boxes."""
    a = np.asarray(a_xyxy, np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.prod(np.clip(rb - lt, 0, None), axis=2)


def box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of two sets of boxes (0 where both are empty)."""
    a = np.asarray(a_xyxy, np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, np.float64).reshape(-1, 4)
    inter = box_intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def buffered_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray, buffer: float | np.ndarray) -> np.ndarray:
    """(n, m) IoU after enlarging every box by ``buffer`` times its size on each side (C-BIoU).

    ``buffer`` may be (n,): one per ``a`` box, applied to both boxes of each pair, so a track that
    has coasted for a while (uncertain position) gets a wider net without favouring big boxes.
    """
    a = np.asarray(a_xyxy, np.float64)[:, None, :]
    b = np.asarray(b_xyxy, np.float64)[None, :, :]
    buf = np.broadcast_to(np.asarray(buffer, np.float64).reshape(-1, 1, 1), (len(a), 1, 1))

    def enlarge(xyxy):
        pad = buf * (xyxy[..., 2:] - xyxy[..., :2])
        return np.concatenate([xyxy[..., :2] - pad, xyxy[..., 2:] + pad], axis=-1)

    a, b = enlarge(a), enlarge(b)
    lt = np.maximum(a[..., :2], b[..., :2])
    rb = np.minimum(a[..., 2:], b[..., 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(a[..., 2:] - a[..., :2], axis=-1)
    area_b = np.prod(b[..., 2:] - b[..., :2], axis=-1)
    return inter / np.maximum(area_a + area_b - inter, 1e-9)
