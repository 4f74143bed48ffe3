"""The diffusion anonymizer's models: stock diffusers/transformers classes, loaded from one directory.

Directory layout (the published ``hkung/face-anon-simple`` layout plus its base models)::

    MODEL_DIR/
      unet/                       UNet2DConditionModel (SD 2.1 architecture, v-prediction, 512 px)
      referencenet/               UNet2DConditionModel: source (identity) ReferenceNet
      conditioning_referencenet/  UNet2DConditionModel: conditioning (pose/expression) ReferenceNet
      vae/                        AutoencoderKL from SD 2.1
      scheduler/                  scheduler_config.json from SD 2.1 (DDIM/DDPM, v_prediction)
      image_encoder/              CLIPVisionModel from openai/clip-vit-large-patch14
      feature_extractor/          optional CLIPImageProcessor config (else one is built from
                                  image_encoder/config.json's image_size with CLIP's defaults)

Every size is read from these configs: the face crop side (UNet ``sample_size`` x the VAE's
downsampling), the CLIP input side (the processor's crop, which must equal the encoder's
``image_size``), the embedding width (``hidden_size`` = ``cross_attention_dim``) and the VAE
``scaling_factor``.

The published ReferenceNet configs name a ``ReferenceNetModel`` class; its weights and config keys
are those of ``UNet2DConditionModel``, so the stock class loads them (the recording is done by our
attention processors, see ``attention.py``).

Image encoder: the original feeds ``CLIPVisionModel(...).pooler_output`` (the post-layernorm CLS
token, 1024-d for ViT-L/14) as a (B, 1, 1024) "text" embedding. ``CLIPVisionModelWithProjection``
would give the 768-d projected ``image_embeds`` instead, which does not match the UNet's
``cross_attention_dim``; so the class is ``CLIPVisionModel`` and its ``hidden_size`` must equal the
UNet's ``cross_attention_dim``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel
from transformers.image_processing_utils import BaseImageProcessor

from faceanon_video.errors import ConfigError, ModelError

from .attention import install_readers, install_writers

__all__ = [
    "MODEL_DIR_ENV",
    "SD21_SCHEDULER_CONFIG",
    "FaceAnonModels",
    "RandomModelConfigs",
    "TINY",
    "GOLDEN_TINY",
    "SD21",
    "build_random_models",
    "clip_processor",
    "clip_processor_from_dict",
    "clip_pixels",
    "ReferenceStatesModule",
    "UNetWithReferences",
    "resolve_model_dir",
    "load_models",
    "save_models",
    "build_tiny_models",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the model directory when ``--model-dir`` is not given.
MODEL_DIR_ENV = "FACEANON_MODEL_DIR"

#: stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json (the values, not a copy of the
#: file: the repository was taken down upstream and these are all the scheduler needs).
SD21_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors",
            "pytorch_model.bin", "diffusion_pytorch_model.safetensors.index.json",
            "model.safetensors.index.json", "pytorch_model.bin.index.json")
_COMPONENTS = {
    "unet": "config.json",
    "referencenet": "config.json",
    "conditioning_referencenet": "config.json",
    "vae": "config.json",
    "image_encoder": "config.json",
    "scheduler": "scheduler_config.json",
}


@dataclass
class FaceAnonModels:
    """Everything the anonymizer runs, as stock classes (no processors installed yet)."""

    unet: UNet2DConditionModel
    referencenet: UNet2DConditionModel
    conditioning_referencenet: UNet2DConditionModel
    vae: AutoencoderKL
    image_encoder: CLIPVisionModel
    #: The base scheduler (its config); ``sampling.make_scheduler`` derives the sampler from it.
    scheduler: SchedulerMixin
    #: CLIP's image processor (``feature_extractor/``); None: built from the encoder's config.
    clip_processor: BaseImageProcessor | None = None

    def __post_init__(self) -> None:
        if self.clip_processor is None:
            self.clip_processor = clip_processor(self.image_encoder.config)
        crop = _crop_side(self.clip_processor)
        if crop != self.image_encoder.config.image_size:
            raise ModelError(
                f"feature_extractor crops CLIP inputs to {crop} px but image_encoder takes "
                f"{self.image_encoder.config.image_size} px"
            )
        cross_dim = self.unet.config.cross_attention_dim
        clip_dim = self.image_encoder.config.hidden_size
        if clip_dim != cross_dim:
            raise ModelError(
                f"image encoder hidden_size {clip_dim} != UNet cross_attention_dim {cross_dim}: the "
                "ReferenceNet scheme feeds CLIP's pooler output as the cross-attention context"
            )
        if self.unet.config.in_channels != self.vae.config.latent_channels:
            raise ModelError(
                f"UNet in_channels {self.unet.config.in_channels} != VAE latent_channels "
                f"{self.vae.config.latent_channels}"
            )

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size_px(self) -> int:
        """Side of the square face crop the UNet was trained on (512 for the published model)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def clip_image_size_px(self) -> int:
        return int(self.image_encoder.config.image_size)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def guidance_distilled(self) -> bool:
        """True for an LCM-style UNet that takes the guidance scale as an embedding (no CFG batch)."""
        return self.unet.config.time_cond_proj_dim is not None

    def modules(self) -> dict[str, nn.Module]:
        return {
            "unet": self.unet,
            "referencenet": self.referencenet,
            "conditioning_referencenet": self.conditioning_referencenet,
            "vae": self.vae,
            "image_encoder": self.image_encoder,
        }

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> FaceAnonModels:
        for module in self.modules().values():
            # Cast only when needed: diffusers warns on every ``to(dtype)``, even a no-op one.
            if dtype is not None and module.dtype != dtype:
                module.to(dtype=dtype)
            if device is not None:
                module.to(device=device)
            module.eval().requires_grad_(False)
        return self


