"""Fidelity: our pipeline against outputs of the ORIGINAL face_anon_simple pipeline (tests/data/golden).

Every case directory there is a test; a new configuration is a new directory, no code.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from faceanon_video.anonymize.diffusion.backend import TorchBackend
from faceanon_video.anonymize.diffusion.fidelity import load_cases, run_case
from faceanon_video.anonymize.diffusion.models import clip_pixels, load_models

from .conftest import GOLDEN  # noqa: TID252 - the fixtures module of this folder

CASES = load_cases(GOLDEN)


def test_there_are_golden_cases():
    assert {"anonymize_d1.25", "swap"} <= {case.name for case in CASES}


def test_golden_model_rebuilds_bit_identically(golden_model_dir):
    expected = json.loads((GOLDEN / "models.json").read_text())["golden_tiny"]["safetensors_md5"]
    got = {name: hashlib.md5((golden_model_dir / name).read_bytes()).hexdigest() for name in expected}
    assert got == expected


@pytest.fixture(scope="module")
def golden_backend(golden_model_dir):
    return TorchBackend(load_models(golden_model_dir))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_torch_matches_the_original_pipeline(golden_backend, case):
    output = run_case(golden_backend, case)
    expected, stride = case.expected()
    assert output.shape == (*case.input_rgb().shape[:2], 3) and output.dtype == np.float32
    error = float(np.abs(output[::stride, ::stride] - expected).max())
    assert error <= case.tolerance("torch"), f"{case.name}: max abs {error:.2e}"


def test_clip_input_is_the_image_processors(golden_backend):
    """The CLIP input is CLIPImageProcessor's (PIL bicubic on uint8), not a float resize of ours."""
    rgb = CASES[0].input_rgb()
    ours = clip_pixels(golden_backend.clip_processor, rgb[None])
    side = golden_backend.models.image_encoder.config.image_size
    assert ours.shape == (1, 3, side, side)
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, size=(side, side), mode="bicubic", antialias=True
    )
    mean = torch.tensor(golden_backend.clip_processor.image_mean).reshape(1, 3, 1, 1)
    std = torch.tensor(golden_backend.clip_processor.image_std).reshape(1, 3, 1, 1)
    assert float(((resized - mean) / std - ours).abs().max()) > 0.01  # the old approximation was off
