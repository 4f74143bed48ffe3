"""ONNX Runtime against the ORIGINAL pipeline's outputs (tests/data/golden), and exports of models
whose CLIP input is not 224 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceanon_video.anonymize.diffusion import graphs
from faceanon_video.anonymize.diffusion.backend import TorchBackend
from faceanon_video.anonymize.diffusion.backends import OnnxBackend
from faceanon_video.anonymize.diffusion.export import export_models
from faceanon_video.anonymize.diffusion.fidelity import load_cases, run_case
from faceanon_video.anonymize.diffusion.models import build_tiny_models, save_models
from faceanon_video.engines import export

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
CASES = load_cases(GOLDEN)


@pytest.fixture(scope="module")
def golden_onnx(golden_model_dir, tmp_path_factory):
    """fp32 graphs of the golden model at the cases' 512 px (its config says 128 px)."""
    out = tmp_path_factory.mktemp("golden_engines")
    export_models(golden_model_dir, out, max_faces=1, device="cpu", image_size_px=512)
    return OnnxBackend(out, providers=["cpu"])


@pytest.mark.slow  # an export at 512 px and 4 steps per case: ~35 s on 2 cores
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_onnx_matches_the_original_pipeline(golden_onnx, case):
    assert golden_onnx.image_size_px == 512
    output = run_case(golden_onnx, case)
    expected, stride = case.expected()
    error = float(np.abs(output[::stride, ::stride] - expected).max())
    assert error <= case.tolerance("onnx"), f"{case.name}: max abs {error:.2e}"


def _clip_graph_matches_torch(backend: TorchBackend, tmp_path) -> None:
    spec = graphs.probe_specs(backend)[graphs.CLIP_VISION]
    side = backend.models.image_encoder.config.image_size
    assert spec.inputs[0].shape == (spec.inputs[0].shape[0], 3, side, side)
    function = graphs.graph_functions(backend)[graphs.CLIP_VISION]
    module = export.TracedFunction(function, spec, list(backend.models.modules().values()), backend.dtype)
    export.export_graph(module, spec, tmp_path / "clip.onnx")
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "clip.onnx"), providers=["CPUExecutionProvider"])
    pixels = spec.sample_inputs(2)[0]
    got = torch.from_numpy(session.run(None, {"pixels_clip": pixels.numpy()})[0])
    torch.testing.assert_close(got, function(pixels)[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize("clip_px", [48, 40])
def test_clip_graph_takes_the_encoders_size(clip_px, tmp_path):
    backend = TorchBackend(build_tiny_models(clip_image_size_px=clip_px))
    _clip_graph_matches_torch(backend, tmp_path)


@pytest.mark.slow
def test_whole_export_of_a_48_px_clip_model_runs_like_torch(tmp_path):
    from faceanon_video.anonymize.diffusion import DiffusionAnonymizer, DiffusionSettings
    from faceanon_video.anonymize.diffusion.models import load_models

    model_dir = save_models(build_tiny_models(clip_image_size_px=48), tmp_path / "model")
    export_models(model_dir, tmp_path / "engines", max_faces=1, device="cpu")
    onnx_backend = OnnxBackend(tmp_path / "engines", providers=["cpu"])
    assert onnx_backend.clip_processor.crop_size == {"height": 48, "width": 48}
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    seeds = np.array([3, 4], np.uint64)
    settings = DiffusionSettings(steps=2)
    want = DiffusionAnonymizer(TorchBackend(load_models(model_dir)), settings).generate_float(crops, seeds)
    got = DiffusionAnonymizer(onnx_backend, settings).generate_float(crops, seeds)
    assert float(np.abs(got - want).max()) < 5e-4
