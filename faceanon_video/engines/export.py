"""PyTorch -> ONNX for any model: trace, clean, constant-fold, stamp shapes, check, save; hashes for caching.

What to export (which functions, which specs) is the model's business (the diffusion anonymizer's is
``anonymize/diffusion/export.py``); this module exports one function of tensors as one graph.

Steps per graph (StreamDiffusion's export -> optimise order):

1. trace with ``torch.onnx.export(dynamo=False)``: the TorchScript exporter handles the diffusers
   UNet with custom attention processors as plain tensor code, in seconds;
2. clean up and fold constants with onnx-graphsurgeon (dead nodes, and the exporter's shape
   arithmetic down to what the dynamic batch axis needs);
3. stamp the exact I/O shapes (axis 0 ``batch``, the rest fixed) and check with ``onnx.checker``;
4. save, with the weights in one ``NAME.onnx.data`` file when the graph is over protobuf's 2 GiB.

Graph inputs and outputs are float32 whatever the precision inside (:class:`TracedFunction`).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from faceanon_video.engines import specs
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


class TracedFunction(nn.Module):
    """A function of tensors as a module for the tracer: float32 at the edges, ``dtype`` inside.
    ``modules`` are registered as children so their weights export as initializers."""

    def __init__(self, function: Callable, spec: specs.GraphSpec, modules: Sequence[nn.Module], dtype: torch.dtype) -> None:
        super().__init__()
        self.function = function
        self.models = nn.ModuleList(modules)
        self.dtype = dtype
        # Timesteps stay float32: fp16 cannot hold fractional timesteps near 1000 exactly.
        self.cast = [t.name != "timestep" for t in spec.inputs]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs = tuple(x.to(self.dtype) if cast else x for x, cast in zip(inputs, self.cast, strict=True))
        return tuple(y.float() for y in self.function(*inputs))


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


def up_to_date(
    out_dir: Path, source_sha256: str, opset: int, precision: str, graph_names: Sequence[str]
) -> specs.Manifest | None:
    """The manifest of ``out_dir`` when its graphs (all of ``graph_names``, files intact) were exported
    from the same source with the same opset and precision; None when they must be exported again."""
    try:
        manifest = specs.Manifest.load(out_dir)
    except ModelError:
        return None
    if (manifest.source_sha256, manifest.opset, manifest.precision) != (source_sha256, opset, precision):
        return None
    if set(manifest.graphs) != set(graph_names):
        return None
    for graph in manifest.graphs.values():
        files = [out_dir / graph.onnx] + ([out_dir / graph.external_data] if graph.external_data else [])
        if not all(f.is_file() for f in files) or sha256_files(files) != graph.sha256:
            return None
    return manifest
