"""Native TensorRT: builds engines from exported ONNX graphs and runs them on torch CUDA tensors.

Needs the optional ``tensorrt`` package (TensorRT 10 or 11) and a CUDA GPU. Importing this module
never needs either; the functions that do raise :class:`ConfigError` when they are missing.

Precision comes from the graph, not from builder flags: TensorRT 11 removed the weak-typing flags
(``BuilderFlag.FP16``) and builds every network strongly typed, so ``faceanon-video export --fp16``
writes graphs whose weights and activations are already fp16, with SD 2.1's attention upcasts kept
as explicit fp32 casts. Such graphs are built strongly typed on TensorRT 10 too, so both versions run
the same precision.

Engines are cached under ``<engine_dir>/tensorrt/<gpu>_trt<version>_<key>/`` where ``key`` hashes the
source model's sha256, each graph's sha256, the precision and the profile's batch range: an engine is
only reused on the GPU model, TensorRT version and model it was built for.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from pathlib import Path

import torch

from faceanon_video.engines import specs
from faceanon_video.engines.runtime import load_manifest
from faceanon_video.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 4 << 30
"""Scratch memory TensorRT may use while choosing kernels; SD-sized UNets want a few GiB."""


def _trt():
    try:
        import tensorrt
    except ImportError as error:
        raise ConfigError(
            "the tensorrt backend needs NVIDIA TensorRT: pip install 'faceanon-video[tensorrt]' "
            "on a machine with a CUDA GPU"
        ) from error
    return tensorrt


def is_available() -> bool:
    """True when TensorRT imports and torch sees a CUDA device."""
    try:
        _trt()
    except ConfigError:
        return False
    return torch.cuda.is_available()


def _require_cuda() -> None:
    if not torch.cuda.is_available():
        raise ConfigError("the tensorrt backend needs a CUDA GPU, and torch sees none")


def cache_dir(engine_dir: Path, manifest: specs.Manifest, device: torch.device) -> Path:
    """Where this GPU and TensorRT version's engines for this manifest live (see module docstring)."""
    trt = _trt()
    gpu = torch.cuda.get_device_name(device)
    capability = "{}{}".format(*torch.cuda.get_device_capability(device))
    key = hashlib.sha256(
        "|".join(
            [
                manifest.source_sha256,
                manifest.precision,
                str(manifest.max_faces),
                *(f"{name}={graph.sha256}" for name, graph in sorted(manifest.graphs.items())),
            ]
        ).encode()
    ).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()
    return Path(engine_dir) / "tensorrt" / f"{slug}-sm{capability}_trt{trt.__version__}_{key}"


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    spec: specs.GraphSpec,
    max_faces: int,
    timing_cache_path: Path,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    optimization_level: int | None = None,
) -> Path:
    """Builds one engine with a batch profile of 1..``spec.max_batch(max_faces)``.

    The timing cache records how fast each kernel was on this GPU, so later builds (other graphs,
    other batch ranges) skip most measurements; it is read before and written back after the build.
    ``optimization_level``: TensorRT's builder optimization level (0-5, its default 3); lower builds
    faster and may run slower.
    """
    trt = _trt()
    _require_cuda()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # TensorRT 10: opt in; 11: always on, flag accepted
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads external data next to the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if optimization_level is not None:
        config.builder_optimization_level = optimization_level
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in spec.profile(max_faces).items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)

    logger.warning("building TensorRT engine %s (minutes for SD-sized graphs, once per GPU)", engine_path.name)
    start_s = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT failed to build {onnx_path}; see TensorRT's log above")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(plan))
    timing_cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    logger.info("built %s in %.0f s (%.0f MB)", engine_path, time.perf_counter() - start_s, engine_path.stat().st_size / 1e6)
    return engine_path


def _locate(engine_dir: Path | str) -> tuple[specs.Manifest, torch.device, Path]:
    """The manifest, the current CUDA device and this device's engine cache directory."""
    _trt()
    _require_cuda()
    manifest = load_manifest(engine_dir)
    device = torch.device("cuda", torch.cuda.current_device())
    return manifest, device, cache_dir(Path(engine_dir), manifest, device)


