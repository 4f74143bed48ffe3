"""YuNet (libfacedetection, OpenCV Zoo): fast, 5 landmarks, small faces, run with onnxruntime.

Measured on this project's 2-core machine (benchmarks/detector_scale.py, the 18 hand-annotated
faces of tests/data/images/annotated rescaled to a given face width): YuNet finds 18/18 faces that
are 12 px wide at its input, 16-17/18 at 10 px, 8-15/18 at 8 px. Its cost grows with the pixel
count, so frames are shrunk until the smallest face we promise to catch (``min_face_px``, 24 by
default) is 14 px at the model's input: a margin over the 12 px where recall is still complete.

The network runs in onnxruntime on a float32 copy of the bundled int8 file (see
``weights.derive``): ~3.5x faster than ``cv2.FaceDetectorYN`` on the same weights (9 vs 32 ms at
640x360 on one core here), and thread-safe, so no lock. ``cv2.FaceDetectorYN`` is C++ around
OpenCV's DNN module and cannot use onnxruntime, so its output decoding (anchor-free boxes and
landmarks on stride-8/16/32 grids, scored ``sqrt(cls * obj)``) is done here in numpy; it matches
``cv2.FaceDetectorYN`` on real photos (tests/detect/test_detectors.py).
"""

from __future__ import annotations

import cv2
import numpy as np

from faceanon_video.detect.base import Image, NetworkInput, as_frame, onnx_session
from faceanon_video.detect.scaling import aligned_side, detection_scale, scale_to_frame
from faceanon_video.types import Detections
from faceanon_video.weights import model_path

MODEL = "face_detection_yunet_2023mar_fp32_dynamic.onnx"

#: Smallest face (in model-input pixels) YuNet finds reliably; see module docstring.
YUNET_MIN_FACE_PX = 14
STRIDES = (8, 16, 32)
#: The network's input sides must be multiples of the coarsest stride (its FPN adds upsampled maps).
ALIGN = 32


class YuNetDetector:
    """Face detector returning boxes and the 5 landmarks.

    Args:
        threshold: score above which a face is reported. Lower catches more turned/blurred faces at the
            cost of false positives (which only blur some background); the tracker also uses detections
            down to ``threshold / 2`` to keep existing tracks alive.
        min_face_px: smallest face width (in frame pixels) that must be found. Smaller is slower: the frame
            is processed at ``YUNET_MIN_FACE_PX / min_face_px`` scale (capped at 1).
        nms_threshold: IoU above which overlapping boxes are merged.
        top_k: at most this many boxes enter non-maximum suppression (highest scores first).
        threads: onnxruntime threads per call; the pipeline runs one detector per worker thread with 1.
    """

    def __init__(self, threshold: float = 0.5, min_face_px: float = 24, nms_threshold: float = 0.3, top_k: int = 5000, threads: int = 1) -> None:
        self.threshold = threshold
        self.min_face_px = min_face_px
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self._session = onnx_session(model_path(MODEL), threads)
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [f"{kind}_{stride}" for stride in STRIDES for kind in ("cls", "obj", "bbox", "kps")]
        self._network_input = NetworkInput()

    def input_scale(self, shape: tuple[int, ...]) -> float:
        """The scale a frame of ``shape`` is detected at (see ``min_face_px``)."""
        return detection_scale(shape, self.min_face_px, YUNET_MIN_FACE_PX)

    def detect(self, image: Image) -> Detections:
        frame = as_frame(image)
        height, width = frame.shape[:2]
        scale = self.input_scale(frame.shape)
        if scale == 1.0:
            # Full resolution: pad right and bottom to the alignment; coordinates need no mapping.
            in_w, in_h = aligned_side(width, ALIGN), aligned_side(height, ALIGN)
            image = cv2.copyMakeBorder(frame.read_bgr(), 0, in_h - height, 0, in_w - width, cv2.BORDER_CONSTANT, value=0)
        else:
            # Shrunk: resized straight to aligned sides (never below ``scale`` on either axis, so the
            # smallest promised face keeps its size), bilinearly: INTER_AREA costs 10 ms more per 720p
            # frame here and finds the same faces (benchmarks/detector_scale.py).
            in_w, in_h = aligned_side(width * scale, ALIGN), aligned_side(height * scale, ALIGN)
            image = frame.resized_bgr(in_w, in_h, cv2.INTER_LINEAR)
        blob = self._network_input(image)  # BGR, 0-255 float, NCHW: what the network was trained on
        outputs = self._session.run(self._output_names, {self._input_name: blob})
        faces = self._decode(outputs, in_w, in_h)
        return scale_to_frame(faces, width / in_w, height / in_h) if len(faces) and scale != 1.0 else faces

    def _decode(self, outputs: list[np.ndarray], in_w: int, in_h: int) -> Detections:
        boxes, scores, points = [], [], []
        for level, stride in enumerate(STRIDES):
            cls, obj, bbox, kps = (o[0] for o in outputs[4 * level : 4 * level + 4])
            score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
            index = np.nonzero(score > self.threshold)[0]
            if not len(index):
                continue
            cols = in_w // stride
            cell = np.stack([index % cols, index // cols], axis=1).astype(np.float32)  # (x, y) of each anchor
            centre = (cell + bbox[index, :2]) * stride
            size = np.exp(bbox[index, 2:4]) * stride
            boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
            points.append((kps[index].reshape(-1, 5, 2) + cell[:, None, :]) * stride)
            scores.append(score[index])
        if not boxes:
            return Detections.empty()
        xyxy, score, landmarks = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        keep = cv2.dnn.NMSBoxes(xywh.tolist(), score.tolist(), self.threshold, self.nms_threshold, top_k=self.top_k)
        keep = np.asarray(keep, np.int64).reshape(-1)
        return Detections(xyxy=xyxy[keep].astype(np.float32), score=score[keep].astype(np.float32), landmarks=landmarks[keep].astype(np.float32))