class ReferenceStatesModule(nn.Module):
    """``forward(latents (B,4,h,w), embeds (B,1,D)) -> tuple`` of the ReferenceNet's used states.

    Runs the ReferenceNet at timestep 0 (as the original does) and returns the recorded
    self-attention inputs in ``self.sites`` order, each (B, tokens, channels). A pure function of
    its inputs, so it traces/exports to ONNX as one graph.
    """

    def __init__(self, refnet: UNet2DConditionModel) -> None:
        super().__init__()
        self.refnet = refnet
        self.store, self.sites = install_writers(refnet)

    def forward(self, latents: torch.Tensor, embeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.store.clear()
        timestep = torch.zeros((latents.shape[0],), dtype=latents.dtype, device=latents.device)
        # The ReferenceNet's own output (conv_out) is unused; only the recorded states matter.
        self.refnet(latents, timestep, encoder_hidden_states=embeds, return_dict=False)
        states = tuple(self.store.states[site] for site in self.sites)
        self.store.clear()  # don't keep the activations alive between calls
        return states

    def output_names(self) -> list[str]:
        return [f"state_{site.name}" for site in self.sites]


class UNetWithReferences(nn.Module):
    """The main UNet with reference self-attention, as a plain-tensor function.

    ``forward(sample (B,4,h,w), timestep (B,) or (), context (B,2,D), source_states, conditioning_states,
    timestep_cond (B,P) or None) -> (B,4,h,w)`` where the two state arguments are tuples in
    ``self.sites`` order (as returned by :class:`ReferenceStatesModule`, with batch B). The output is
    the model prediction (``v`` for the published model). ``input_names()`` gives flat ONNX names.
    """

    def __init__(self, unet: UNet2DConditionModel) -> None:
        super().__init__()
        self.unet = unet
        self.source, self.conditioning, self.sites = install_readers(unet)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        source_states: tuple[torch.Tensor, ...] | list[torch.Tensor],
        conditioning_states: tuple[torch.Tensor, ...] | list[torch.Tensor],
        timestep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if len(source_states) != len(self.sites) or len(conditioning_states) != len(self.sites):
            raise ValueError(
                f"expected {len(self.sites)} source and conditioning states, got "
                f"{len(source_states)} and {len(conditioning_states)}"
            )
        self.source.states.update(zip(self.sites, source_states))
        self.conditioning.states.update(zip(self.sites, conditioning_states))
        try:
            return self.unet(
                sample, timestep, encoder_hidden_states=context, timestep_cond=timestep_cond, return_dict=False
            )[0]
        finally:
            self.source.clear()
            self.conditioning.clear()

    def input_names(self) -> list[str]:
        names = ["sample", "timestep", "context"]
        names += [f"source_{site.name}" for site in self.sites]
        names += [f"conditioning_{site.name}" for site in self.sites]
        if self.unet.config.time_cond_proj_dim is not None:
            names.append("timestep_cond")
        return names


def resolve_model_dir(model_dir: str | os.PathLike | None) -> Path:
    """``model_dir``, else ``$FACEANON_MODEL_DIR``; ConfigError when neither names a directory."""
    if model_dir is None:
        model_dir = os.environ.get(MODEL_DIR_ENV) or None
    if model_dir is None:
        raise ConfigError(
            f"--mode diffusion needs its models: pass --model-dir DIR or set {MODEL_DIR_ENV} "
            "(get them once on a machine with internet: faceanon-video download-models --to DIR)"
        )
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"model directory {path} does not exist")
    return path


