"""PyTorch -> ONNX: one graph per ``DiffusionBackend`` method, cleaned, constant-folded, with a manifest.

Each graph is traced from the matching :class:`TorchBackend` method itself, so the graphs compute
exactly what the reference backend computes (scaling factors, the CLIP pooler, timestep 0 of the
ReferenceNets) and there is no second copy of that logic to drift.

Steps per graph (StreamDiffusion's export -> optimise order; the whole export is skipped when the
directory is already up to date with the model, opset and precision):

1. trace with ``torch.onnx.export(dynamo=False)``: the TorchScript exporter handles the diffusers
   UNet with custom attention processors as plain tensor code, in seconds;
2. clean up and fold constants with onnx-graphsurgeon (dead nodes, and the exporter's shape
   arithmetic down to what the dynamic batch axis needs);
3. stamp the exact I/O shapes (axis 0 ``batch``, the rest fixed) and check with ``onnx.checker``;
4. save, with the weights in one ``NAME.onnx.data`` file when the graph is over protobuf's 2 GiB.

Graph inputs and outputs are float32 whatever the precision; ``fp16`` runs the inside in float16
(see :func:`_upcast_attention` for SD 2.1's attention).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from faceanon_video.engines import specs
from faceanon_video.engines.runtime import graph_functions
from faceanon_video.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
"""ONNX opset 17 (LayerNormalization as one op) is what TensorRT 10/11 and ONNX Runtime >= 1.14
parse best; 18 is accepted too."""

SUPPORTED_OPSETS = (17, 18)

EXTERNAL_DATA_BYTES = 2**31 - 2**26
"""Graphs whose weights reach this size (protobuf's 2 GiB limit, less room for the graph itself)
keep their weights in one external ``.data`` file next to the ``.onnx``."""

_CHUNK_BYTES = 1 << 24


def sha256_files(paths: Sequence[Path], root: Path | None = None) -> str:
    """sha256 over files' relative names and contents, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root) if root else path.name).encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def model_sha256(model_dir: Path | str) -> str:
    """Identity of a model directory: sha256 over every file's relative path and contents."""
    root = Path(model_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ConfigError(f"model directory {root} has no files")
    return sha256_files(files, root)


def probe_specs(backend) -> dict[str, specs.GraphSpec]:
    """Graph specs from one batch-1 pass of ``backend`` (a :class:`TorchBackend`).

    Running the models once is the simplest way to learn every state's token count and width for
    any ReferenceNet architecture; it costs one CLIP, VAE-encoder and ReferenceNet forward.
    """
    device, dtype = backend.device, backend.dtype
    size, clip_size = backend.image_size_px, backend.clip_image_size_px
    pixels = torch.zeros(1, 3, size, size, device=device, dtype=dtype)
    pixels_clip = torch.zeros(1, 3, clip_size, clip_size, device=device, dtype=dtype)
    embeds = backend.encode_image(pixels_clip)
    latents = backend.vae_encode(pixels)
    states = backend.reference_states(latents, embeds, "source")

    def spec(name: str, tensor: torch.Tensor) -> specs.TensorSpec:
        return dataclasses.replace(specs.TensorSpec.like(name, tensor), dtype="float32")

    cond_dim = backend.time_cond_proj_dim
    return specs.build_graph_specs(
        pixels=spec("pixels", pixels),
        pixels_clip=spec("pixels_clip", pixels_clip),
        embeds=spec("embeds", embeds),
        latents=spec("latents", latents),
        states=[spec(site.name, s) for site, s in zip(backend.sites, states, strict=True)],
        timestep_cond=specs.TensorSpec("timestep_cond", (specs.BATCH, cond_dim)) if cond_dim else None,
        guidance_batch=cond_dim is None,
    )


class _Traced(nn.Module):
    """One backend function as a module for the tracer: float32 at the edges, the backend's dtype
    inside. The models are registered as children so their weights export as initializers."""

    def __init__(self, function: Callable, spec: specs.GraphSpec, backend) -> None:
        super().__init__()
        self.function = function
        self.models = nn.ModuleList(backend.models.modules().values())
        self.dtype = backend.dtype
        # Timesteps stay float32: fp16 cannot hold fractional timesteps near 1000 exactly.
        self.cast = [t.name != "timestep" for t in spec.inputs]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs = tuple(x.to(self.dtype) if cast else x for x, cast in zip(inputs, self.cast, strict=True))
        return tuple(y.float() for y in self.function(*inputs))


def _upcast_attention(models) -> int:
    """Computes attention scores in float32 in fp16 graphs where the model asks for it.

    SD 2.1 sets ``upcast_attention``: in fp16 its q.k products overflow; the VAE's attention sets
    ``upcast_softmax``. PyTorch's fused SDPA kernels accumulate in fp32 and ignore both flags, but
    exported to ONNX SDPA becomes a plain fp16 MatMul + Softmax. diffusers' classic
    ``AttnProcessor`` honours them (q and k, or the scores before the softmax, in fp32), so fp16
    exports use it wherever a flag is set. Processors that wrap an ``inner`` processor (the
    reference writer/reader) get their inner one swapped. Returns the number of layers changed.
    """
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    changed = 0
    for model in models.modules().values():
        for module in model.modules():
            if not (isinstance(module, Attention) and (module.upcast_attention or module.upcast_softmax)):
                continue
            processor = module.processor
            if isinstance(getattr(processor, "inner", None), AttnProcessor2_0):
                processor.inner = AttnProcessor()
            elif isinstance(processor, AttnProcessor2_0):
                module.set_processor(AttnProcessor())
            else:
                continue
            changed += 1
    return changed


def export_graph(
    module: nn.Module,
    spec: specs.GraphSpec,
    path: Path,
    opset: int = DEFAULT_OPSET,
    device: torch.device | str = "cpu",
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
) -> specs.GraphFile:
    """Traces ``module`` into ``path`` (steps 1-4 of the module docstring)."""
    import onnx

    # Batch 2 for tracing: a batch of 1 invites exporters to specialise squeezes and broadcasts.
    inputs = tuple(t.to(device) for t in spec.sample_inputs(batch=2))
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.onnx.export(
                module,
                inputs,
                str(raw),
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_axes=spec.dynamic_axes(),
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        for message in sorted({str(w.message).splitlines()[0] for w in caught}):
            logger.debug("%s export: %s", spec.name, message)
        model = onnx.load(str(raw))  # also reads the per-tensor files torch writes for > 2 GiB
    model = optimize(model)
    _stamp_io_shapes(model, spec)
    return save_graph(model, spec, path, external_data_bytes)


def optimize(model):
    """Removes dead nodes and folds constant subgraphs (shape arithmetic, weight transposes).

    Folding shape arithmetic needs inferred shapes, and ONNX shape inference needs the model in one
    < 2 GiB protobuf, so bigger graphs are folded on the shapes the exporter recorded. (onnxslim
    removes a further quarter of the UNet's nodes, nearly all of them cheap shape ops that ONNX
    Runtime and TensorRT fuse anyway, at 10x the time of the rest of the export: not worth it.)
    """
    import onnx
    import onnx_graphsurgeon as gs
    import onnxruntime
    from onnx_graphsurgeon.logger import G_LOGGER

    small = _weights_bytes(model) < EXTERNAL_DATA_BYTES
    if small:
        model = onnx.shape_inference.infer_shapes(model)
    G_LOGGER.severity = G_LOGGER.ERROR  # its per-subgraph folding notes are not actionable
    onnxruntime.set_default_logger_severity(3)  # nor are ORT's while it evaluates them
    try:
        graph = gs.import_onnx(model)
        # ONNX Runtime evaluates the folded subgraphs; results over 64 MiB stay computed at run
        # time rather than bloat the file.
        graph.cleanup().toposort().fold_constants(size_threshold=64 << 20).cleanup().toposort()
    finally:
        onnxruntime.set_default_logger_severity(2)
    model = gs.export_onnx(graph)
    return onnx.shape_inference.infer_shapes(model) if small else model


def _weights_bytes(model) -> int:
    return sum(t.ByteSize() for t in model.graph.initializer)


def _stamp_io_shapes(model, spec: specs.GraphSpec) -> None:
    """Writes the spec's shapes on the graph's inputs and outputs: ``batch`` on axis 0, fixed sizes
    elsewhere, whatever names the exporter made up for the dimensions it could not infer."""
    by_name = {t.name: t for t in (*spec.inputs, *spec.outputs)}
    values = [*model.graph.input, *model.graph.output]
    names = [v.name for v in values]
    if sorted(names) != sorted(by_name):
        raise ModelError(f"{spec.name}: exported tensors {names} differ from the spec's {sorted(by_name)}")
    for value in values:
        dims = value.type.tensor_type.shape.dim
        target = by_name[value.name].shape
        if len(dims) != len(target):
            raise ModelError(f"{spec.name}/{value.name}: exported rank {len(dims)}, spec {list(target)}")
        for dim, size in zip(dims, target, strict=True):
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size


def save_graph(model, spec: specs.GraphSpec, path: Path, external_data_bytes: int = EXTERNAL_DATA_BYTES) -> specs.GraphFile:
    """Saves and checks one graph; weights go to ``<path>.data`` at ``external_data_bytes`` or more."""
    import onnx

    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)  # onnx appends to an existing data file
    external = _weights_bytes(model) >= external_data_bytes
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )
    onnx.checker.check_model(str(path), full_check=True)  # by path: works past 2 GiB
    files = [path, data] if external else [path]
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    logger.info("exported %s (%.1f MB%s)", path, size_mb, ", external data" if external else "")
    return specs.GraphFile(spec=spec, onnx=path.name, sha256=sha256_files(files), external_data=data.name if external else None)


def _up_to_date(out_dir: Path, source_sha256: str, opset: int, precision: str) -> specs.Manifest | None:
    try:
        manifest = specs.Manifest.load(out_dir)
    except ModelError:
        return None
    if (manifest.source_sha256, manifest.opset, manifest.precision) != (source_sha256, opset, precision):
        return None
    if set(manifest.graphs) != set(specs.GRAPH_NAMES):
        return None
    for graph in manifest.graphs.values():
        files = [out_dir / graph.onnx] + ([out_dir / graph.external_data] if graph.external_data else [])
        if not all(f.is_file() for f in files) or sha256_files(files) != graph.sha256:
            return None
    return manifest


def export_models(
    model_dir: Path | str,
    out_dir: Path | str,
    *,
    fp16: bool = False,
    max_faces: int = 4,
    opset: int = DEFAULT_OPSET,
    device: torch.device | str | None = None,
    force: bool = False,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
) -> specs.Manifest:
    """Exports the six graphs of the models in ``model_dir`` to ``out_dir`` with ``manifest.json``.

    ``fp16``: float16 weights and activations inside the graphs (half the size and, on a GPU, about
    twice the speed; small numeric drift, see engines/README.md); the CPU providers of ONNX Runtime
    lack most fp16 kernels, so fp16 graphs are for GPUs. ``max_faces``: the faces per frame the
    TensorRT profiles are built for (2x under classifier-free guidance); more still run, in
    chunks. ``device``: where to trace (default: CUDA when available; fp16 tracing on a CPU is
    slow). ``force``: re-export even when the directory is up to date with the model.
    """
    from faceanon_video.anonymize.diffusion.backend import TorchBackend
    from faceanon_video.anonymize.diffusion.models import load_models, resolve_model_dir

    if opset not in SUPPORTED_OPSETS:
        raise ConfigError(f"opset must be one of {SUPPORTED_OPSETS}, got {opset}")
    if max_faces < 1:
        raise ConfigError(f"max_faces must be at least 1, got {max_faces}")
    model_dir, out_dir = resolve_model_dir(model_dir), Path(out_dir)
    precision = "fp16" if fp16 else "fp32"
    source_sha256 = model_sha256(model_dir)
    existing = None if force else _up_to_date(out_dir, source_sha256, opset, precision)
    if existing is not None:
        logger.info("%s is up to date with %s; not re-exporting (use force to)", out_dir, model_dir)
        if existing.max_faces != max_faces:  # only the TensorRT profiles depend on it
            existing = dataclasses.replace(existing, max_faces=max_faces)
            existing.save(out_dir)
        return existing

    # 1. Load the models into the reference backend, in the export precision.
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float16 if fp16 else torch.float32
    backend = TorchBackend(load_models(model_dir), device=device, dtype=dtype)
    if fp16:
        logger.info("fp16: %d attention layers compute scores in float32", _upcast_attention(backend.models))

    # 2. Learn the tensor shapes, then export each graph.
    graph_specs = probe_specs(backend)
    out_dir.mkdir(parents=True, exist_ok=True)
    functions = graph_functions(backend)
    graphs = {}
    for name, spec in graph_specs.items():
        module = _Traced(functions[name], spec, backend).eval()
        graphs[name] = export_graph(module, spec, out_dir / f"{name}.onnx", opset, device, external_data_bytes)

    # 3. The scheduler config and the manifest make the directory self-contained.
    backend.models.scheduler.save_pretrained(out_dir / "scheduler")
    import onnx
    import onnx_graphsurgeon

    manifest = specs.Manifest(
        source_sha256=source_sha256,
        opset=opset,
        precision=precision,
        max_faces=max_faces,
        graphs=graphs,
        model_info={
            "image_size_px": backend.image_size_px,
            "clip_image_size_px": backend.clip_image_size_px,
            "clip_mean": list(backend.clip_mean),
            "clip_std": list(backend.clip_std),
            "time_cond_proj_dim": backend.time_cond_proj_dim,
            "sites": [site.name for site in backend.sites],
        },
        exporter=(
            f"torch {torch.__version__} (TorchScript exporter), onnx {onnx.__version__}, "
            f"onnx-graphsurgeon {onnx_graphsurgeon.__version__}"
        ),
    )
    manifest.save(out_dir)
    logger.info("exported %d graphs to %s (%s, opset %d)", len(graphs), out_dir, precision, opset)
    return manifest
