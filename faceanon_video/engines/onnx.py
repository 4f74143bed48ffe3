"""ONNX Runtime for exported graphs, on CPU, CUDA or ONNX Runtime's TensorRT provider.

Tensors stay torch tensors: inputs and preallocated outputs are bound to the session by pointer
(I/O binding), so nothing is copied through NumPy and, on CUDA, nothing leaves the GPU. Output
shapes are known from the manifest because only the batch is dynamic.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from faceanon_video.engines import specs
from faceanon_video.engines.runtime import load_manifest
from faceanon_video.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
"""Short provider names, fastest first."""

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64}


def _ort():
    try:
        import onnxruntime
    except ImportError as error:
        raise ConfigError("the onnx backend needs onnxruntime: pip install 'faceanon-video[onnx]'") from error
    return onnxruntime


def available_providers() -> list[str]:
    """Short names of the providers this ONNX Runtime build offers, fastest first."""
    offered = set(_ort().get_available_providers())
    return [short for short, full in PROVIDERS.items() if full in offered]


def resolve_providers(names: Sequence[str]) -> list[str]:
    """Checks short provider names against this build; an unavailable one is an error, not skipped."""
    unknown = [n for n in names if n not in PROVIDERS]
    if unknown:
        raise ConfigError(f"unknown ONNX Runtime provider(s) {unknown}; choose from {list(PROVIDERS)}")
    available = available_providers()
    missing = [n for n in names if n not in available]
    if missing:
        raise ConfigError(f"ONNX Runtime provider(s) {missing} not available here; available: {available}")
    return list(names)


def default_providers() -> list[str]:
    """The fastest usable providers, ending with the CPU. GPU providers need torch to see CUDA too,
    since the tensors bound to them are torch CUDA tensors."""
    return [p for p in available_providers() if p == "cpu" or torch.cuda.is_available()]


def _provider_options(provider: str, spec: specs.GraphSpec, manifest: specs.Manifest, cache_dir: Path) -> dict:
    if provider == "tensorrt":
        # ONNX Runtime builds and caches its own TensorRT engines; give it the same profile as the
        # native builder, so a changed batch never triggers a rebuild mid-video.
        profile = spec.profile(manifest.max_faces)

        def shapes(index: int) -> str:
            return ",".join(f"{name}:{'x'.join(map(str, dims[index]))}" for name, dims in profile.items())

        cache_dir.mkdir(parents=True, exist_ok=True)
        return {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache_dir),
            "trt_profile_min_shapes": shapes(0),
            "trt_profile_opt_shapes": shapes(1),
            "trt_profile_max_shapes": shapes(2),
        }
    return {}


class OnnxGraph:
    """One graph in an ONNX Runtime session; ``__call__`` maps torch tensors to torch tensors."""

    max_batch = None

    def __init__(
        self,
        path: Path,
        spec: specs.GraphSpec,
        manifest: specs.Manifest,
        providers: Sequence[str],
        cache_dir: Path,
        threads: int = 0,
    ):
        ort = _ort()
        self.spec = spec
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: one per physical core
        options.log_severity_level = 3  # ORT's warnings about unused initializers are noise here
        provider_list = [(PROVIDERS[p], _provider_options(p, spec, manifest, cache_dir)) for p in providers]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=provider_list)
        except Exception as error:  # ORT raises its own untyped errors (Fail, InvalidGraph, ...)
            raise ModelError(f"ONNX Runtime cannot load {path}: {error}") from error
        names = [i.name for i in self.session.get_inputs()]
        if names != spec.input_names:
            raise ModelError(f"{path}: inputs {names} differ from the manifest's {spec.input_names}")
        self.providers = self.session.get_providers()

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = inputs[0].shape[0]
        device = inputs[0].device
        binding = self.session.io_binding()
        for tensor, spec in zip(inputs, self.spec.inputs, strict=True):
            binding.bind_input(
                spec.name, device.type, _device_index(device), _NUMPY_DTYPES[tensor.dtype],
                list(tensor.shape), tensor.data_ptr(),
            )
        outputs = tuple(torch.empty(s.concrete(batch), dtype=s.torch_dtype, device=device) for s in self.spec.outputs)
        for tensor, spec in zip(outputs, self.spec.outputs, strict=True):
            binding.bind_output(
                spec.name, device.type, _device_index(device), _NUMPY_DTYPES[tensor.dtype],
                list(tensor.shape), tensor.data_ptr(),
            )
        if device.type == "cuda":
            # ORT runs on its own stream: make it see torch's pending writes to the inputs.
            torch.cuda.current_stream(device).synchronize()
        self.session.run_with_iobinding(binding)
        return outputs


def _device_index(device: torch.device) -> int:
    return (device.index or 0) if device.type == "cuda" else 0


def load_runners(
    engine_dir: Path | str, providers: Sequence[str] | None = None, threads: int = 0
) -> tuple[specs.Manifest, dict[str, OnnxGraph], torch.device, list[str]]:
    """A session per graph of ``engine_dir``: (manifest, runners by graph name, device, providers).

    ``providers``: short names from :data:`PROVIDERS`, in order of preference (ONNX Runtime gives
    each node to the first provider that supports it). Default: every available provider, fastest
    first. ``tensorrt`` builds engines on first use (minutes for SD-sized graphs) and caches them
    under ``engine_dir/ort_tensorrt``. ``threads``: CPU threads per session, 0 for one per core.
    """
    engine_dir = Path(engine_dir)
    manifest = load_manifest(engine_dir)
    providers = resolve_providers(providers) if providers is not None else default_providers()
    device = torch.device("cuda") if {"cuda", "tensorrt"} & set(providers) else torch.device("cpu")
    runners = {
        name: OnnxGraph(engine_dir / graph.onnx, graph.spec, manifest, providers, engine_dir / "ort_tensorrt", threads)
        for name, graph in manifest.graphs.items()
    }
    return manifest, runners, device, providers
