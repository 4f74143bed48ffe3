"""The float32 YuNet the detector runs is exactly the bundled int8 file, dequantised."""

import hashlib

import pytest

from faceanon_video.weights import SHA256, WEIGHTS_DIR, model_path
from faceanon_video.weights.derive import DERIVED, SOURCE


def test_derived_model_is_reproduced_byte_for_byte_from_the_vendored_one():
    pytest.importorskip("onnx")
    from faceanon_video.weights.derive import dequantized_yunet

    rebuilt = dequantized_yunet(model_path(SOURCE)).SerializeToString()
    assert hashlib.sha256(rebuilt).hexdigest() == SHA256[DERIVED]
    assert (WEIGHTS_DIR / DERIVED).read_bytes() == rebuilt
