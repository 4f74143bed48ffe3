"""The detector interface: one verb, ``detect(frame) -> Detections``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from faceanon_video.types import Detections


@runtime_checkable
class Detector(Protocol):
    """Finds faces in a BGR image.

    Implementations return boxes in the coordinates of the image they were given, with an empty
    ``Detections`` (never None) when there are no faces. ``detect`` must be safe to call from one
    worker thread at a time; the pipeline gives each thread its own detector.
    """

    def detect(self, bgr: np.ndarray) -> Detections: ...

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
