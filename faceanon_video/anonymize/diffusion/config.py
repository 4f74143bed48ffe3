"""Settings of the diffusion anonymizer, each with its trade-off."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from faceanon_video.errors import ConfigError

from .sampling import canonical_scheduler_name

__all__ = ["DiffusionSettings", "settings_from_config", "ANONYMIZE_DEGREE", "SWAP_DEGREE"]

_DTYPES = ("auto", "float32", "float16", "bfloat16")
#: The paper's default degrees: 1.25 to anonymize, 0 to swap in a donor identity as it is.
ANONYMIZE_DEGREE = 1.25
SWAP_DEGREE = 0.0


@dataclass
class DiffusionSettings:
    #: Denoising steps per frame. Cost is linear in steps; 4-8 with a trailing-spacing multistep
    #: sampler keeps identity and pose, 20+ adds fine skin texture. 1-4 for a distilled UNet.
    steps: int = 4
    #: "ddim" (the published pipeline's: DDIM, trailing spacing, eta 0; most robust at 1-4 steps),
    #: "dpmsolver++" (DPM-Solver++ 2M, sharper at 4-20 steps), "unipc", or "lcm" (for a
    #: guidance-distilled UNet). Only "ddim" is the published computation: at 4 steps the others
    #: change the golden outputs by up to 0.094/0.137 (dpmsolver++, anonymization/swap) and
    #: 0.144/0.203 (unipc). All deterministic given the seed.
    scheduler: str = "ddim"
    #: Classifier-free guidance weight. Higher follows the conditioning (pose, expression, light)
    #: and the push away from the identity more strongly, but saturates colours; 1 disables the
    #: unconditional pass (half the UNet work). Ignored in the CFG sense for a distilled UNet,
    #: which receives it as an embedding instead.
    guidance_scale: float = 4.0
    #: Anonymization degree d: 0 keeps the source identity, 1 removes the identity signal, >1
    #: extrapolates away from it. Higher is more anonymous and drifts further from the original's
    #: look (age, face shape). None: 1.25 (the paper's), or 0 in face-swap mode (the donor as is).
    degree: float | None = None
    #: Face-swap mode: the donor identity image. Every face gets this identity (degree 0 is usual).
    swap_source: Path | None = None
    #: Side of the aligned face crop; None = the UNet config's (sample_size x VAE factor). Other sizes work
    #: with the PyTorch backend only and degrade quality; exported engines have fixed sizes.
    image_size_px: int | None = None
    #: "cpu", "cuda", "cuda:1", or "auto" (CUDA when available). PyTorch backend only.
    device: str = "auto"
    #: "auto" = float16 on CUDA, float32 on CPU. PyTorch backend only.
    dtype: str = "auto"
    #: Exponential smoothing of each track's final latents across frames, in [0, 1). 0 = off.
    #: Higher removes residual texture shimmer but lags fast expression changes (ghosting).
    temporal_smoothing: float = 0.0
    #: How many frames a track's smoothing state survives without the track being seen.
    track_memory_frames: int = 30
    #: Base seed for faces without ``Detections.seed`` (the tracker normally supplies seeds).
    seed: int = 0
    #: Faces per model call. Larger batches are faster per face on a GPU but need more memory.
    max_batch_faces: int = 8
    #: Soft edge of the pasted face, as a fraction of the crop side. Wider hides seams better but
    #: keeps more of the original outline.
    mask_feather: float = 0.06
    #: Paste back through the face-mesh oval (``detect.landmarker``, needs the 'landmarks' extra) where
    #: the mesh model finds the face; the template egg shape otherwise. Costs ~5 ms per face on a CPU.
    face_mesh: bool = True
    #: Colour matching of the generated face to the original, 0 (off) to 1 (full mean/std match).
    colour_match: float = 1.0

    def __post_init__(self) -> None:
        self.scheduler = canonical_scheduler_name(self.scheduler)
        if self.swap_source is not None:
            self.swap_source = Path(self.swap_source)
        if self.degree is None:
            self.degree = ANONYMIZE_DEGREE if self.swap_source is None else SWAP_DEGREE
        if not 1 <= self.steps <= 1000:
            raise ConfigError(f"--steps must be in 1..1000, got {self.steps}")
        if self.guidance_scale < 0:
            raise ConfigError(f"--guidance-scale must be >= 0, got {self.guidance_scale}")
        if not -1 <= self.degree <= 3:
            raise ConfigError(f"--degree must be in -1..3 (0 keeps the identity, 1.25 default), got {self.degree}")
        if not 0 <= self.temporal_smoothing < 1:
            raise ConfigError(f"temporal_smoothing must be in [0, 1), got {self.temporal_smoothing}")
        if self.image_size_px is not None and (self.image_size_px < 8 or self.image_size_px % 8):
            raise ConfigError(f"image_size_px must be a positive multiple of 8, got {self.image_size_px}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        if self.max_batch_faces < 1 or self.track_memory_frames < 0:
            raise ConfigError("max_batch_faces must be >= 1 and track_memory_frames >= 0")
        if not 0 <= self.colour_match <= 1 or not 0 < self.mask_feather < 0.5:
            raise ConfigError("colour_match must be in [0, 1] and mask_feather in (0, 0.5)")


def settings_from_config(config) -> DiffusionSettings:
    """Settings from a ``RunConfig``-like object: same-named attributes, then ``config.extra``.

    ``extra`` carries the settings the CLI has no flag for (e.g. ``{"temporal_smoothing": 0.5}``
    in a JSON run file).
    """
    names = {f.name for f in fields(DiffusionSettings)}
    values = {name: getattr(config, name) for name in names if getattr(config, name, None) is not None}
    extra = getattr(config, "extra", None) or {}
    values.update({k: v for k, v in extra.items() if k in names})
    return DiffusionSettings(**values)
