"""Fixtures: the tiny diffusion models on disk and their exported graphs (once per session)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("onnx")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from faceanon_video.anonymize.diffusion.models import build_tiny_models, save_models

    return save_models(build_tiny_models(seed=0), tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_engine_dir(tiny_model_dir, tmp_path_factory):
    """The six fp32 graphs of the tiny model (about 15 s on 2 cores)."""
    from faceanon_video.anonymize.diffusion.export import export_models

    out = tmp_path_factory.mktemp("engines") / "tiny"
    export_models(tiny_model_dir, out, max_faces=2, device="cpu")
    return out


@pytest.fixture(scope="session")
def torch_backend(tiny_model_dir):
    from faceanon_video.anonymize.diffusion.backend import TorchBackend
    from faceanon_video.anonymize.diffusion.models import load_models

    return TorchBackend(load_models(tiny_model_dir))


@pytest.fixture(scope="session")
def onnx_backend(tiny_engine_dir):
    from faceanon_video.anonymize.diffusion.backends import OnnxBackend

    return OnnxBackend(tiny_engine_dir, providers=["cpu"])


@pytest.fixture(scope="session")
def golden_model_dir(tmp_path_factory):
    """The golden reference's tiny model (tests/data/golden), rebuilt in the published layout."""
    from faceanon_video.anonymize.diffusion.fidelity import write_model_dir

    return write_model_dir("golden_tiny", tmp_path_factory.mktemp("golden_tiny"))
