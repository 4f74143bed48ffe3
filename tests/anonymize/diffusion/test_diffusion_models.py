"""Loading and saving the model directory, and the errors a user sees when it is wrong."""

from __future__ import annotations

import argparse
import shutil

import pytest
import torch

from faceanon_video.anonymize.diffusion.backend import DiffusionBackend, TorchBackend
from faceanon_video.anonymize.diffusion.models import MODEL_DIR_ENV, load_models, save_models
from faceanon_video.errors import ConfigError, ModelError


def _outputs(backend: TorchBackend) -> list[torch.Tensor]:
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, 64, 64) * 2 - 1
    side = backend.models.clip_image_size_px
    clip = torch.randn(2, 3, side, side)
    embeds = backend.encode_image(clip)
    mean, std = backend.vae_encode(pixels)
    latents = mean + std * torch.randn(mean.shape)
    states = backend.reference_states(latents, embeds, "source")
    cond = backend.reference_states(latents, embeds, "conditioning")
    out = backend.unet(torch.randn(2, 4, 8, 8), torch.tensor([999, 999]), torch.cat([embeds, embeds], 1), states, cond)
    return [embeds, mean, std, *states, out, backend.vae_decode(out)]


def test_backend_shapes_and_protocol(backend):
    assert isinstance(backend, DiffusionBackend)
    embeds, mean, std, *states, out, image = _outputs(backend)
    assert embeds.shape == (2, 1, 32) and mean.shape == std.shape == (2, 4, 8, 8) and (std > 0).all()
    assert len(states) == 7 and out.shape == (2, 4, 8, 8) and image.shape == (2, 3, 64, 64)


def test_vae_encode_is_deterministic(backend):
    pixels = torch.rand(1, 3, 64, 64) * 2 - 1
    (mean, std), (mean2, std2) = backend.vae_encode(pixels), backend.vae_encode(pixels)
    assert torch.equal(mean, mean2) and torch.equal(std, std2)


def test_save_load_round_trip(tiny_models, model_dir):
    loaded = TorchBackend(load_models(model_dir))
    for a, b in zip(_outputs(TorchBackend(tiny_models)), _outputs(loaded)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert loaded.image_size_px == 64 and loaded.time_cond_proj_dim is None


def test_two_backends_on_one_model_both_work(tiny_models, backend):
    """Wrapping the same modules again must not disconnect the first wrapper's processors."""
    second = TorchBackend(tiny_models)
    for a, b in zip(_outputs(backend), _outputs(second)):
        assert torch.equal(a, b)


def test_guidance_distilled_round_trip(distilled_backend, tmp_path):
    save_models(distilled_backend.models, tmp_path)
    assert load_models(tmp_path).unet.config.time_cond_proj_dim == 16


def test_missing_parts_are_listed(model_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(model_dir, partial)
    shutil.rmtree(partial / "vae")
    (partial / "referencenet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelError) as error:
        load_models(partial)
    message = str(error.value)
    assert "vae/config.json" in message and "referencenet/ weights" in message
    assert "unet" not in message.replace("referencenet", "")


def test_no_model_dir_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    with pytest.raises(ConfigError, match="--model-dir"):
        load_models(None)
    with pytest.raises(ConfigError, match="does not exist"):
        load_models(tmp_path / "nowhere")


def test_model_dir_from_environment(monkeypatch, model_dir):
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_dir))
    assert load_models(None).image_size_px == 64


def test_download_models_assembles_a_loadable_directory(monkeypatch, tiny_models, tmp_path):
    """The download command's plumbing, with the Hub replaced by local copies of the tiny models."""
    import huggingface_hub

    from faceanon_video.commands import download_models

    hub_root = tmp_path / "hub"
    save_models(tiny_models, hub_root / "face")
    tiny_models.vae.save_pretrained(hub_root / "sd21" / "vae")
    tiny_models.image_encoder.save_pretrained(hub_root / "clip")
    repos = {"face/repo": hub_root / "face", "vae/repo": hub_root / "sd21", "clip/repo": hub_root / "clip"}
    fetched = []

    def fake_snapshot_download(repo_id, allow_patterns=None, local_dir=None, **kwargs):
        import fnmatch

        fetched.append(repo_id)
        source = repos[repo_id]
        for path in source.rglob("*"):
            relative = path.relative_to(source).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(relative, p) for p in allow_patterns):
                (local_dir / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, local_dir / relative)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    parser = argparse.ArgumentParser()
    download_models.add_arguments(parser)
    target = tmp_path / "models"
    args = parser.parse_args(["--to", str(target), "--face-repo", "face/repo", "--vae-repo", "vae/repo", "--clip-repo", "clip/repo"])
    assert download_models.main(args) == 0
    assert fetched == ["face/repo", "vae/repo", "clip/repo"]
    assert load_models(target).image_size_px == 64
    assert download_models.main(args) == 0 and len(fetched) == 3  # complete: nothing fetched again