def build_engines(
    engine_dir: Path | str,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    force: bool = False,
    optimization_level: int | None = None,
) -> Path:
    """Builds (or finds in the cache) an engine per graph of ``engine_dir``; returns the cache dir."""
    engine_dir = Path(engine_dir)
    manifest, _, target = _locate(engine_dir)
    timing_cache = target.parent / f"{target.name.rsplit('_', 1)[0]}.timing-cache"
    for name, graph in manifest.graphs.items():
        engine_path = target / f"{name}.plan"
        if engine_path.is_file() and not force:
            logger.info("engine %s is cached", engine_path)
            continue
        build_engine(
            engine_dir / graph.onnx, engine_path, graph.spec, manifest.max_faces, timing_cache, workspace_bytes,
            optimization_level,
        )
    return target


class TensorRTGraph:
    """One deserialized engine; ``__call__`` binds torch CUDA tensors and runs on torch's current stream.

    Running on the caller's stream keeps engines and torch ops in order without synchronising; the
    outputs are fresh torch tensors allocated on that stream, so the caching allocator tracks them.
    """

    def __init__(self, engine_path: Path, spec: specs.GraphSpec, max_faces: int):
        trt = _trt()
        self.spec = spec
        self.max_batch = spec.max_batch(max_faces)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ModelError(f"TensorRT cannot load {engine_path}: built by another TensorRT version or GPU?")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        expected = spec.input_names + spec.output_names
        if sorted(names) != sorted(expected):
            raise ModelError(f"{engine_path}: tensors {names} differ from the manifest's {expected}")
        self._dtypes = {name: _torch_dtype(trt, self.engine.get_tensor_dtype(name)) for name in names}

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for tensor, spec in zip(inputs, self.spec.inputs, strict=True):
            if tensor.dtype != self._dtypes[spec.name]:
                raise ValueError(f"{spec.name}: engine takes {self._dtypes[spec.name]}, got {tensor.dtype}")
            self.context.set_input_shape(spec.name, tuple(tensor.shape))
            self.context.set_tensor_address(spec.name, tensor.data_ptr())
        device = inputs[0].device
        outputs = []
        for spec in self.spec.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            tensor = torch.empty(shape, dtype=self._dtypes[spec.name], device=device)
            self.context.set_tensor_address(spec.name, tensor.data_ptr())
            outputs.append(tensor)
        stream = torch.cuda.current_stream(device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ModelError(f"TensorRT failed to run {self.spec.name}")
        return tuple(outputs)


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int64: torch.int64}
    if dtype not in table:
        raise ModelError(f"unsupported engine tensor dtype {dtype}")
    return table[dtype]


def load_runners(
    engine_dir: Path | str,
    build: bool = True,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    optimization_level: int | None = None,
) -> tuple[specs.Manifest, dict[str, TensorRTGraph], torch.device]:
    """An engine per graph of ``engine_dir`` on the current GPU: (manifest, runners, device).

    ``build``: build missing engines from the ONNX graphs (minutes, once per GPU and TensorRT
    version) instead of failing. ``workspace_bytes``, ``optimization_level``: see :func:`build_engine`.
    """
    engine_dir = Path(engine_dir)
    manifest, device, target = _locate(engine_dir)
    missing = [n for n in manifest.graphs if not (target / f"{n}.plan").is_file()]
    if missing and not build:
        raise ModelError(f"no TensorRT engines for {missing} in {target}: run `faceanon-video export` on this GPU")
    if missing:
        build_engines(engine_dir, workspace_bytes, optimization_level=optimization_level)
    runners = {
        name: TensorRTGraph(target / f"{name}.plan", graph.spec, manifest.max_faces)
        for name, graph in manifest.graphs.items()
    }
    logger.info("tensorrt engines on %s (%s)", torch.cuda.get_device_name(device), manifest.precision)
    return manifest, runners, device
