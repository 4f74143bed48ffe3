"""The detector interface: one verb, ``detect(image) -> Detections``."""

from __future__ import annotations

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


def onnx_session(path, threads: int = 1):
    """A CPU onnxruntime session for a small model called from the pipeline's worker threads.

    ``threads`` intra-op threads per call (0: onnxruntime's default, one per core). Idle threads
    sleep instead of spinning: on 2 cores a spinning pool steals the CPU the decoder and encoder need.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
