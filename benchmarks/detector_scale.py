"""Which detection scale keeps small faces findable? Real face chips of 16-160 px pasted onto a real
face-free 1280x720 frame (bikes.mp4 frame 10, upscaled); recall and ms per frame at several scales.

    python benchmarks/detector_scale.py
"""

from __future__ import annotations

import glob
import time
from pathlib import Path

import cv2
import numpy as np

from faceanon_video.detect.yunet import YuNetDetector
from faceanon_video.io.decode import VideoReader

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def pasted_faces_frame(sizes_px, seed=0):
    with VideoReader(DATA / "bikes.mp4") as reader:
        background = next(f.bgr for f in reader if f.index == 10)
    frame = cv2.resize(background, (1280, 720), interpolation=cv2.INTER_CUBIC)
    chips = sorted(glob.glob(str(DATA / "images/identities/johns/*/*.jpg")))
    rng = np.random.default_rng(seed)
    boxes = []
    cols = len(sizes_px)
    for i, size in enumerate(sizes_px):
        chip = cv2.imread(chips[(i * 7) % len(chips)])
        chip = cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA)
        x = int(10 + i * ((1280 - 180) / cols))
        y = int(rng.integers(40, 720 - size - 40))
        frame[y : y + size, x : x + size] = chip
        boxes.append((x, y, x + size, y + size))
    return frame, np.array(boxes, np.float32)


def recall(dets, boxes):
    found = 0
    for box in boxes:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        inside = (dets.xyxy[:, 0] <= cx) & (cx <= dets.xyxy[:, 2]) & (dets.xyxy[:, 1] <= cy) & (cy <= dets.xyxy[:, 3])
        found += bool(inside.any())
    return found


def main() -> None:
    sizes = [16, 20, 24, 28, 32, 40, 56, 80, 120, 160]
    frame, boxes = pasted_faces_frame(sizes)
    print(f"{'min_face_px':>11} {'scale':>6} {'ms':>6}  found (of {len(sizes)}: {sizes})")
    for min_face in (12, 18, 24, 32, 48):
        det = YuNetDetector(min_face_px=min_face)
        det.detect(frame)
        t = time.perf_counter()
        for _ in range(10):
            d = det.detect(frame)
        ms = (time.perf_counter() - t) / 10 * 1000
        per_size = [recall(d, boxes[i : i + 1]) for i in range(len(sizes))]
        print(f"{min_face:>11} {min(1, 12 / min_face):>6.2f} {ms:>6.1f}  {per_size}")


if __name__ == "__main__":
    main()
