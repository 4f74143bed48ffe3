"""Fixtures: tiny random diffusion models (64 px faces, 8x8 latents) and real faces from carphone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

DATA = Path(__file__).resolve().parents[2] / "data"
CARPHONE = DATA / "carphone_pristine.mp4"  # 176x144, 120 frames, one face of ~50 px


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models are dominated by per-op overhead; two OpenMP threads on a shared 2-core box are
    slower than one (measured 10x under load), so the tests run single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_models():
    from faceanon_video.anonymize.diffusion.models import build_tiny_models

    return build_tiny_models(seed=0)


@pytest.fixture(scope="session")
def backend(tiny_models):
    from faceanon_video.anonymize.diffusion.backend import TorchBackend

    return TorchBackend(tiny_models)


@pytest.fixture(scope="session")
def distilled_backend():
    from faceanon_video.anonymize.diffusion.backend import TorchBackend
    from faceanon_video.anonymize.diffusion.models import build_tiny_models

    return TorchBackend(build_tiny_models(seed=1, guidance_distilled=True))


@pytest.fixture(scope="session")
def model_dir(tiny_models, tmp_path_factory):
    from faceanon_video.anonymize.diffusion.models import save_models

    return save_models(tiny_models, tmp_path_factory.mktemp("tiny_diffusion_model"))


@pytest.fixture(scope="session")
def carphone():
    """The first 12 frames of carphone (BGR) with YuNet's detections of its one face."""
    import av

    from faceanon_video.detect.yunet import YuNetDetector

    detector = YuNetDetector()
    frames, faces = [], []
    with av.open(str(CARPHONE)) as container:
        for frame in container.decode(video=0):
            bgr = frame.to_ndarray(format="bgr24")
            frames.append(bgr)
            faces.append(detector.detect(bgr))
            if len(frames) == 12:
                break
    assert all(len(f) == 1 for f in faces), "carphone has exactly one face in every frame"
    return frames, faces


@pytest.fixture()
def make_anonymizer(backend):
    from faceanon_video.anonymize.diffusion import DiffusionAnonymizer, DiffusionSettings

    def make(backend_=None, **settings):
        settings.setdefault("steps", 2)
        return DiffusionAnonymizer(backend_ or backend, DiffusionSettings(**settings))

    return make


class CountingBackend:
    """Wraps a backend and records every call's name and batch size."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[tuple[str, int, str | None]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_image(self, pixels_clip):
        self.calls.append(("encode_image", len(pixels_clip), None))
        return self.inner.encode_image(pixels_clip)

    def vae_encode(self, pixels):
        self.calls.append(("vae_encode", len(pixels), None))
        return self.inner.vae_encode(pixels)

    def reference_states(self, latents, embeds, which):
        self.calls.append(("reference_states", len(latents), which))
        return self.inner.reference_states(latents, embeds, which)

    def unet(self, sample, timestep, context, source_states, conditioning_states, timestep_cond=None):
        self.calls.append(("unet", len(sample), None))
        return self.inner.unet(sample, timestep, context, source_states, conditioning_states, timestep_cond)

    def vae_decode(self, latents):
        self.calls.append(("vae_decode", len(latents), None))
        return self.inner.vae_decode(latents)

    def count(self, name, which=None):
        return sum(1 for n, _, w in self.calls if n == name and (which is None or w == which))


@pytest.fixture()
def counting():
    return CountingBackend


def face_crops(n: int, size_px: int = 64, seed: int = 0) -> np.ndarray:
    """n distinct face-like RGB crops (smooth random colour fields)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    import cv2

    return np.stack([cv2.resize(s, (size_px, size_px), interpolation=cv2.INTER_CUBIC) for s in small])


@pytest.fixture()
def crops():
    return face_crops


GOLDEN = DATA / "golden"


@pytest.fixture(scope="session")
def golden_model_dir(tmp_path_factory):
    """The golden reference's tiny model, rebuilt in the published layout (checked by md5)."""
    from faceanon_video.anonymize.diffusion.fidelity import write_model_dir

    return write_model_dir("golden_tiny", tmp_path_factory.mktemp("golden_tiny"))
