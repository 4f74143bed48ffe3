"""The diffusion backend contract: five pure tensor functions the anonymizer calls, nothing else.

The anonymizer (``anonymizer.py``) only calls these methods plus a diffusers scheduler, so a
backend running exported ONNX / TensorRT graphs can replace :class:`TorchBackend` unchanged.
Each method is a pure function of its tensor inputs (no hidden state between calls), which is
what lets each be exported as one graph. Shapes (B = faces in the batch, D = CLIP hidden size =
UNet cross_attention_dim; H = W = face crop side; h = w = H / the VAE's downsampling; C = CLIP's
input side; all read from the model's configs)::

    encode_image(pixels_clip (B,3,C,C), made by ``clip_processor``)   -> (B,1,D)   CLIP pooler output
    vae_encode(pixels (B,3,H,W), RGB in [-1,1])                        -> (mean, std), each (B,4,h,w):
        the VAE posterior times scaling_factor; a latent sample is mean + std * eps (eps ~ N(0, 1))
    reference_states(latents (B,4,h,w), embeds (B,1,D), which)         -> list of S states (B, tokens_s, C_s)
        which: "source" (identity ReferenceNet) or "conditioning" (pose/expression ReferenceNet);
        S = 7 for SD 2.1: down 0-2, mid, up 1-3 (``TorchBackend.sites``), tokens_s = h*w/4**level.
    unet(sample (B,4,h,w), timestep (B,) or (), context (B,2,D), source_states, conditioning_states,
         timestep_cond (B,P) or None)                                  -> (B,4,h,w) model output (v)
    vae_decode(latents (B,4,h,w), scaled)                              -> (B,3,H,W) RGB in [-1,1]

dtypes: every tensor is the backend's ``dtype`` (float32 on CPU, float16 typical on GPU), on its
``device``; ``timestep`` may be float or int64. The backend does not hold gradients.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from transformers.image_processing_utils import BaseImageProcessor

from .models import FaceAnonModels, ReferenceStatesModule, UNetWithReferences

__all__ = ["DiffusionBackend", "TorchBackend", "REFERENCE_KINDS"]

REFERENCE_KINDS = ("source", "conditioning")


@runtime_checkable
class DiffusionBackend(Protocol):
    """See the module docstring for shapes and dtypes."""

    device: torch.device
    dtype: torch.dtype
    #: Side of the square face crop the models expect (from the UNet and VAE configs).
    image_size_px: int
    #: CLIP's image processor (``feature_extractor/``): uint8 crops -> ``encode_image``'s input.
    clip_processor: BaseImageProcessor
    #: ``time_cond_proj_dim`` of a guidance-distilled UNet, else None (then CFG uses a 2x batch).
    time_cond_proj_dim: int | None

    def encode_image(self, pixels_clip: torch.Tensor) -> torch.Tensor: ...

    def vae_encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def reference_states(self, latents: torch.Tensor, embeds: torch.Tensor, which: str) -> list[torch.Tensor]: ...

    def unet(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        context: torch.Tensor,
        source_states: list[torch.Tensor],
        conditioning_states: list[torch.Tensor],
        timestep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor: ...

    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor: ...


class TorchBackend:
    """Runs the diffusers/transformers modules eagerly in PyTorch (CPU or CUDA)."""

    def __init__(self, models: FaceAnonModels, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.models = models.to(device=device, dtype=dtype)
        self.device = torch.device(device)
        self.dtype = dtype
        self.image_size_px = models.image_size_px
        self.clip_processor = models.clip_processor
        self.time_cond_proj_dim = models.unet.config.time_cond_proj_dim
        #: The base noise schedule (not part of the protocol: graph backends use the SD 2.1 default).
        self.scheduler = models.scheduler
        self.scaling_factor = models.scaling_factor
        self._references = {
            "source": ReferenceStatesModule(models.referencenet),
            "conditioning": ReferenceStatesModule(models.conditioning_referencenet),
        }
        self._unet = UNetWithReferences(models.unet)
        self.sites = self._unet.sites
        if self._references["source"].sites != self.sites:
            raise ValueError("ReferenceNet and UNet architectures differ: their attention sites do not match")

    def __repr__(self) -> str:
        return f"TorchBackend(device={self.device}, dtype={self.dtype}, {self.image_size_px} px)"

    @torch.inference_mode()
    def encode_image(self, pixels_clip: torch.Tensor) -> torch.Tensor:
        return self.models.image_encoder(pixel_values=pixels_clip).pooler_output.unsqueeze(1)

    @torch.inference_mode()
    def vae_encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The posterior's parameters, not a sample: the caller draws eps from the face's own
        # generator, so the sample is repeatable per track and the graph has no random op.
        posterior = self.models.vae.encode(pixels).latent_dist
        return posterior.mean * self.scaling_factor, posterior.std * self.scaling_factor

    @torch.inference_mode()
    def reference_states(self, latents: torch.Tensor, embeds: torch.Tensor, which: str) -> list[torch.Tensor]:
        if which not in self._references:
            raise ValueError(f"which must be one of {REFERENCE_KINDS}, got {which!r}")
        return list(self._references[which](latents, embeds))

    @torch.inference_mode()
    def unet(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        context: torch.Tensor,
        source_states: list[torch.Tensor],
        conditioning_states: list[torch.Tensor],
        timestep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if not torch.is_tensor(timestep):
            timestep = torch.tensor(timestep, device=sample.device)
        return self._unet(sample, timestep, context, source_states, conditioning_states, timestep_cond)

    @torch.inference_mode()
    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.models.vae.decode(latents / self.scaling_factor, return_dict=False)[0]
