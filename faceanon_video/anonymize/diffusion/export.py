"""The diffusion models as six ONNX graphs with a manifest (``faceanon-video export``).

Each graph is traced from the matching :class:`~.backend.TorchBackend` method itself (see
``graphs.graph_functions``), so the graphs compute exactly what the reference backend computes
(scaling factors, the CLIP pooler, timestep 0 of the ReferenceNets) and there is no second copy of
that logic to drift. Every shape comes from one pass of the models (``graphs.probe_specs``), so any
model directory the torch path loads exports. The whole export is skipped when the directory is
already up to date with the model, opset, precision and face size.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from faceanon_video.engines import specs
from faceanon_video.engines.export import (
    DEFAULT_OPSET,
    EXTERNAL_DATA_BYTES,
    SUPPORTED_OPSETS,
    TracedFunction,
    export_graph,
    model_sha256,
    up_to_date,
)
from faceanon_video.errors import ConfigError

from .backend import TorchBackend
from .graphs import GRAPH_NAMES, graph_functions, model_info, probe_specs
from .models import FaceAnonModels, load_models, model_image_size_px, resolve_model_dir

__all__ = ["export_models", "export_backend", "upcast_attention"]

logger = logging.getLogger(__name__)


def upcast_attention(models: FaceAnonModels) -> int:
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


def export_backend(
    backend: TorchBackend,
    out_dir: Path | str,
    *,
    source_sha256: str,
    max_faces: int = 4,
    opset: int = DEFAULT_OPSET,
    image_size_px: int | None = None,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
) -> specs.Manifest:
    """The six graphs of ``backend``'s models (in its dtype inside, float32 I/O) and the manifest.

    For models built in memory too (the GPU benchmark's random-weight SD 2.1); ``source_sha256``
    identifies them in the manifest and the TensorRT cache key.
    """
    out_dir = Path(out_dir)
    fp16 = backend.dtype == torch.float16
    if fp16:
        logger.info("fp16: %d attention layers compute scores in float32", upcast_attention(backend.models))
    graph_specs = probe_specs(backend, image_size_px)
    out_dir.mkdir(parents=True, exist_ok=True)
    functions = graph_functions(backend)
    modules = list(backend.models.modules().values())
    graphs = {}
    for name, spec in graph_specs.items():
        module = TracedFunction(functions[name], spec, modules, backend.dtype).eval()
        graphs[name] = export_graph(module, spec, out_dir / f"{name}.onnx", opset, backend.device, external_data_bytes)

    # The scheduler config and the manifest make the directory self-contained.
    backend.models.scheduler.save_pretrained(out_dir / "scheduler")
    import onnx
    import onnx_graphsurgeon

    manifest = specs.Manifest(
        source_sha256=source_sha256,
        opset=opset,
        precision="fp16" if fp16 else "fp32",
        max_faces=max_faces,
        graphs=graphs,
        model_info=model_info(backend, image_size_px),
        exporter=(
            f"torch {torch.__version__} (TorchScript exporter), onnx {onnx.__version__}, "
            f"onnx-graphsurgeon {onnx_graphsurgeon.__version__}"
        ),
    )
    manifest.save(out_dir)
    logger.info("exported %d graphs to %s (%s, opset %d)", len(graphs), out_dir, manifest.precision, opset)
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
    image_size_px: int | None = None,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
) -> specs.Manifest:
    """Exports the six graphs of the models in ``model_dir`` to ``out_dir`` with ``manifest.json``.

    ``fp16``: float16 weights and activations inside the graphs (half the size and, on a GPU, about
    twice the speed; small numeric drift); the CPU providers of ONNX Runtime lack most fp16 kernels,
    so fp16 graphs are for GPUs. ``max_faces``: the faces per frame the TensorRT profiles are built
    for (2x under classifier-free guidance); more still run, in chunks. ``device``: where to trace
    (default: CUDA when available; fp16 tracing on a CPU is slow). ``force``: re-export even when the
    directory is up to date with the model. ``image_size_px``: face crop side (default: the model's).
    """
    if opset not in SUPPORTED_OPSETS:
        raise ConfigError(f"opset must be one of {SUPPORTED_OPSETS}, got {opset}")
    if max_faces < 1:
        raise ConfigError(f"max_faces must be at least 1, got {max_faces}")
    model_dir, out_dir = resolve_model_dir(model_dir), Path(out_dir)
    precision = "fp16" if fp16 else "fp32"
    source_sha256 = model_sha256(model_dir)
    existing = None if force else up_to_date(out_dir, source_sha256, opset, precision, GRAPH_NAMES)
    if existing is not None and existing.model_info["image_size_px"] != (image_size_px or model_image_size_px(model_dir)):
        existing = None  # exported for another face size
    if existing is not None:
        logger.info("%s is up to date with %s; not re-exporting (use force to)", out_dir, model_dir)
        if existing.max_faces != max_faces:  # only the TensorRT profiles depend on it
            existing = dataclasses.replace(existing, max_faces=max_faces)
            existing.save(out_dir)
        return existing

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float16 if fp16 else torch.float32
    backend = TorchBackend(load_models(model_dir), device=device, dtype=dtype)
    return export_backend(
        backend,
        out_dir,
        source_sha256=source_sha256,
        max_faces=max_faces,
        opset=opset,
        image_size_px=image_size_px,
        external_data_bytes=external_data_bytes,
    )
