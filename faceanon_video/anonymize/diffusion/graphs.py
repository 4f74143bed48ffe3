"""The diffusion anonymizer as six graphs: their I/O specs, their functions, and the backend over them.

One graph per :class:`~.backend.DiffusionBackend` method (two for ``reference_states``).
:func:`probe_specs` learns every shape from one pass of the PyTorch models (so any model directory
the torch path loads can be exported), :func:`graph_functions` exposes each graph as a function of its
flat inputs (what export traces and what tests and benchmarks call), and :class:`GraphBackend` runs
the graphs of an engine directory through ``engines`` runners (ONNX Runtime, TensorRT).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from faceanon_video.engines import specs
from faceanon_video.engines.runtime import GraphRunner, run_graph
from faceanon_video.engines.specs import BATCH, GraphSpec, TensorSpec, renamed
from faceanon_video.errors import ModelError

from .models import clip_processor_from_dict

__all__ = [
    "GRAPH_NAMES",
    "CLIP_VISION",
    "VAE_ENCODER",
    "REFNET_SOURCE",
    "REFNET_CONDITIONING",
    "UNET",
    "VAE_DECODER",
    "REFNET_FOR",
    "build_graph_specs",
    "probe_specs",
    "graph_functions",
    "model_info",
    "GraphBackend",
]

# Graph names, in the order a denoising step uses them.
CLIP_VISION = "clip_vision"
VAE_ENCODER = "vae_encoder"
REFNET_SOURCE = "refnet_source"
REFNET_CONDITIONING = "refnet_conditioning"
UNET = "unet"
VAE_DECODER = "vae_decoder"
GRAPH_NAMES = (CLIP_VISION, VAE_ENCODER, REFNET_SOURCE, REFNET_CONDITIONING, UNET, VAE_DECODER)
REFNET_FOR = {"source": REFNET_SOURCE, "conditioning": REFNET_CONDITIONING}


def build_graph_specs(
    *,
    pixels: TensorSpec,
    pixels_clip: TensorSpec,
    embeds: TensorSpec,
    latents: TensorSpec,
    states: Sequence[TensorSpec],
    timestep_cond: TensorSpec | None = None,
    guidance_batch: bool = True,
) -> dict[str, GraphSpec]:
    """The six graphs of the anonymizer, from the shapes of the tensors that flow between them.

    ``embeds`` is one CLIP image embedding per face ``[B, 1, D]``; the UNet's context holds two of
    them ``[B, 2, D]``. The VAE encoder returns the posterior's scaled mean and std (``latents``'
    shape each). ``states`` are one ReferenceNet's outputs, named by attention site (both
    ReferenceNets share the architecture, so they share shapes); the graphs prefix the names with
    ``source_``/``conditioning_``, so a ReferenceNet's outputs and the UNet's inputs match by name.
    ``guidance_batch``: the UNet and ReferenceNets may see the doubled batch of classifier-free
    guidance (False for a guidance-distilled UNet that takes ``timestep_cond`` instead).
    """
    context = TensorSpec("context", (BATCH, 2, embeds.shape[-1]), embeds.dtype)
    timestep = TensorSpec("timestep", (BATCH,), "float32")

    def named_states(which: str) -> tuple[TensorSpec, ...]:
        return tuple(renamed(s, f"{which}_{s.name}") for s in states)

    graphs = {
        CLIP_VISION: GraphSpec(CLIP_VISION, (renamed(pixels_clip, "pixels_clip"),), (renamed(embeds, "embeds"),)),
        VAE_ENCODER: GraphSpec(
            VAE_ENCODER, (renamed(pixels, "pixels"),), (renamed(latents, "latents_mean"), renamed(latents, "latents_std"))
        ),
        UNET: GraphSpec(
            UNET,
            (
                renamed(latents, "sample"),
                timestep,
                context,
                *named_states("source"),
                *named_states("conditioning"),
                *((renamed(timestep_cond, "timestep_cond"),) if timestep_cond is not None else ()),
            ),
            (renamed(latents, "prediction"),),
            guidance_batch=guidance_batch,
        ),
        VAE_DECODER: GraphSpec(VAE_DECODER, (renamed(latents, "latents"),), (renamed(pixels, "pixels"),)),
    }
    for which, graph in REFNET_FOR.items():
        graphs[graph] = GraphSpec(
            graph,
            (renamed(latents, "latents"), renamed(embeds, "embeds")),
            named_states(which),
            guidance_batch=guidance_batch,
        )
    return {name: graphs[name] for name in GRAPH_NAMES}


def probe_specs(backend, image_size_px: int | None = None) -> dict[str, GraphSpec]:
    """Graph specs from one batch-1 pass of ``backend`` (a :class:`~.backend.TorchBackend`) on face
    crops of ``image_size_px`` (default: the model's).

    Running the models once is the simplest way to learn every state's token count and width for
    any ReferenceNet architecture; it costs one CLIP, VAE-encoder and ReferenceNet forward.
    """
    device, dtype = backend.device, backend.dtype
    size = image_size_px or backend.image_size_px
    clip_size = backend.models.clip_image_size_px
    pixels = torch.zeros(1, 3, size, size, device=device, dtype=dtype)
    pixels_clip = torch.zeros(1, 3, clip_size, clip_size, device=device, dtype=dtype)
    embeds = backend.encode_image(pixels_clip)
    latents, _ = backend.vae_encode(pixels)
    states = backend.reference_states(latents, embeds, "source")

    def spec(name: str, tensor: torch.Tensor) -> TensorSpec:
        return dataclasses.replace(TensorSpec.like(name, tensor), dtype="float32")

    cond_dim = backend.time_cond_proj_dim
    return build_graph_specs(
        pixels=spec("pixels", pixels),
        pixels_clip=spec("pixels_clip", pixels_clip),
        embeds=spec("embeds", embeds),
        latents=spec("latents", latents),
        states=[spec(site.name, s) for site, s in zip(backend.sites, states, strict=True)],
        timestep_cond=TensorSpec("timestep_cond", (BATCH, cond_dim)) if cond_dim else None,
        guidance_batch=cond_dim is None,
    )


def model_info(backend, image_size_px: int | None = None) -> dict:
    """What a graph backend needs besides the graphs (it has no PyTorch model to read them from)."""
    return {
        "image_size_px": image_size_px or backend.image_size_px,
        "clip_processor": backend.clip_processor.to_dict(),
        "time_cond_proj_dim": backend.time_cond_proj_dim,
        "sites": [site.name for site in backend.sites],
    }


def graph_functions(backend) -> dict[str, Callable[..., tuple[torch.Tensor, ...]]]:
    """Each graph of any ``DiffusionBackend`` as a function of the graph's flat inputs (in spec order)
    returning a tuple of outputs: what export traces, and how tests and benchmarks call one graph."""
    n = len(backend.sites)

    def unet(sample, timestep, context, *rest):
        timestep_cond = rest[2 * n] if len(rest) > 2 * n else None
        return (backend.unet(sample, timestep, context, list(rest[:n]), list(rest[n : 2 * n]), timestep_cond),)

    return {
        CLIP_VISION: lambda pixels_clip: (backend.encode_image(pixels_clip),),
        VAE_ENCODER: lambda pixels: tuple(backend.vae_encode(pixels)),
        REFNET_SOURCE: lambda latents, embeds: tuple(backend.reference_states(latents, embeds, "source")),
        REFNET_CONDITIONING: lambda latents, embeds: tuple(backend.reference_states(latents, embeds, "conditioning")),
        UNET: unet,
        VAE_DECODER: lambda latents: (backend.vae_decode(latents),),
    }


class GraphBackend:
    """``DiffusionBackend`` over six graph runners (see :data:`GRAPH_NAMES`), e.g. ONNX Runtime
    sessions or TensorRT engines. It stands in for ``TorchBackend`` the way StreamDiffusion's engine
    wrappers stand in for diffusers modules: the anonymizer does not know which one it holds."""

    name = "graphs"

    def __init__(
        self, engine_dir: Path, manifest: specs.Manifest, runners: Mapping[str, GraphRunner], device: torch.device
    ):
        missing = set(GRAPH_NAMES) - set(runners)
        if missing:
            raise ModelError(f"engine directory lacks graphs {sorted(missing)}; re-export")
        info = manifest.model_info
        if "clip_processor" not in info:
            raise ModelError(f"{engine_dir} was exported by an older version; re-export it")
        self.manifest = manifest
        self.runners = dict(runners)
        self.device = torch.device(device)
        self.dtype = torch.float32  # graph I/O is float32 whatever the precision inside
        self.image_size_px: int = info["image_size_px"]
        self.clip_processor = clip_processor_from_dict(info["clip_processor"])
        self.time_cond_proj_dim: int | None = info["time_cond_proj_dim"]
        self.sites = tuple(info["sites"])
        self.scheduler = _load_scheduler(Path(engine_dir) / "scheduler")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device}, precision={self.manifest.precision})"

    def encode_image(self, pixels_clip: torch.Tensor) -> torch.Tensor:
        return self._run(CLIP_VISION, pixels_clip)[0]

    def vae_encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self._run(VAE_ENCODER, pixels)
        return mean, std

    def reference_states(self, latents: torch.Tensor, embeds: torch.Tensor, which: str) -> list[torch.Tensor]:
        if which not in REFNET_FOR:
            raise ValueError(f"which must be one of {sorted(REFNET_FOR)}, got {which!r}")
        return list(self._run(REFNET_FOR[which], latents, embeds))

    def unet(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        context: torch.Tensor,
        source_states: Sequence[torch.Tensor],
        conditioning_states: Sequence[torch.Tensor],
        timestep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One denoising prediction; a scalar ``timestep`` applies to every row."""
        batch = sample.shape[0]
        timesteps = torch.as_tensor(timestep, dtype=torch.float32, device=self.device).reshape(-1)
        if timesteps.numel() == 1:
            timesteps = timesteps.expand(batch)
        takes_cond = "timestep_cond" in self.runners[UNET].spec.input_names
        if takes_cond != (timestep_cond is not None):
            raise ValueError(
                "this UNet graph " + ("needs" if takes_cond else "takes no") + " timestep_cond; "
                "the engines were exported from a different model than the one in use"
            )
        extra = (timestep_cond,) if timestep_cond is not None else ()
        return self._run(UNET, sample, timesteps, context, *source_states, *conditioning_states, *extra)[0]

    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._run(VAE_DECODER, latents)[0]

    def _run(self, graph: str, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return run_graph(self.runners[graph], inputs, self.device)


def _load_scheduler(path: Path):
    """The source model's scheduler (its config was copied at export), or None for the default."""
    if not (path / "scheduler_config.json").is_file():
        return None
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_pretrained(path, local_files_only=True)
