"""``DiffusionAnonymizer``: replaces each face with a generated one that keeps pose and expression.

The method of "Face Anonymization Made Simple" (Kung et al., WACV 2025), made a video tool:

* the published computation (:meth:`DiffusionAnonymizer.generate_float` matches the original
  pipeline to 1e-5 on the golden reference, tests/data/golden): CLIPImageProcessor's preprocessing,
  VAE posterior *samples* for both references, DDIM trailing, the original's guidance;
* every random draw for a face (both posterior samples and the initial noise) comes from its
  track's seed, in the original's order, so one person keeps one fake identity across frames
  instead of a new one per frame (a fixed sample is as steady as the posterior mean);
* few steps (trailing timestep spacing) and batched faces instead of 200 steps per image;
* reference states once per frame (not per step), the input-independent null states once per run,
  the donor's CLIP embedding and VAE posterior once per run in face-swap mode.

Only the :class:`~.backend.DiffusionBackend` methods and a diffusers scheduler are called, so the
same code runs on PyTorch, ONNX Runtime or TensorRT.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from diffusers import DDIMScheduler

from faceanon_video.detect.landmarker import MESH_KEY, FaceMesher, landmarker_available
from faceanon_video.errors import ConfigError, FaceanonError, ModelError
from faceanon_video.types import Detections, Frame

from .align import align_faces, face_mask, match_colour, mesh_face_mask, paste_faces
from .backend import DiffusionBackend
from .backends import load_backend
from .config import DiffusionSettings, settings_from_config
from .models import SD21_SCHEDULER_CONFIG, clip_pixels
from .sampling import guidance_embedding, make_scheduler, step_accepts_generator

__all__ = ["DiffusionAnonymizer", "face_seeds", "build_backend", "build_diffusion_anonymizer"]

logger = logging.getLogger(__name__)

_SEED_MASK = (1 << 64) - 1
States = list[torch.Tensor]


def face_seeds(faces: Detections, base_seed: int = 0) -> np.ndarray:
    """(n,) uint64: the tracker's ``Detections.seed``, else one derived from ``track_id``.

    Faces without either get seeds from their index in the frame: deterministic, but a face then
    only keeps its identity while the detector lists it at the same position.
    """
    if faces.seed is not None:
        return faces.seed
    ids = faces.track_id if faces.track_id is not None else np.arange(len(faces))
    return np.array(
        [np.random.SeedSequence([base_seed & _SEED_MASK, int(i) & _SEED_MASK]).generate_state(1, np.uint64)[0] for i in ids],
        dtype=np.uint64,
    )


class DiffusionAnonymizer:
    """``apply(frame, faces) -> Frame`` with generated faces; see the module docstring.

    ``detect`` finds the donor face in ``settings.swap_source`` (a ``Detector.detect``); without
    it the donor image is taken as an already aligned crop.
    """

    def __init__(
        self,
        backend: DiffusionBackend,
        settings: DiffusionSettings | None = None,
        detect: Callable[[np.ndarray], Detections] | None = None,
        mesher: FaceMesher | None = None,
    ) -> None:
        self.backend = backend
        #: Optional dense landmarker: its face oval makes a tighter paste-back mask than the template.
        self.mesher = mesher
        self.settings = settings = settings or DiffusionSettings()
        self.size_px = settings.image_size_px or backend.image_size_px
        if self.size_px != backend.image_size_px:
            logger.warning("face crops of %d px for a model trained at %d px", self.size_px, backend.image_size_px)
        base = getattr(backend, "scheduler", None) or DDIMScheduler(**SD21_SCHEDULER_CONFIG)
        self.scheduler = make_scheduler(base, settings.scheduler)
        self.distilled = backend.time_cond_proj_dim is not None
        # A distilled UNet was trained with guidance baked in: no unconditional pass.
        self.use_cfg = settings.guidance_scale > 1.0 and not self.distilled
        self.mask = face_mask(self.size_px, settings.mask_feather)
        self._null_states: States | None = None
        self._donor_encoded: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._memory: dict[int, tuple[int, torch.Tensor]] = {}  # track id -> (frame index, latents)
        self._lock = threading.Lock()  # the scheduler and caches are per instance
        self._donor_crop = None
        if settings.swap_source is not None:
            self._donor_crop = load_donor_crop(settings.swap_source, self.size_px, detect)

    def check(self) -> None:
        """One one-step generation on a blank crop: raises :class:`ModelError` (one line) when the
        models cannot run here (a size mismatch between the parts, an engine built for another
        model, NaN output), so a run stops before its first frame instead of obscuring every frame."""
        blank = np.full((1, self.size_px, self.size_px, 3), 128, np.uint8)
        try:
            image = self.generate_float(blank, np.zeros(1, np.uint64), steps=1)
        except FaceanonError:
            raise
        except Exception as error:  # noqa: BLE001 - torch/ORT/TensorRT each raise their own types
            lines = str(error).strip().splitlines() or [type(error).__name__]
            raise ModelError(f"the diffusion anonymizer cannot run on this model: {lines[0]}") from error
        if not np.isfinite(image).all():
            raise ModelError("the diffusion anonymizer produced NaN/inf on a test crop (fp16 overflow or bad weights?)")
        self.reset()

    def reset(self) -> None:
        """Forget per-track smoothing state (between videos)."""
        self._memory.clear()

    def apply(self, frame: Frame, faces: Detections) -> Frame:
        if len(faces) == 0:
            return frame
        with self._lock:
            # 1. Align every face to the model's crop (BGR crops; the models take RGB).
            aligned = align_faces(frame.bgr, faces, self.size_px)
            crops_rgb = np.ascontiguousarray(aligned.pixels[..., ::-1])
            seeds = face_seeds(faces, self.settings.seed)
            track_ids = faces.track_id if faces.track_id is not None else [None] * len(faces)
            # 2. Generate in batches of at most max_batch_faces.
            step = self.settings.max_batch_faces
            generated = np.concatenate(
                [
                    self.generate(crops_rgb[i : i + step], seeds[i : i + step], track_ids[i : i + step], frame.index)
                    for i in range(0, len(faces), step)
                ]
            )
            # 3. Colour-match and paste back through each face's feathered mask: the face-mesh oval
            #    where a mesh is available, the template egg shape otherwise.
            masks = self._masks(frame.bgr, faces, aligned.frame_to_crop)
            strength = self.settings.colour_match
            matched = np.stack([match_colour(g, o, m, strength) for g, o, m in zip(generated, crops_rgb, masks)])
            bgr = paste_faces(frame.bgr, matched[..., ::-1], aligned.frame_to_crop, masks)
        return frame.with_image(bgr)

    def _masks(self, bgr: np.ndarray, faces: Detections, frame_to_crop: np.ndarray) -> np.ndarray:
        meshes = None
        if self.mesher is not None:
            meshes = self.mesher.add_meshes(bgr, faces).data.get(MESH_KEY)
        masks = []
        for i in range(len(faces)):
            mesh_mask = None if meshes is None else mesh_face_mask(meshes[i], frame_to_crop[i], self.size_px, self.settings.mask_feather)
            masks.append(self.mask if mesh_mask is None else mesh_mask)
        return np.stack(masks)

    def generate(self, crops_rgb: np.ndarray, seeds: np.ndarray, track_ids=None, frame_index: int = 0) -> np.ndarray:
        """(n, S, S, 3) uint8 RGB aligned faces -> (n, S, S, 3) uint8 RGB generated faces."""
        images = self.generate_float(crops_rgb, seeds, track_ids, frame_index)
        return np.rint(images * 255).astype(np.uint8)

    @torch.inference_mode()
    def generate_float(
        self,
        crops_rgb: np.ndarray,
        seeds: np.ndarray,
        track_ids=None,
        frame_index: int = 0,
        *,
        noise_seeds: np.ndarray | None = None,
        steps: int | None = None,
    ) -> np.ndarray:
        """(n, S, S, 3) uint8 RGB aligned faces -> (n, S, S, 3) float32 RGB in [0, 1] generated faces.

        The published pipeline's computation (Kung et al.'s ``StableDiffusionReferenceNetPipeline``),
        with every random draw of face ``i`` from ``torch.Generator().manual_seed(seeds[i])`` in the
        original's order: the VAE posterior sample of the source (identity) reference, the one of the
        conditioning reference (in anonymization mode both encode the face itself; in face-swap mode
        the first encodes the donor), then the initial noise. ``noise_seeds``: draw the initial noise
        from separate generators with these seeds instead (how the golden reference was made);
        ``steps`` overrides ``settings.steps``.
        """
        backend, settings = self.backend, self.settings
        n = len(crops_rgb)
        track_ids = [None] * n if track_ids is None else track_ids
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

        # 1. Encode the faces: CLIP embeddings and the VAE posterior (mean, std) of each.
        embeds, (mean, std) = self._encode(crops_rgb)

        # 2. Draws 1 and 2: latent samples of the source and conditioning references.
        eps_source, eps_conditioning = (self._randn(generators, mean.shape[1:]) for _ in range(2))
        if self._donor_crop is not None:
            donor_embeds, (donor_mean, donor_std) = self._donor()
            source_embeds = donor_embeds.expand(n, -1, -1)
            source_latents = donor_mean + donor_std * eps_source
        else:
            source_embeds, source_latents = embeds, mean + std * eps_source
        cond_latents = mean + std * eps_conditioning

        # 3. Draw 3: per-track initial noise, the same starting point for a face in every frame.
        if noise_seeds is not None:
            generators = [torch.Generator().manual_seed(int(seed)) for seed in noise_seeds]
        latents = self._randn(generators, mean.shape[1:]) * self.scheduler.init_noise_sigma

        # 4. The references: conditioning (pose, expression, light, background) and the identity,
        #    pushed away from the source by the degree. The ReferenceNets run once, at timestep 0.
        cond_states = backend.reference_states(cond_latents, embeds, "conditioning")
        null_states = self._null(mean, embeds)
        source_embeds, source_states = self._mix(source_latents, source_embeds, null_states)

        # 5. The model's batch: [unconditional, conditional] with classifier-free guidance.
        context = torch.cat([source_embeds, embeds], dim=1)
        if self.use_cfg:
            # Unconditional = null identity (zero latents/embedding), same conditioning.
            context = torch.cat([torch.cat([torch.zeros_like(source_embeds), embeds], dim=1), context])
            source_states = [torch.cat([z.expand(n, -1, -1), s]) for z, s in zip(null_states, source_states)]
            cond_states = [torch.cat([c, c]) for c in cond_states]
        timestep_cond = None
        if self.distilled:
            timestep_cond = guidance_embedding(
                settings.guidance_scale, backend.time_cond_proj_dim, n, backend.dtype, backend.device
            )

        # 6. Denoise.
        scheduler = self.scheduler
        scheduler.set_timesteps(steps or settings.steps, device=backend.device)
        step_kwargs = {"generator": generators} if step_accepts_generator(scheduler) else {}
        g = settings.guidance_scale
        for t in scheduler.timesteps:
            model_input = torch.cat([latents, latents]) if self.use_cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            prediction = backend.unet(
                model_input, t.expand(model_input.shape[0]), context, source_states, cond_states, timestep_cond
            )
            if self.use_cfg:
                uncond, cond = prediction.chunk(2)
                prediction = (1 - g) * uncond + g * cond  # the original's form (same value, same rounding)
            latents = scheduler.step(prediction, t, latents, return_dict=False, **step_kwargs)[0]

        # 7. Smooth along each track, then decode.
        latents = self._smooth(latents, track_ids, frame_index)
        images = backend.vae_decode(latents.to(backend.dtype)).float()
        images = (images / 2 + 0.5).clamp_(0, 1)
        return images.permute(0, 2, 3, 1).cpu().numpy()

    # Helpers ----------------------------------------------------------------------------------------

    def _encode(self, crops_rgb: np.ndarray) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """uint8 RGB crops -> (CLIP embeddings (n,1,D), VAE posterior (mean, std) each (n,4,h,w))."""
        backend = self.backend
        clip = clip_pixels(backend.clip_processor, crops_rgb)
        embeds = backend.encode_image(clip.to(backend.device, backend.dtype))
        # The VAE input as the original's VaeImageProcessor makes it: uint8 / 255 in float32, then 2x - 1.
        pixels = torch.tensor(crops_rgb).permute(0, 3, 1, 2).float() / 255
        mean, std = backend.vae_encode((pixels * 2 - 1).to(backend.device, backend.dtype))
        return embeds, (mean, std)

    def _randn(self, generators: list[torch.Generator], shape) -> torch.Tensor:
        """One draw per face from its own generator (on the CPU, so every device draws the same)."""
        draws = torch.cat([torch.randn((1, *shape), generator=g) for g in generators])
        return draws.to(self.backend.device, self.backend.dtype)

    def _null(self, latents: torch.Tensor, embeds: torch.Tensor) -> States:
        """Source states of "no identity" (zero latents and embedding), batch 1; computed once."""
        if self._null_states is None or self._null_states[0].dtype != latents.dtype:
            self._null_states = self.backend.reference_states(
                torch.zeros_like(latents[:1]), torch.zeros_like(embeds[:1]), "source"
            )
        return self._null_states

    def _mix(self, source_latents, source_embeds, null_states) -> tuple[torch.Tensor, States]:
        """The conditional half's identity: embedding (1-d)*e, states (1-d)*real + d*null.

        As in the paper, the real states are computed from the already scaled embedding.
        """
        d = self.settings.degree
        embeds = (1.0 - d) * source_embeds
        if d == 1.0:  # the real states would be multiplied by zero: skip the ReferenceNet
            return embeds, [z.expand(len(source_latents), -1, -1) for z in null_states]
        real = self.backend.reference_states(source_latents, embeds, "source")
        if d == 0.0:
            return embeds, real
        return embeds, [(1.0 - d) * r + d * z for r, z in zip(real, null_states)]

    def _donor(self) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The donor's (1, ...) CLIP embedding and VAE posterior, computed on first use. Its latent
        sample (and so its ReferenceNet states) is drawn per face, as the original does per call."""
        if self._donor_encoded is None:
            self._donor_encoded = self._encode(self._donor_crop[None])
        return self._donor_encoded

    def _smooth(self, latents: torch.Tensor, track_ids, frame_index: int) -> torch.Tensor:
        """Exponential moving average of each track's final latents (aligned space), if enabled."""
        alpha = self.settings.temporal_smoothing
        if alpha <= 0:
            return latents
        memory = self.settings.track_memory_frames
        latents = latents.clone()
        for i, track_id in enumerate(track_ids):
            if track_id is None:
                continue
            key = int(track_id)
            previous = self._memory.get(key)
            if previous is not None and 0 < frame_index - previous[0] <= memory:
                latents[i] = (1 - alpha) * latents[i] + alpha * previous[1]
            self._memory[key] = (frame_index, latents[i].clone())
        stale = [k for k, (index, _) in self._memory.items() if not 0 <= frame_index - index <= memory]
        for key in stale:
            del self._memory[key]
        return latents


