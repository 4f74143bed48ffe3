"""YuNet (libfacedetection, OpenCV Zoo) through ``cv2.FaceDetectorYN``: fast, 5 landmarks, small faces.

Measured on this project's 2-core machine (benchmarks/detector_scale.py, the 18 hand-annotated
faces of tests/data/images/annotated rescaled to a given face width): YuNet finds 18/18 faces that
are 12 px wide at its input, 16-17/18 at 10 px, 8-15/18 at 8 px. Its cost grows with the pixel
count (~115 ms CPU at 1280x720 full resolution). So frames are shrunk until the smallest face we
promise to catch (``min_face_px``, 24 by default) is 14 px at the model's input: a margin over the
12 px where recall is still complete, at about a third of the full-resolution cost.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from faceanon_video.detect.scaling import detection_scale
from faceanon_video.types import Detections
from faceanon_video.weights import model_path

MODEL = "face_detection_yunet_2023mar_int8bq.onnx"

#: Smallest face (in model-input pixels) YuNet finds reliably; see module docstring.
YUNET_MIN_FACE_PX = 14


class YuNetDetector:
    """Face detector returning boxes and the 5 landmarks.

    Args:
        threshold: score above which a face is reported. Lower catches more turned/blurred faces at the
            cost of false positives (which only blur some background); the tracker also uses detections
            down to ``threshold / 2`` to keep existing tracks alive.
        min_face_px: smallest face width (in frame pixels) that must be found. Smaller is slower: the frame
            is processed at ``YUNET_MIN_FACE_PX / min_face_px`` scale (capped at 1).
        nms_threshold: IoU above which overlapping boxes are merged.
    """

    def __init__(self, threshold: float = 0.5, min_face_px: float = 24, nms_threshold: float = 0.3, top_k: int = 5000) -> None:
        self.threshold = threshold
        self.min_face_px = min_face_px
        self._net = cv2.FaceDetectorYN.create(str(model_path(MODEL)), "", (320, 320), threshold, nms_threshold, top_k)
        self._input_size: tuple[int, int] | None = None
        self._lock = threading.Lock()  # cv2's detector keeps per-instance state between setInputSize and detect

    def input_scale(self, shape: tuple[int, ...]) -> float:
        """The scale a frame of ``shape`` is detected at (see ``min_face_px``)."""
        return detection_scale(shape, self.min_face_px, YUNET_MIN_FACE_PX)

    def detect(self, bgr: np.ndarray) -> Detections:
        scale = self.input_scale(bgr.shape)
        image = bgr if scale == 1.0 else cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        size = (image.shape[1], image.shape[0])
        with self._lock:
            if size != self._input_size:
                self._net.setInputSize(size)
                self._input_size = size
            _, faces = self._net.detect(image)
        if faces is None or len(faces) == 0:
            return Detections.empty()
        coords = faces[:, :14].astype(np.float32) / np.float32(scale)
        xyxy = np.concatenate([coords[:, 0:2], coords[:, 0:2] + coords[:, 2:4]], axis=1)
        return Detections(xyxy=xyxy, score=faces[:, 14], landmarks=coords[:, 4:14].reshape(-1, 5, 2))
