"""Shared fixtures: paths to the vendored real test data, and small readers for asserting on outputs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import av
import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
HAMILTON = DATA / "short_hamilton_clip.mp4"  # 640x360, 29.97 fps, 275 frames, AAC audio, several faces
CARPHONE = DATA / "carphone_pristine.mp4"  # 176x144, 120 frames, one face
BIKES = DATA / "bikes.mp4"  # 640x272, 250 frames; faces only in 30-47 and 76-136


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def decode_all(path) -> tuple[list[np.ndarray], list[int]]:
    """All frames (BGR) and their pts, read with plain PyAV (independent of our reader)."""
    frames, pts = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            pts.append(frame.pts)
    return frames, pts


def annotated_boxes() -> dict[str, np.ndarray]:
    """Hand-drawn face boxes (xyxy) of tests/data/images/annotated, from dlib's imglab XML."""
    root = ET.parse(DATA / "images" / "annotated" / "training.xml").getroot()
    boxes = {}
    for image in root.iter("image"):
        rows = []
        for box in image.iter("box"):
            x, y, w, h = (int(box.get(k)) for k in ("left", "top", "width", "height"))
            rows.append((x, y, x + w, y + h))
        boxes[image.get("file")] = np.array(rows, np.float32)
    return boxes


def far_from_boxes_mask(shape, boxes: np.ndarray, margin: float = 1.0) -> np.ndarray:
    """True where a pixel is more than ``margin`` box-sizes away from every box."""
    mask = np.ones(shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        w, h = x1 - x0, y1 - y0
        mask[max(0, int(y0 - margin * h)) : int(y1 + margin * h), max(0, int(x0 - margin * w)) : int(x1 + margin * w)] = False
    return mask
