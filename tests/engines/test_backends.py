"""load_backend: named backends load or fail loudly; auto falls back with a warning per skip."""

from __future__ import annotations

import logging

import pytest
import torch

from faceanon_video.engines import tensorrt
from faceanon_video.anonymize.diffusion.backends import load_backend
from faceanon_video.anonymize.diffusion.backends import OnnxBackend
from faceanon_video.errors import ConfigError

needs_no_tensorrt = pytest.mark.skipif(tensorrt.is_available(), reason="TensorRT and CUDA are present here")


def test_named_backends_load(tiny_model_dir, tiny_engine_dir):
    onnx = load_backend("onnx", engine_dir=tiny_engine_dir, providers=["cpu"])
    assert isinstance(onnx, OnnxBackend) and onnx.providers == ["cpu"]
    reference = load_backend("torch", model_dir=tiny_model_dir, device="cpu")
    assert type(reference).__name__ == "TorchBackend" and reference.dtype == torch.float32


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("onnx", {}, "needs --engine-dir"),
        ("torch", {}, "--model-dir"),
        ("tensorrt", {}, "tensorrt"),
        ("openvino", {}, "unknown backend"),
    ],
)
def test_named_backend_failures_are_errors_not_fallbacks(name, kwargs, message, caplog, monkeypatch):
    monkeypatch.delenv("FACEANON_MODEL_DIR", raising=False)
    with caplog.at_level(logging.WARNING), pytest.raises(ConfigError, match=message):
        load_backend(name, **kwargs)
    assert not caplog.records  # nothing was tried instead


@needs_no_tensorrt
def test_explicit_tensorrt_without_tensorrt_says_how_to_get_it(tiny_engine_dir):
    with pytest.raises(ConfigError, match="TensorRT|CUDA"):
        load_backend("tensorrt", engine_dir=tiny_engine_dir)


@needs_no_tensorrt
@pytest.mark.skipif(torch.cuda.is_available(), reason="auto would pick a GPU backend")
def test_auto_takes_onnx_on_the_cpu_and_logs_each_skipped_backend(tiny_model_dir, tiny_engine_dir, caplog):
    with caplog.at_level(logging.INFO, logger="faceanon_video.anonymize.diffusion.backends"):
        backend = load_backend("auto", model_dir=tiny_model_dir, engine_dir=tiny_engine_dir)
    assert isinstance(backend, OnnxBackend) and backend.device.type == "cpu"
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(" (")[0] for m in messages if "skipping" in m] == [
        "backend auto: skipping tensorrt",
        "backend auto: skipping onnx",  # (GPU)
        "backend auto: skipping torch",  # (GPU)
    ]
    # No GPU is not a failure: nothing at WARNING level on an ordinary CPU machine.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto would pick a GPU backend")
def test_auto_falls_back_to_torch_without_engines_and_fails_without_anything(
    tiny_model_dir, tmp_path, caplog, monkeypatch
):
    monkeypatch.delenv("FACEANON_MODEL_DIR", raising=False)
    with caplog.at_level(logging.WARNING):
        backend = load_backend("auto", model_dir=tiny_model_dir, engine_dir=tmp_path)  # no manifest there
    assert type(backend).__name__ == "TorchBackend"
    assert any("onnx (CPU) failed" in r.getMessage() and "export" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="model"):
        load_backend("auto")
