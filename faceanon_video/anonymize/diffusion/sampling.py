"""Few-step samplers: stock diffusers schedulers configured for 1-25 steps.

"trailing" timestep spacing starts sampling at the last training timestep (999), so even one or
two steps start from pure noise as the model was trained to; "leading" (SD 2.1's default) would
start at 751 with 4 steps, from a latent that still holds signal the sampler never had (Lin et al.
2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed").
"""

from __future__ import annotations

import inspect

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, LCMScheduler, UniPCMultistepScheduler
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from faceanon_video.errors import ConfigError

__all__ = ["SCHEDULERS", "canonical_scheduler_name", "make_scheduler", "guidance_embedding", "step_accepts_generator"]

#: name -> (class, config overrides). All deterministic except "lcm", which re-noises between
#: steps; its noise comes from the per-track generators, so it is repeatable too.
SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict]] = {
    # DDIM with eta=0: first-order, the most forgiving with 1-4 steps.
    "ddim": (DDIMScheduler, {"timestep_spacing": "trailing"}),
    # DPM-Solver++(2M): second order, better detail than DDIM at 6-20 steps.
    "dpmsolver++": (
        DPMSolverMultistepScheduler,
        {"timestep_spacing": "trailing", "algorithm_type": "dpmsolver++", "solver_order": 2},
    ),
    # UniPC (bh2): predictor-corrector, best at 5-10 steps in its paper (Zhao et al. 2023).
    "unipc": (UniPCMultistepScheduler, {"timestep_spacing": "trailing"}),
    # LCM multi-step sampling for a guidance-distilled (consistency) UNet, 1-4 steps.
    "lcm": (LCMScheduler, {"timestep_spacing": "trailing"}),
}


_ALIASES = {"dpmpp": "dpmsolver++", "dpm++": "dpmsolver++", "dpm-solver++": "dpmsolver++"}


def canonical_scheduler_name(name: str) -> str:
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")
    return name


def make_scheduler(base: SchedulerMixin, name: str) -> SchedulerMixin:
    """A new ``name`` scheduler with ``base``'s noise schedule and prediction type."""
    cls, overrides = SCHEDULERS[canonical_scheduler_name(name)]
    return cls.from_config(base.config, **overrides)


def guidance_embedding(guidance_scale: float, dim: int, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(batch, dim) embedding of ``guidance_scale`` for a guidance-distilled UNet's ``timestep_cond``.

    The LCM convention (Luo et al. 2023): embed ``w = guidance_scale - 1`` scaled by 1000 with the
    sinusoidal timestep embedding (sin first, frequencies exp(-ln(1e4) * k / (dim/2 - 1))).
    """
    w = torch.full((batch,), (guidance_scale - 1.0) * 1000.0, dtype=torch.float32, device=device)
    emb = get_timestep_embedding(w, dim, flip_sin_to_cos=False, downscale_freq_shift=1)
    return emb.to(dtype)


def step_accepts_generator(scheduler: SchedulerMixin) -> bool:
    return "generator" in inspect.signature(scheduler.step).parameters
