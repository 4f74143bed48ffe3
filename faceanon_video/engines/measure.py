"""Timing and accuracy of backends (any model), for benchmarks/engines_*.py and GPU checks.

Times are wall-clock around each call, with the GPU synchronised before reading the clock, so they
include the host-side work (binding, casts) that a real run pays too.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch


def _sync(backend) -> None:
    if backend.device.type == "cuda":
        torch.cuda.synchronize(backend.device)


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


def relative_errors(got: dict[str, list[torch.Tensor]], want: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Per graph, the largest absolute difference relative to the reference's largest magnitude,
    so fp16 drift reads as a fraction of the output range."""
    return {
        name: max(float((g - w).abs().max() / w.abs().max().clamp_min(1e-12)) for g, w in zip(got[name], want[name], strict=True))
        for name in want
    }


class StageTimer:
    """Wraps a backend (anything with a ``device``) and adds the wall time (GPU synchronised) of each
    call of its ``methods`` to ``seconds``."""

    def __init__(self, backend, methods: Sequence[str]) -> None:
        self.backend = backend
        self.methods = tuple(methods)
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def __getattr__(self, name):
        attribute = getattr(self.backend, name)
        if name not in self.methods:
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
