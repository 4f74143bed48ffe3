"""Running exported graphs, whatever the model: the runner protocol, input checks and batch chunking.

A :class:`GraphRunner` runs one graph (an ONNX Runtime session, a TensorRT engine) on torch tensors;
:func:`run_graph` checks the inputs against the graph's spec, moves and casts them, and splits a batch
larger than the runner accepts. A model's backend (e.g. the diffusion anonymizer's ``GraphBackend``)
is a set of runners plus what its methods mean.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import torch

from faceanon_video.engines import specs
from faceanon_video.errors import ConfigError

logger = logging.getLogger(__name__)


class GraphRunner(Protocol):
    """Runs one graph: inputs in the spec's order, outputs in the spec's order, on one device."""

    spec: specs.GraphSpec
    max_batch: int | None
    """Largest batch one call accepts (a TensorRT profile's max), None for no limit."""

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]: ...


def run_graph(runner: GraphRunner, inputs: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """``runner`` on ``inputs`` (checked, on ``device``, in the spec's dtypes), in chunks of at most
    ``runner.max_batch``: a frame with more faces than the engines were built for is slower, not lost."""
    inputs = tuple(_prepare(t, spec, device) for t, spec in zip(inputs, runner.spec.inputs, strict=True))
    batch = inputs[0].shape[0]
    limit = runner.max_batch
    if limit is None or batch <= limit:
        return runner(*inputs)
    logger.debug("%s: batch %d over the engine's %d, running in chunks", runner.spec.name, batch, limit)
    chunks = [runner(*(t[i : i + limit] for t in inputs)) for i in range(0, batch, limit)]
    return tuple(torch.cat(parts) for parts in zip(*chunks, strict=True))


def _prepare(tensor: torch.Tensor, spec: specs.TensorSpec, device: torch.device) -> torch.Tensor:
    """Checks a tensor against its spec and makes it contiguous, on ``device``, in the spec's dtype."""
    if tuple(tensor.shape[1:]) != tuple(spec.shape[1:]):
        raise ValueError(
            f"{spec.name}: expected shape {list(spec.shape)}, got {list(tensor.shape)} "
            "(only the batch may change; other sizes are fixed at export)"
        )
    return tensor.to(device=device, dtype=spec.torch_dtype).contiguous()


def load_manifest(engine_dir: Path | str | None) -> specs.Manifest:
    """The manifest of an engine directory, with a clear error when there is none."""
    if engine_dir is None:
        raise ConfigError("no engine directory given: pass --engine-dir (made by `faceanon-video export`)")
    return specs.Manifest.load(Path(engine_dir))
