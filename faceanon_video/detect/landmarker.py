"""Dense face landmarks (MediaPipe face mesh, 468 points) for a tight face-shaped mask where a precise
mask matters: the diffusion anonymizer's paste-back.

The bundled ``mediapipe_face_landmarker.task`` is a zip holding MediaPipe's face detector and its
face-mesh model. mediapipe 1.2.x's own ``FaceLandmarker`` reads this mesh model's output with the wrong
layout (it expects the 478-point attention model) and returns scattered points, and its wheel pulls in
opencv-contrib-python, which would overwrite our OpenCV. So the mesh model is run directly with
LiteRT (``ai-edge-litert``, the ``landmarks`` extra) on a crop aligned from our own tracker's box and
eye landmarks; MediaPipe's detector is not needed since faces are already found and tracked.

Model contract (MediaPipe face mesh v1 model card): input (1, 192, 192, 3) RGB float in [0, 1] of a
face crop with ~25% margin; outputs 468 (x, y, z) in crop pixels and a face-presence logit.
"""

from __future__ import annotations

import threading
import zipfile

import cv2
import numpy as np

from faceanon_video.errors import ConfigError
from faceanon_video.types import Detections
from faceanon_video.weights import model_path

TASK_BUNDLE = "mediapipe_face_landmarker.task"
MESH_MODEL = "face_landmarks_detector.tflite"
MESH_KEY = "mesh"  # Detections.data key: (n, 468, 2) float32 image coordinates, NaN where not found
N_POINTS = 468
INPUT_PX = 192
CROP_SCALE = 1.5  # crop side = 1.5 x the face box's longer side, as the model was trained with margin
MIN_PRESENCE_LOGIT = 0.0  # below this the model says the crop holds no face; the mesh is then unusable


def landmarker_available() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


class FaceMesher:
    """Adds a 468-point mesh per face to ``Detections.data[MESH_KEY]`` (NaN rows where it failed)."""

    def __init__(self, num_threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ConfigError('the face mesh needs LiteRT: pip install "faceanon-video[landmarks]"') from exc
        with zipfile.ZipFile(model_path(TASK_BUNDLE)) as bundle:
            model = bundle.read(MESH_MODEL)
        self._interpreter = Interpreter(model_content=model, num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        self._points = next(d["index"] for d in outputs if int(np.prod(d["shape"])) == N_POINTS * 3)
        self._presence = next(d["index"] for d in outputs if int(np.prod(d["shape"])) == 1)
        self._lock = threading.Lock()

    def add_meshes(self, bgr: np.ndarray, faces: Detections) -> Detections:
        meshes = np.full((len(faces), N_POINTS, 2), np.nan, np.float32)
        for i in range(len(faces)):
            to_crop = _crop_transform(faces.xyxy[i], faces.landmarks[i])
            crop = cv2.warpAffine(bgr, to_crop, (INPUT_PX, INPUT_PX), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            tensor = (crop[:, :, ::-1].astype(np.float32) / 255.0)[None]
            with self._lock:
                self._interpreter.set_tensor(self._input, tensor)
                self._interpreter.invoke()
                points = self._interpreter.get_tensor(self._points).reshape(N_POINTS, 3)[:, :2].copy()
                presence = float(self._interpreter.get_tensor(self._presence).ravel()[0])
            if presence < MIN_PRESENCE_LOGIT:
                continue
            back = cv2.invertAffineTransform(to_crop)
            meshes[i] = points @ back[:, :2].T + back[:, 2]
        faces.data[MESH_KEY] = meshes
        return faces


def _crop_transform(xyxy: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """2x3 affine from the frame to an upright 192 px crop around the face (roll from the eyes)."""
    x0, y0, x1, y1 = xyxy
    center = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32)
    side = max(x1 - x0, y1 - y0) * CROP_SCALE
    angle = 0.0
    if not np.isnan(landmarks[:2]).any():
        dx, dy = landmarks[1] - landmarks[0]  # subject's right eye -> left eye, left to right in the image
        angle = float(np.degrees(np.arctan2(dy, dx)))
    rotation = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), angle, INPUT_PX / side)
    rotation[:, 2] += INPUT_PX / 2 - center
    return rotation


def mesh_mask(mesh: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """Filled convex hull of a face mesh (the face oval, hairline to chin) as a uint8 0/255 mask of
    ``shape``, or None when the mesh is missing."""
    if np.isnan(mesh).any():
        return None
    hull = cv2.convexHull(np.round(mesh).astype(np.int32))
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    return mask
