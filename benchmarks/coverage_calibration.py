"""The table behind the face-coverage thresholds in faceanon_video/eval/metrics.py.

    python benchmarks/coverage_calibration.py

Faces found by YuNet on every 10th frame of tests/data/short_hamilton_clip.mp4 (small, dark, soft
stage faces) and on two still photos are processed in ways that should and should not count as
anonymization; for each, the mean altered fraction (``face_altered_fraction``) and how often the
face counts as covered. Re-encoding must never count, the default filters always should, and light
filters or half a face should not.
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from faceanon_video.anonymize.filters import Blur, Mosaic
from faceanon_video.detect.yunet import YuNetDetector
from faceanon_video.eval.metrics import CoverageSettings, face_altered_fraction
from faceanon_video.io.decode import VideoReader
from faceanon_video.io.encode import VideoWriter
from faceanon_video.types import Detections, Frame

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def h264(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        writer = VideoWriter(path, fps=Fraction(25), time_base=Fraction(1, 25), crf=crf, preset="veryfast")
        for i, bgr in enumerate(frames):
            writer.write(Frame(bgr=bgr, index=i))
        writer.close(success=True)
        with VideoReader(path) as reader:
            return [frame.bgr for frame in reader]


def filtered(anonymizer, bgr: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    return anonymizer.apply(Frame(bgr=bgr.copy(), index=0), Detections(xyxy=xyxy[None], score=[1.0])).bgr


def half_black(bgr: np.ndarray, xyxy: np.ndarray, side: str) -> np.ndarray:
    out = bgr.copy()
    x0, y0, x1, y1 = xyxy.astype(int)
    if side == "left":
        x1 = (x0 + x1) // 2
    else:
        y1 = (y0 + y1) // 2
    out[y0:y1, x0:x1] = 0
    return out


def main() -> None:
    with av.open(str(DATA / "short_hamilton_clip.mp4")) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)][::10]
    frames += [cv2.resize(cv2.imread(str(DATA / "images" / name)), (640, 360)) for name in ("two_people.jpg", "astronaut.png")]
    encoded = {crf: h264(frames, crf) for crf in (23, 30)}
    variants = {
        "H.264 CRF 23": lambda k, img, box: encoded[23][k],
        "H.264 CRF 30": lambda k, img, box: encoded[30][k],
        "Blur() (sigma 0.125 x width)": lambda k, img, box: filtered(Blur(), img, box),
        "Mosaic() (8 blocks)": lambda k, img, box: filtered(Mosaic(), img, box),
        "light blur (sigma 0.05 x width)": lambda k, img, box: filtered(Blur(strength=0.05, min_sigma_px=0.0), img, box),
        "light mosaic (16 blocks)": lambda k, img, box: filtered(Mosaic(blocks=16, min_cell_px=0.0), img, box),
        "left half black": lambda k, img, box: half_black(img, box, "left"),
        "top half black": lambda k, img, box: half_black(img, box, "top"),
    }
    settings = CoverageSettings()
    detector = YuNetDetector(threshold=0.6, min_face_px=0)
    scores: dict[str, list[float]] = {name: [] for name in variants}
    faces = 0
    for k, img in enumerate(frames):
        h, w = img.shape[:2]
        for box in detector.detect(img).xyxy:
            box = np.clip(np.round(box), 0, [w, h, w, h]).astype(np.float32)
            faces += 1
            for name, make in variants.items():
                scores[name].append(float(face_altered_fraction(img, make(k, img, box), box[None], settings)[0]))
    print(f"{faces} faces; covered when >= {settings.covered_fraction:.0%} of features altered\n")
    print(f"{'processed copy':<34} {'altered, mean':>13} {'covered':>8}")
    for name, values in scores.items():
        values = np.asarray(values)
        print(f"{name:<34} {values.mean():>13.2f} {np.mean(values >= settings.covered_fraction):>8.0%}")


if __name__ == "__main__":
    main()
