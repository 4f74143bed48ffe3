"""Fidelity to the published method: golden cases made by the original pipeline, and how to run one.

A golden case is a directory with ``case.json`` and the original pipeline's output for it (see
tests/data/golden/README.md for how they were made)::

    {"model": "golden_tiny",                       # a preset of MODEL_PRESETS (random weights, seed 0)
     "input": "../../images/astronaut.png",        # aligned RGB face crop, relative to the case
     "input_pixels_sha256": "...",                 # of its decoded RGB pixels (catches a decoder change)
     "swap_source": null,                          # the donor crop in face-swap mode
     "settings": {"steps": 4, "guidance_scale": 4.0, "degree": 1.25, "scheduler": "ddim"},
     "seed": 0,                                    # generator of the VAE posterior draws
     "noise_seed": 1234,                           # separate generator of the initial noise (null: `seed`'s 3rd draw)
     "expected": {"file": "expected.png", "stride": 2, "scale": 65535},
     "tolerance": {"torch": 1e-4, "onnx": 5e-4}}

``expected.png`` is the output in [0, 1] as 16-bit RGB (``round(x * scale)``), every ``stride``-th
row and column: the quantisation adds at most 0.5 / scale (7.6e-6) to the measured difference.
Adding a configuration is adding a directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from .config import DiffusionSettings
from .models import GOLDEN_TINY, TINY, RandomModelConfigs, build_random_models, save_models

__all__ = ["MODEL_PRESETS", "GoldenCase", "load_cases", "read_rgb", "write_model_dir", "run_case"]

MODEL_PRESETS: dict[str, RandomModelConfigs] = {"golden_tiny": GOLDEN_TINY, "tiny": TINY}

# The published layout names these classes; writing them keeps the directory like the original's.
_REFERENCENET_CLASS = "ReferenceNetModel"


@dataclasses.dataclass(frozen=True)
class GoldenCase:
    name: str
    directory: Path
    data: dict

    @property
    def model(self) -> str:
        return self.data["model"]

    def path(self, key: str) -> Path | None:
        value = self.data.get(key)
        return None if value is None else (self.directory / value).resolve()

    def settings(self, image_size_px: int) -> DiffusionSettings:
        swap = self.path("swap_source")
        return DiffusionSettings(**self.data["settings"], swap_source=swap, image_size_px=image_size_px)

    def input_rgb(self) -> np.ndarray:
        rgb = read_rgb(self.path("input"))
        digest = hashlib.sha256(rgb.tobytes()).hexdigest()
        if digest != self.data["input_pixels_sha256"]:
            raise ValueError(f"{self.name}: input pixels differ from the ones the case was made with")
        return rgb

    def expected(self) -> tuple[np.ndarray, int]:
        """(expected output subsampled, stride) as float32 in [0, 1]."""
        spec = self.data["expected"]
        stored = cv2.imread(str(self.directory / spec["file"]), cv2.IMREAD_UNCHANGED)
        return stored[..., ::-1].astype(np.float32) / spec["scale"], int(spec["stride"])

    def tolerance(self, backend: str) -> float:
        return float(self.data["tolerance"][backend])


def load_cases(root: Path) -> list[GoldenCase]:
    """Every ``*/case.json`` under ``root``, by name."""
    return [
        GoldenCase(path.parent.name, path.parent, json.loads(path.read_text()))
        for path in sorted(Path(root).glob("*/case.json"))
    ]


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return np.ascontiguousarray(bgr[..., ::-1])


def write_model_dir(preset: str, out: Path, seed: int = 0) -> Path:
    """A random-weight model directory in the published layout (``golden_tiny`` is bit-identical to
    the golden reference's ``make_tiny_model.py``: same safetensors md5s)."""
    from diffusers import DDPMScheduler

    models = build_random_models(MODEL_PRESETS[preset], seed)
    save_models(models, out)
    for sub in ("referencenet", "conditioning_referencenet"):
        config_path = Path(out) / sub / "config.json"
        config = json.loads(config_path.read_text())
        config["_class_name"] = _REFERENCENET_CLASS
        config_path.write_text(json.dumps(config, indent=2))
    DDPMScheduler.from_config(models.scheduler.config).save_pretrained(Path(out) / "scheduler")
    return Path(out)


def run_case(backend, case: GoldenCase) -> np.ndarray:
    """The case's output through :meth:`DiffusionAnonymizer.generate_float`, float32 (S, S, 3)."""
    from .anonymizer import DiffusionAnonymizer

    rgb = case.input_rgb()
    anonymizer = DiffusionAnonymizer(backend, case.settings(image_size_px=rgb.shape[0]))
    noise_seed = case.data.get("noise_seed")
    noise_seeds = None if noise_seed is None else np.array([noise_seed], np.uint64)
    seeds = np.array([case.data["seed"]], np.uint64)
    return anonymizer.generate_float(rgb[None], seeds, noise_seeds=noise_seeds)[0]
