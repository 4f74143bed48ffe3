"""The diffusion backend over exported graphs: what ONNX Runtime and TensorRT share.

:class:`GraphBackend` implements the anonymizer's ``DiffusionBackend`` methods (torch tensors in
and out) by running one graph per method; subclasses only say how to run one graph
(:class:`GraphRunner`). It stands in for ``TorchBackend`` the way StreamDiffusion's engine wrappers
stand in for diffusers modules: the anonymizer does not know which one it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch

from faceanon_video.engines import specs
from faceanon_video.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)


class GraphRunner(Protocol):
    """Runs one graph: inputs in the spec's order, outputs in the spec's order, on one device."""

    spec: specs.GraphSpec
    max_batch: int | None
    """Largest batch one call accepts (a TensorRT profile's max), None for no limit."""

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]: ...


class GraphBackend:
    """``DiffusionBackend`` over six graph runners (see :data:`specs.GRAPH_NAMES`).

    Batches larger than a runner's ``max_batch`` are split and run in chunks, so a frame with more
    faces than the engines were built for is slower but still anonymized.
    """

    name = "graphs"

    def __init__(
        self, engine_dir: Path, manifest: specs.Manifest, runners: Mapping[str, GraphRunner], device: torch.device
    ):
        missing = set(specs.GRAPH_NAMES) - set(runners)
        if missing:
            raise ModelError(f"engine directory lacks graphs {sorted(missing)}; re-export")
        self.manifest = manifest
        self.runners = dict(runners)
        self.device = torch.device(device)
        self.dtype = torch.float32  # graph I/O is float32 whatever the precision inside
        info = manifest.model_info
        self.image_size_px: int = info["image_size_px"]
        self.clip_image_size_px: int = info["clip_image_size_px"]
        self.clip_mean = tuple(info["clip_mean"])
        self.clip_std = tuple(info["clip_std"])
        self.time_cond_proj_dim: int | None = info["time_cond_proj_dim"]
        self.sites = tuple(info["sites"])
        self.scheduler = _load_scheduler(Path(engine_dir) / "scheduler")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device}, precision={self.manifest.precision})"

    # The DiffusionBackend methods ---------------------------------------------------------------

    def encode_image(self, pixels_clip: torch.Tensor) -> torch.Tensor:
        """CLIP-normalised face crops ``[B,3,224,224]`` -> image embeddings ``[B,1,D]``."""
        return self._run(specs.CLIP_VISION, pixels_clip)[0]

    def vae_encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Face crops in [-1, 1] ``[B,3,H,W]`` -> scaled latents ``[B,4,h,w]``."""
        return self._run(specs.VAE_ENCODER, pixels)[0]

    def reference_states(self, latents: torch.Tensor, embeds: torch.Tensor, which: str) -> list[torch.Tensor]:
        """One ReferenceNet at timestep 0 -> its 7 attention states. ``which``: source|conditioning."""
        if which not in specs.REFNET_FOR:
            raise ValueError(f"which must be one of {sorted(specs.REFNET_FOR)}, got {which!r}")
        return list(self._run(specs.REFNET_FOR[which], latents, embeds))

    def unet(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        context: torch.Tensor,
        source_states: Sequence[torch.Tensor],
        conditioning_states: Sequence[torch.Tensor],
        timestep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One denoising prediction ``[B,4,h,w]``; a scalar ``timestep`` applies to every row."""
        batch = sample.shape[0]
        timesteps = torch.as_tensor(timestep, dtype=torch.float32, device=self.device).reshape(-1)
        if timesteps.numel() == 1:
            timesteps = timesteps.expand(batch)
        takes_cond = "timestep_cond" in self.runners[specs.UNET].spec.input_names
        if takes_cond != (timestep_cond is not None):
            raise ValueError(
                "this UNet graph " + ("needs" if takes_cond else "takes no") + " timestep_cond; "
                "the engines were exported from a different model than the one in use"
            )
        extra = (timestep_cond,) if timestep_cond is not None else ()
        return self._run(specs.UNET, sample, timesteps, context, *source_states, *conditioning_states, *extra)[0]

    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[B,4,h,w]`` -> pixels in [-1, 1] ``[B,3,H,W]``."""
        return self._run(specs.VAE_DECODER, latents)[0]

    # Running one graph ----------------------------------------------------------------------------

    def _run(self, graph: str, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        runner = self.runners[graph]
        inputs = tuple(self._prepare(t, spec) for t, spec in zip(inputs, runner.spec.inputs, strict=True))
        batch = inputs[0].shape[0]
        limit = runner.max_batch
        if limit is None or batch <= limit:
            return runner(*inputs)
        logger.debug("%s: batch %d over the engine's %d, running in chunks", graph, batch, limit)
        chunks = [runner(*(t[i : i + limit] for t in inputs)) for i in range(0, batch, limit)]
        return tuple(torch.cat(parts) for parts in zip(*chunks, strict=True))

    def _prepare(self, tensor: torch.Tensor, spec: specs.TensorSpec) -> torch.Tensor:
        """Checks a tensor against its spec and makes it contiguous, on our device, in the spec's dtype."""
        if tuple(tensor.shape[1:]) != tuple(spec.shape[1:]):
            raise ValueError(
                f"{spec.name}: expected shape {list(spec.shape)}, got {list(tensor.shape)} "
                "(only the batch may change; other sizes are fixed at export)"
            )
        return tensor.to(device=self.device, dtype=spec.torch_dtype).contiguous()


def graph_functions(backend) -> dict[str, Callable[..., tuple[torch.Tensor, ...]]]:
    """Each graph of any ``DiffusionBackend`` as a function of the graph's flat inputs (in spec order)
    returning a tuple of outputs: what export traces, and how tests and benchmarks call one graph."""
    n = len(backend.sites)

    def unet(sample, timestep, context, *rest):
        timestep_cond = rest[2 * n] if len(rest) > 2 * n else None
        return (backend.unet(sample, timestep, context, list(rest[:n]), list(rest[n : 2 * n]), timestep_cond),)

    return {
        specs.CLIP_VISION: lambda pixels_clip: (backend.encode_image(pixels_clip),),
        specs.VAE_ENCODER: lambda pixels: (backend.vae_encode(pixels),),
        specs.REFNET_SOURCE: lambda latents, embeds: tuple(backend.reference_states(latents, embeds, "source")),
        specs.REFNET_CONDITIONING: lambda latents, embeds: tuple(
            backend.reference_states(latents, embeds, "conditioning")
        ),
        specs.UNET: unet,
        specs.VAE_DECODER: lambda latents: (backend.vae_decode(latents),),
    }


def _load_scheduler(path: Path):
    """The source model's scheduler (its config was copied at export), or None for the default."""
    if not (path / "scheduler_config.json").is_file():
        return None
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_pretrained(path, local_files_only=True)


def load_manifest(engine_dir: Path | str | None) -> specs.Manifest:
    """The manifest of an engine directory, with a clear error when there is none."""
    if engine_dir is None:
        raise ConfigError("no engine directory given: pass --engine-dir (made by `faceanon-video export`)")
    return specs.Manifest.load(Path(engine_dir))