def model_image_size_px(model_dir: Path) -> int:
    """:attr:`FaceAnonModels.image_size_px` from the configs alone (without loading weights)."""
    unet = json.loads((Path(model_dir) / "unet" / "config.json").read_text())
    vae = json.loads((Path(model_dir) / "vae" / "config.json").read_text())
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def missing_components(model_dir: Path) -> list[str]:
    """The ``sub/file`` entries that a complete model directory has and ``model_dir`` lacks."""
    missing = []
    for sub, config_name in _COMPONENTS.items():
        if not (model_dir / sub / config_name).is_file():
            missing.append(f"{sub}/{config_name}")
        elif sub != "scheduler" and not any((model_dir / sub / w).is_file() for w in _WEIGHTS):
            missing.append(f"{sub}/ weights (*.safetensors or *.bin)")
    return missing


def load_models(model_dir: str | os.PathLike | None, dtype: torch.dtype = torch.float32) -> FaceAnonModels:
    """Load all models from a local directory (never downloads). Raises ConfigError/ModelError."""
    path = resolve_model_dir(model_dir)
    missing = missing_components(path)
    if missing:
        raise ModelError(
            f"model directory {path} is incomplete, missing: {', '.join(missing)} "
            "(see faceanon-video download-models --help)"
        )
    # Without accelerate, diffusers warns once per model that it cannot load "low_cpu_mem_usage";
    # saying so ourselves keeps loading quiet (accelerate is in the 'diffusion' extra: it loads the
    # SD-sized models faster and with less peak memory).
    low_memory = importlib.util.find_spec("accelerate") is not None
    kwargs = {"torch_dtype": dtype, "local_files_only": True, "low_cpu_mem_usage": low_memory}
    try:
        with _quiet_progress_bars():
            models = FaceAnonModels(
                unet=UNet2DConditionModel.from_pretrained(path / "unet", **kwargs),
                referencenet=UNet2DConditionModel.from_pretrained(path / "referencenet", **kwargs),
                conditioning_referencenet=UNet2DConditionModel.from_pretrained(
                    path / "conditioning_referencenet", **kwargs
                ),
                vae=AutoencoderKL.from_pretrained(path / "vae", **kwargs),
                image_encoder=CLIPVisionModel.from_pretrained(path / "image_encoder", dtype=dtype, local_files_only=True),
                scheduler=DDIMScheduler.from_pretrained(path / "scheduler", local_files_only=True),
                clip_processor=clip_processor(
                    CLIPVisionConfig.from_pretrained(path / "image_encoder", local_files_only=True),
                    path / "feature_extractor",
                ),
            )
    except (OSError, ValueError, KeyError, RuntimeError) as error:  # the loaders' ways of saying "bad file"
        raise ModelError(f"could not load the diffusion models from {path}: {error}") from error
    logger.info("loaded diffusion models from %s (%d px, dtype %s)", path, models.image_size_px, dtype)
    return models.to(dtype=dtype)


@contextlib.contextmanager
def _quiet_progress_bars():
    """No "Loading weights" bar from transformers (one per model, on every run)."""
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def save_models(models: FaceAnonModels, model_dir: str | os.PathLike) -> Path:
    """Write ``models`` in the layout ``load_models`` reads (safetensors)."""
    path = Path(model_dir)
    path.mkdir(parents=True, exist_ok=True)
    for sub, module in models.modules().items():
        module.save_pretrained(path / sub, safe_serialization=True)
    models.scheduler.save_pretrained(path / "scheduler")
    models.clip_processor.save_pretrained(path / "feature_extractor")
    return path


def _processor_class() -> type[BaseImageProcessor]:
    """CLIP's image processor on PIL (bicubic on uint8), the one the published pipeline ran.

    transformers 5 names it ``CLIPImageProcessorPil`` (``CLIPImageProcessor`` means the torchvision
    one there when torchvision is installed, whose resize differs); in transformers 4 the plain
    class is the PIL one.
    """
    try:
        from transformers import CLIPImageProcessorPil
    except ImportError:
        from transformers import CLIPImageProcessor as CLIPImageProcessorPil
    return CLIPImageProcessorPil


def clip_processor(encoder_config: CLIPVisionConfig, directory: Path | None = None) -> BaseImageProcessor:
    """``directory``'s ``preprocessor_config.json`` when there is one, else CLIP's defaults (shortest
    side to ``image_size``, bicubic, centre crop, OpenAI mean/std) at the encoder's ``image_size``."""
    cls = _processor_class()
    if directory is not None and (Path(directory) / "preprocessor_config.json").is_file():
        return cls.from_pretrained(directory, local_files_only=True)
    side = int(encoder_config.image_size)
    return cls(size={"shortest_edge": side}, crop_size={"height": side, "width": side})


def clip_processor_from_dict(config: dict) -> BaseImageProcessor:
    """The processor that ``processor.to_dict()`` describes (engine manifests carry it as JSON)."""
    return _processor_class().from_dict(config)