def load_donor_crop(path: Path, size_px: int, detect: Callable[[np.ndarray], Detections] | None) -> np.ndarray:
    """The donor face of ``path`` as an aligned (S, S, 3) RGB crop (the largest face found)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"cannot read the swap source image {path}")
    if detect is None:
        crop = cv2.resize(bgr, (size_px, size_px), interpolation=cv2.INTER_AREA)
    else:
        faces = detect(bgr)
        if len(faces) == 0:
            raise ConfigError(f"no face found in the swap source image {path}")
        largest = int(np.argmax(faces.widths * faces.heights))
        crop = align_faces(bgr, faces[largest], size_px).pixels[0]
    return np.ascontiguousarray(crop[..., ::-1])


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name} requested but CUDA is not available")
    return device


def _resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def build_backend(config, settings: DiffusionSettings) -> DiffusionBackend:
    """The backend named by ``config.backend`` (auto|torch|onnx|tensorrt); see ``backends``.

    auto takes the fastest one available (TensorRT > ONNX Runtime on a GPU > PyTorch on a GPU >
    ONNX Runtime on the CPU > PyTorch on the CPU), warning about each it skips; a named backend
    never falls back.
    """
    device = _resolve_device(settings.device)
    return load_backend(
        getattr(config, "backend", None) or "auto",
        model_dir=getattr(config, "model_dir", None),
        engine_dir=getattr(config, "engine_dir", None),
        device=device,
        dtype=_resolve_dtype(settings.dtype, device),
    )


def build_diffusion_anonymizer(config, detect: Callable[[np.ndarray], Detections] | None = None) -> DiffusionAnonymizer:
    """The anonymizer for ``--mode diffusion`` from a ``RunConfig``-like object.

    Reads ``model_dir`` (or $FACEANON_MODEL_DIR), ``engine_dir``, ``backend`` and the settings of
    :class:`DiffusionSettings` (same names; extras from ``config.extra``).
    """
    settings = settings_from_config(config)
    backend = build_backend(config, settings)
    if settings.swap_source is not None and detect is None:
        from faceanon_video.detect import build_detector

        detect = build_detector(getattr(config, "detector", "yunet") or "yunet").detect
    mesher = None
    if settings.face_mesh and landmarker_available():
        mesher = FaceMesher()
    elif settings.face_mesh:
        logger.info("no LiteRT (the 'landmarks' extra): pasting faces back through the template face shape")
    anonymizer = DiffusionAnonymizer(backend, settings, detect=detect, mesher=mesher)
    anonymizer.check()  # fail before the first frame, not on every frame
    return anonymizer
