"""Choosing the diffusion backend: ``--backend auto|torch|onnx|tensorrt``.

A named backend either loads or raises a :class:`FaceanonError` that says why; it never falls back.
``auto`` tries the candidates fastest first and logs a warning for each one it skips:

1. ``tensorrt``: native TensorRT engines (needs ``tensorrt``, a CUDA GPU and an engine directory);
2. ``onnx`` on the GPU: ONNX Runtime's TensorRT/CUDA providers (onnxruntime-gpu, CUDA, engine dir);
3. ``torch`` on the GPU, in float16 (needs the model directory);
4. on the CPU: ``onnx`` then ``torch`` (ONNX Runtime's CPU kernels and graph fusions beat eager
   PyTorch on these graphs; see benchmarks/engines_cpu.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from faceanon_video.engines import onnx as onnx_runtime
from faceanon_video.engines import tensorrt as tensorrt_runtime
from faceanon_video.config import BACKENDS  # one tuple for the CLI, RunConfig and here
from faceanon_video.engines.tensorrt import DEFAULT_WORKSPACE_BYTES
from faceanon_video.errors import ConfigError, FaceanonError

from .backend import TorchBackend
from .graphs import GraphBackend
from .models import load_models, resolve_model_dir

__all__ = ["BACKENDS", "OnnxBackend", "TensorRTBackend", "load_backend"]

logger = logging.getLogger(__name__)


class OnnxBackend(GraphBackend):
    """The diffusion backend on ONNX Runtime; ``providers`` and ``threads`` as in
    :func:`faceanon_video.engines.onnx.load_runners`."""

    name = "onnx"

    def __init__(self, engine_dir: Path | str, providers: Sequence[str] | None = None, threads: int = 0):
        manifest, runners, device, self.providers = onnx_runtime.load_runners(engine_dir, providers, threads)
        super().__init__(Path(engine_dir), manifest, runners, device)
        logger.info("onnx backend on %s (%s, %s)", device, ",".join(self.providers), manifest.precision)


class TensorRTBackend(GraphBackend):
    """The diffusion backend on native TensorRT engines; the arguments as in
    :func:`faceanon_video.engines.tensorrt.load_runners`."""

    name = "tensorrt"

    def __init__(
        self,
        engine_dir: Path | str,
        build: bool = True,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        optimization_level: int | None = None,
    ):
        manifest, runners, device = tensorrt_runtime.load_runners(engine_dir, build, workspace_bytes, optimization_level)
        super().__init__(Path(engine_dir), manifest, runners, device)


def load_backend(
    name: str = "auto",
    *,
    model_dir: Path | str | None = None,
    engine_dir: Path | str | None = None,
    providers: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
):
    """The diffusion backend ``name`` (see the module docstring), ready to hand to the anonymizer.

    ``model_dir``: the PyTorch models (for ``torch``). ``engine_dir``: a directory written by
    ``faceanon-video export`` (for ``onnx`` and ``tensorrt``). ``providers``: ONNX Runtime providers
    for ``onnx`` (``tensorrt``, ``cuda``, ``cpu``; default: the fastest available). ``device``: for
    ``torch`` (default CUDA when available). ``dtype``: for ``torch`` (default float16 on CUDA,
    float32 on the CPU); the graph backends take the precision they were exported in.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name == "torch":
        return _torch(model_dir, device, dtype)
    if name == "onnx":
        return OnnxBackend(_need(engine_dir, "onnx", "--engine-dir"), providers=providers)
    if name == "tensorrt":
        return TensorRTBackend(_need(engine_dir, "tensorrt", "--engine-dir"))
    return _auto(model_dir, engine_dir)


def _need(value, backend: str, option: str):
    if value is None:
        raise ConfigError(f"the {backend} backend needs {option}")
    return value


def _torch(model_dir, device, dtype=None):
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} requested but torch sees no CUDA GPU")
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    # load_models falls back to $FACEANON_MODEL_DIR and raises ConfigError when there is neither.
    return TorchBackend(load_models(model_dir, dtype=dtype), device=device, dtype=dtype)


def _model_dir_problem(model_dir) -> str | None:
    try:
        resolve_model_dir(model_dir)
    except ConfigError as error:
        return str(error)
    return None


def _candidates(model_dir, engine_dir) -> list[tuple[str, str | None, Callable]]:
    """(label, reason it cannot run or None, loader), fastest first."""
    no_engines = "no --engine-dir" if engine_dir is None else None
    no_models = _model_dir_problem(model_dir)
    no_cuda = None if torch.cuda.is_available() else "no CUDA GPU"
    if tensorrt_runtime.is_available():
        no_trt = None
    else:
        no_trt = no_cuda or "TensorRT is not installed"
    gpu_providers = [p for p in onnx_runtime.default_providers() if p != "cpu"]
    return [
        ("tensorrt", no_trt or no_engines, lambda: TensorRTBackend(engine_dir)),
        (
            "onnx (GPU)",
            no_cuda or (None if gpu_providers else "onnxruntime has no GPU provider") or no_engines,
            lambda: OnnxBackend(engine_dir, providers=[*gpu_providers, "cpu"]),
        ),
        ("torch (GPU)", no_cuda or no_models, lambda: _torch(model_dir, "cuda")),
        ("onnx (CPU)", no_engines, lambda: OnnxBackend(engine_dir, providers=["cpu"])),
        ("torch (CPU)", no_models, lambda: _torch(model_dir, "cpu")),
    ]


def _auto(model_dir, engine_dir):
    """The first candidate that loads. Candidates that do not apply here (no GPU, no engines given)
    are skipped at INFO level; one that applies but fails to load is a real fallback and is logged
    as a WARNING once a later one loads. When none loads, the last failure is raised as it is, so the
    user sees one line about what they gave (e.g. which model files are missing)."""
    skipped, failures = [], []
    for label, reason, loader in _candidates(model_dir, engine_dir):
        if reason is not None:
            logger.info("backend auto: skipping %s (%s)", label, reason)
            skipped.append(f"{label}: {reason}")
            continue
        try:
            backend = loader()
        except FaceanonError as error:  # a broken candidate; bugs (other errors) still surface
            failures.append((label, error))
            continue
        for failed, error in failures:
            logger.warning("backend auto: %s failed (%s); using %s instead", failed, error, label)
        logger.info("backend auto: using %s", label)
        return backend
    if failures:
        raise failures[-1][1]
    raise ConfigError("no diffusion backend can run here: " + "; ".join(skipped))
