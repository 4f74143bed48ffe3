"""The detector interface: one verb, ``detect(image) -> Detections``."""

from __future__ import annotations

import functools
import threading
from typing import Protocol, runtime_checkable

import numpy as np

from faceanon_video.types import Detections, Frame

#: What a detector takes: a BGR array, or a ``Frame`` (read with ``Frame.resized_bgr``/``crop_bgr``,
#: so an I420 frame is never converted whole just to be shrunk for the network).
Image = np.ndarray | Frame


def as_frame(image: Image) -> Frame:
    return image if isinstance(image, Frame) else Frame(bgr=image)


@runtime_checkable
class Detector(Protocol):
    """Finds faces in an image (a BGR array or a ``Frame``).

    Implementations return boxes in the coordinates of the image they were given, with an empty
    ``Detections`` (never None) when there are no faces. ``detect`` must be safe to call from one
    worker thread at a time; the pipeline gives each thread its own detector.
    """

    def detect(self, image: Image) -> Detections: ...

    def input_scale(self, shape: tuple[int, ...]) -> float:
        """Scale at which a frame of ``shape`` is analysed (1.0: full resolution); lets callers
        compare the cost of a full-frame pass with other work."""
        ...


class NetworkInput:
    """Turns an (H, W, 3) uint8 image into the (1, 3, H, W) float32 tensor CNN detectors take, in a
    buffer kept per thread and per size: a new 4 MB array per 720p call is page-faulted in afresh
    each time, and one buffer shared by threads would mix two frames. numpy's strided cast, not
    cv2.dnn.blobFromImage, which takes 7x longer on one thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, image: np.ndarray, swap_rb: bool = False) -> np.ndarray:
        height, width = image.shape[:2]
        blob = getattr(self._local, "blob", None)
        if blob is None or blob.shape[2:] != (height, width):
            blob = self._local.blob = np.empty((1, 3, height, width), np.float32)
        np.copyto(blob[0], (image[..., ::-1] if swap_rb else image).transpose(2, 0, 1), casting="unsafe")
        return blob


@functools.cache
def onnx_session(path, threads: int = 1):
    """A CPU onnxruntime session for a small model called from the pipeline's worker threads.

    ``threads`` intra-op threads per call (0: onnxruntime's default, one per core). Idle threads
    sleep instead of spinning: on 2 cores a spinning pool steals the CPU the decoder and encoder need.

    One session per model and thread count for the whole process: ``InferenceSession.run`` is
    thread-safe, and a file run at the defaults builds seven YuNet detectors (full-frame and tile
    detectors per worker thread, the re-detector), each session taking ~20-50 ms to load and
    optimise the graph before the first frame (two threads sharing one run as fast as with one each).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
