"""The graphs the detectors run in onnxruntime are exactly the bundled files, made runnable there."""

import hashlib

import pytest

from faceanon_video.weights import SHA256, WEIGHTS_DIR, model_path
from faceanon_video.weights.derive import DERIVED


@pytest.mark.parametrize("derived", sorted(DERIVED))
def test_derived_model_is_reproduced_byte_for_byte_from_the_vendored_one(derived):
    pytest.importorskip("onnx")
    source, make = DERIVED[derived]
    rebuilt = make(model_path(source)).SerializeToString()
    assert hashlib.sha256(rebuilt).hexdigest() == SHA256[derived]
    assert (WEIGHTS_DIR / derived).read_bytes() == rebuilt
