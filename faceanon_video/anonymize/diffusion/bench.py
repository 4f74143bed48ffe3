"""Timing and accuracy of the diffusion anonymizer on any backend: per frame, per stage, per graph.

The building blocks of benchmarks/engines_cpu.py and benchmarks/engines_gpu.py, tested on the CPU
with tiny models so that on a GPU the only unknown is the GPU.
"""

from __future__ import annotations

import numpy as np
import torch

from faceanon_video.engines import specs
from faceanon_video.engines.measure import StageTimer, latency_ms

from .anonymizer import DiffusionAnonymizer
from .graphs import graph_functions

__all__ = ["STAGES", "backend_inputs", "graph_latency_ms", "graph_outputs", "time_frames"]

#: The backend methods a frame's time is split by.
STAGES = ("encode_image", "vae_encode", "reference_states", "unet", "vae_decode")


def backend_inputs(backend, spec: specs.GraphSpec, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A spec's sample inputs on the backend's device, floats in its dtype (timesteps stay float32)."""
    return tuple(
        t.to(backend.device, t.dtype if i.name == "timestep" else backend.dtype)
        for t, i in zip(spec.sample_inputs(batch, seed), spec.inputs, strict=True)
    )


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


def time_frames(backend, settings, faces: int, repeats: int = 5, warmup: int = 1) -> dict:
    """The anonymizer's ``generate_float`` on ``faces`` random crops: median ms per frame, frames/s,
    faces/s, and one frame's time split by backend method (``stages_ms``). ``generate_float`` rather
    than ``generate``: random-weight models may output NaN, which the uint8 cast would warn about."""
    timer = StageTimer(backend, STAGES)
    anonymizer = DiffusionAnonymizer(timer, settings)
    size = anonymizer.size_px
    crops = np.random.default_rng(faces).integers(0, 256, (faces, size, size, 3), dtype=np.uint8)
    seeds = np.arange(faces, dtype=np.uint64)
    frame_ms = latency_ms(lambda: anonymizer.generate_float(crops, seeds), backend, repeats, warmup)
    timer.reset()
    split_frame_ms = latency_ms(lambda: anonymizer.generate_float(crops, seeds), backend, repeats=1, warmup=0)
    return {
        "frame_ms": frame_ms,
        "split_frame_ms": split_frame_ms,  # the wall time of the one frame ``stages_ms`` splits
        "fps": 1e3 / frame_ms,
        "faces_per_s": faces * 1e3 / frame_ms,
        "stages_ms": {m: timer.seconds[m] * 1e3 for m in STAGES},
        "unet_batch": faces * (2 if anonymizer.use_cfg else 1),
    }
