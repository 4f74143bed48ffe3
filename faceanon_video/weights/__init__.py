"""Model files that ship inside the package, checked against their sha256 before use.

A corrupted or swapped file would silently detect nothing, and a detector that finds nothing leaks
every face, so the hash check is a privacy check, not a nicety. See NOTICE.md for origins and licences.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from faceanon_video.errors import ModelError

WEIGHTS_DIR = Path(__file__).parent

SHA256 = {
    "face_detection_yunet_2023mar_int8bq.onnx": "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    # The float32 copy of the file above that the detector runs (see derive.py).
    "face_detection_yunet_2023mar_fp32_dynamic.onnx": "3ca2afc7ec8d721f70423f9852470ae91a91e6cf4b0372a578b406577cc5c243",
    "centerface.onnx": "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    # The same network with a dynamic input, which the detector runs (see derive.py).
    "centerface_dynamic.onnx": "478990424b0cd21f6de6944badc25b49b2a4de5381c4132a9c9f96a89996be90",
    "mediapipe_face_landmarker.task": "b9277784ef7a2d30d3c6bd87e3015d7b3e00b4c9afd3ec442670df731de3b1f3",
    "face_recognition_sface_2021dec_int8bq.onnx": "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}


#: sha256 of every bundled model this process has loaded (and checked), for the redaction report.
LOADED: dict[str, str] = {}


@lru_cache(maxsize=None)
def model_path(name: str) -> Path:
    """Path of a bundled model, after checking its sha256 (once per process)."""
    if name not in SHA256:
        raise ModelError(f"unknown bundled model {name!r}; known: {', '.join(sorted(SHA256))}")
    path = WEIGHTS_DIR / name
    if not path.is_file():
        raise ModelError(f"bundled model {name} is missing from {WEIGHTS_DIR}; reinstall faceanon-video")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[name]:
        raise ModelError(f"bundled model {name} is corrupted (sha256 {digest[:16]}..., expected {SHA256[name][:16]}...)")
    LOADED[name] = digest
    return path
