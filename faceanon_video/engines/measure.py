"""Timing and accuracy of diffusion backends, for benchmarks/engines_*.py and GPU checks.

Times are wall-clock around each call, with the GPU synchronised before reading the clock, so they
include the host-side work (binding, casts) that a real run pays too.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch

from faceanon_video.engines import specs
from faceanon_video.engines.runtime import graph_functions


def _sync(backend) -> None:
    if backend.device.type == "cuda":
        torch.cuda.synchronize(backend.device)


def backend_inputs(backend, spec: specs.GraphSpec, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A spec's sample inputs on the backend's device, floats in its dtype (timesteps stay float32)."""
    return tuple(
        t.to(backend.device, t.dtype if i.name == "timestep" else backend.dtype)
        for t, i in zip(spec.sample_inputs(batch, seed), spec.inputs, strict=True)
    )


def latency_ms(call: Callable[[], object], backend, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``call()`` in milliseconds."""
    for _ in range(warmup):
        call()
    _sync(backend)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        _sync(backend)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def graph_latency_ms(backend, spec: specs.GraphSpec, batch: int, repeats: int = 20, warmup: int = 3) -> float:
    function = graph_functions(backend)[spec.name]
    inputs = backend_inputs(backend, spec, batch)
    return latency_ms(lambda: function(*inputs), backend, repeats, warmup)


def graph_outputs(backend, graph_specs: dict[str, specs.GraphSpec], batch: int = 2) -> dict[str, list[torch.Tensor]]:
    """Every graph's outputs on its seeded sample inputs, as float32 CPU tensors."""
    return {
        name: [y.float().cpu() for y in graph_functions(backend)[name](*backend_inputs(backend, spec, batch))]
        for name, spec in graph_specs.items()
    }


def relative_errors(got: dict[str, list[torch.Tensor]], want: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Per graph, the largest absolute difference relative to the reference's largest magnitude,
    so fp16 drift reads as a fraction of the output range."""
    return {
        name: max(float((g - w).abs().max() / w.abs().max().clamp_min(1e-12)) for g, w in zip(got[name], want[name], strict=True))
        for name in want
    }


class StageTimer:
    """Wraps a backend and adds each method's wall time (GPU synchronised) to ``seconds``."""

    METHODS = ("encode_image", "vae_encode", "reference_states", "unet", "vae_decode")

    def __init__(self, backend) -> None:
        self.backend = backend
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def __getattr__(self, name):
        attribute = getattr(self.backend, name)
        if name not in self.METHODS:
            return attribute

        def timed(*args, **kwargs):
            _sync(self.backend)
            start = time.perf_counter()
            result = attribute(*args, **kwargs)
            _sync(self.backend)
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1
            return result

        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def time_frames(backend, settings, faces: int, repeats: int = 5, warmup: int = 1) -> dict:
    """The anonymizer's ``generate`` on ``faces`` random crops: median ms per frame, frames/s,
    faces/s, and one frame's time split by backend method (``stages_ms``)."""
    import numpy as np

    from faceanon_video.anonymize.diffusion.anonymizer import DiffusionAnonymizer

    timer = StageTimer(backend)
    anonymizer = DiffusionAnonymizer(timer, settings)
    size = backend.image_size_px
    crops = np.random.default_rng(faces).integers(0, 256, (faces, size, size, 3), dtype=np.uint8)
    seeds = np.arange(faces, dtype=np.uint64)
    frame_ms = latency_ms(lambda: anonymizer.generate(crops, seeds), backend, repeats, warmup)
    timer.reset()
    anonymizer.generate(crops, seeds)
    return {
        "frame_ms": frame_ms,
        "fps": 1e3 / frame_ms,
        "faces_per_s": faces * 1e3 / frame_ms,
        "stages_ms": {m: timer.seconds[m] * 1e3 for m in StageTimer.METHODS},
        "unet_batch": faces * (2 if anonymizer.use_cfg else 1),
    }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"{c:.2f}" if isinstance(c, float) else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