def _crop_side(processor: BaseImageProcessor) -> int:
    crop = processor.crop_size if processor.do_center_crop else processor.size
    sides = {v for k, v in dict(crop).items() if k in ("height", "width", "shortest_edge")}
    if len(sides) != 1:
        raise ModelError(f"the CLIP image processor must make square inputs, it makes {dict(crop)}")
    return int(sides.pop())


def clip_pixels(processor: BaseImageProcessor, crops_rgb: np.ndarray) -> torch.Tensor:
    """(n, S, S, 3) uint8 RGB -> (n, 3, s, s) float32 CLIP input, exactly as the image processor
    makes it (the original pipeline's own preprocessing; any other resize shifts CLIP's input)."""
    return processor(images=list(crops_rgb), return_tensors="pt")["pixel_values"]


@dataclass(frozen=True)
class RandomModelConfigs:
    """The constructor arguments of each part: random-weight models for tests and for timing without
    the weights (speed does not depend on weight values)."""

    unet: dict
    vae: dict
    clip: dict
    scheduler: dict = field(default_factory=lambda: dict(SD21_SCHEDULER_CONFIG))


def build_random_models(configs: RandomModelConfigs, seed: int = 0, device: str | torch.device = "cpu") -> FaceAnonModels:
    """Randomly initialised models (float32). Initialised in the order UNet, ReferenceNet,
    conditioning ReferenceNet, VAE, CLIP from ``torch.manual_seed(seed)``: with :data:`GOLDEN_TINY` this
    is bit-identical to the golden reference's ``make_tiny_model.py``. ``device``: where to
    initialise (a GPU initialises SD-sized models in seconds)."""
    torch.manual_seed(seed)
    with torch.device(device):
        unet, ref, cond_ref = (UNet2DConditionModel(**configs.unet) for _ in range(3))
        vae = AutoencoderKL(**configs.vae)
        clip = CLIPVisionModel(CLIPVisionConfig(**configs.clip))
    scheduler = DDIMScheduler(**configs.scheduler)
    return FaceAnonModels(unet, ref, cond_ref, vae, clip, scheduler).to(dtype=torch.float32)


def _sd_unet(sample_size: int, widths: tuple[int, ...], heads: tuple[int, ...], cross_attention_dim: int, **extra) -> dict:
    """An SD 2.x-layout UNet config: 4 levels, cross-attention in down 0-2, mid, up 1-3, two layers
    per block, linear projections; ``heads`` go to ``attention_head_dim`` as SD 2.x passes them."""
    return dict(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=widths,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=heads,
        use_linear_projection=True,
        **extra,
    )


def _tiny_unet(cross_attention_dim: int = 32, guidance_distilled: bool = False) -> dict:
    return _sd_unet(
        8, (16, 16, 32, 32), (2, 2, 4, 4), cross_attention_dim,
        norm_num_groups=8, time_cond_proj_dim=16 if guidance_distilled else None,
    )


#: 64 px faces -> 8x8 latents, 4-level UNets with cross-attention in down 0-2, mid, up 1-3 and two
#: attentions per block (so "only the first attention is read" is exercised), 32 px CLIP.
TINY = RandomModelConfigs(
    unet=_tiny_unet(),
    vae=dict(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    ),
    clip=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8),
)

#: The golden reference's tiny model (../shared/golden/make_tiny_model.py): 128 px by its config
#: (the golden ran it on 512 px crops), 3-level UNet, 32 px CLIP.
GOLDEN_TINY = RandomModelConfigs(
    unet=dict(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4, 4), use_linear_projection=True, norm_num_groups=8,
    ),
    vae=dict(
        block_out_channels=(16, 16, 32, 32), latent_channels=4, layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=128,
    ),
    clip=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
)

#: The published model's architecture: SD 2.1 UNet and ReferenceNets (865 M parameters each) at
#: 512 px (64x64 latents), SD VAE, CLIP ViT-L/14 vision (224 px, 1024-d): configs, no weights.
SD21 = RandomModelConfigs(
    unet=_sd_unet(64, (320, 640, 1280, 1280), (5, 10, 20, 20), 1024, upcast_attention=True),
    vae=dict(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
        scaling_factor=0.18215,
    ),
    clip=dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
    ),
)


def build_tiny_models(
    seed: int = 0, cross_attention_dim: int = 32, guidance_distilled: bool = False, clip_image_size_px: int = 32
) -> FaceAnonModels:
    """Random :data:`TINY` models (for tests and CPU benchmarks: outputs are noise-like, not faces).
    ``guidance_distilled`` sets ``time_cond_proj_dim`` (LCM-style guidance embedding)."""
    clip = dict(TINY.clip, hidden_size=cross_attention_dim, image_size=clip_image_size_px)
    return build_random_models(
        RandomModelConfigs(_tiny_unet(cross_attention_dim, guidance_distilled), TINY.vae, clip), seed
    )
