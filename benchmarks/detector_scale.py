"""How far can a frame be shrunk before YuNet misses small faces? Recall and cost vs input scale.

The 18 hand-annotated faces of tests/data/images/annotated (real photos, faces in context) are
rescaled so the median face is FACE px wide, then detected at several input scales. This sets
``detect.yunet.YUNET_MIN_FACE_PX``: the face width at the model's input below which recall drops.

    python benchmarks/detector_scale.py
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from faceanon_video.detect.yunet import YuNetDetector
from faceanon_video.geometry import box_iou

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def annotated():
    import xml.etree.ElementTree as ET

    root = ET.parse(DATA / "images" / "annotated" / "training.xml").getroot()
    for image in root.iter("image"):
        boxes = [[int(b.get(k)) for k in ("left", "top", "width", "height")] for b in image.iter("box")]
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], np.float32)
        yield cv2.imread(str(DATA / "images" / "annotated" / image.get("file"))), xyxy


def iou(a, b) -> float:
    return float(box_iou(a, b)[0, 0])


def recall(face_px: float, input_scale: float, threshold: float) -> tuple[int, int]:
    found = total = 0
    detector = YuNetDetector(threshold=threshold, min_face_px=0)
    for image, boxes in annotated():
        s = face_px / np.median(boxes[:, 2] - boxes[:, 0])
        frame = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        # Shrunk the way the detector shrinks large frames (bilinear), then detected as is.
        small = cv2.resize(frame, None, fx=input_scale, fy=input_scale, interpolation=cv2.INTER_LINEAR)
        dets = detector.detect(small).xyxy / input_scale
        for box in boxes * s:
            total += 1
            found += any(iou(box, d) > 0.3 for d in dets)
    return found, total


def cost_ms(shape=(720, 1280), scales=(1.0, 0.75, 0.58, 0.5), repeats=10) -> dict[float, float]:
    """CPU ms of one detection (resize included) on a ``shape`` frame at each input scale."""
    frame = (np.random.default_rng(0).random((*shape, 3)) * 255).astype(np.uint8)
    out = {}
    for scale in scales:
        detector = YuNetDetector(min_face_px=14 / scale)
        detector.detect(frame)
        start = time.process_time()
        for _ in range(repeats):
            detector.detect(frame)
        out[scale] = (time.process_time() - start) / repeats * 1000
    return out


def main() -> None:
    scales = (1.0, 0.6, 0.5, 0.4)
    print("recall (found/total) of annotated faces; columns: input scale", scales)
    for threshold in (0.5, 0.25):
        for face_px in (32, 24, 20):
            row = [recall(face_px, s, threshold) for s in scales]
            print(f"thresh {threshold}  face {face_px:>2} px: " + "  ".join(f"{f}/{t} ({face_px * s:.0f} px in)" for (f, t), s in zip(row, scales)))
    print("CPU ms per 1280x720 frame by input scale:", {k: round(v, 1) for k, v in cost_ms().items()})


if __name__ == "__main__":
    main()
