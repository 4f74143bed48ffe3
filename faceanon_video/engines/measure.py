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


def max_abs_errors(candidate, reference, graph_specs: dict[str, specs.GraphSpec], batch: int = 2) -> dict[str, float]:
    """Per graph, the largest absolute difference between two backends on the same inputs,
    relative to the reference output's largest magnitude (so fp16 drift reads as a fraction)."""
    errors = {}
    for name, spec in graph_specs.items():
        got = graph_functions(candidate)[name](*backend_inputs(candidate, spec, batch))
        want = graph_functions(reference)[name](*backend_inputs(reference, spec, batch))
        errors[name] = max(
            float((g.float().cpu() - w.float().cpu()).abs().max() / w.float().abs().max().clamp_min(1e-12))
            for g, w in zip(got, want, strict=True)
        )
    return errors


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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"{c:.2f}" if isinstance(c, float) else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
