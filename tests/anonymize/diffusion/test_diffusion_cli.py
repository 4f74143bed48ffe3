"""``faceanon-video --mode diffusion`` end to end on a real clip with the tiny model on disk."""

from __future__ import annotations

import av
import numpy as np

from faceanon_video.cli import main

from .conftest import CARPHONE  # noqa: TID252 - the fixtures module of this folder


def _frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def test_cli_diffusion_end_to_end(model_dir, carphone, tmp_path):
    reference, anonymized = tmp_path / "none.mp4", tmp_path / "diffusion.mp4"
    common = [str(CARPHONE), "--end", "0.4", "-q", "--crf", "12"]
    assert main([*common, "-o", str(reference), "--mode", "none"]) == 0
    code = main([*common, "-o", str(anonymized), "--mode", "diffusion", "--model-dir", str(model_dir), "--steps", "2"])
    assert code == 0
    before, after = _frames(reference), _frames(anonymized)
    assert len(after) == len(before) >= 10

    _, faces = carphone
    for index, (a, b) in enumerate(zip(before, after)):
        x0, y0, x1, y1 = faces[index].xyxy[0]
        width = x1 - x0
        core = np.s_[int(y0 + 0.3 * width) : int(y1 - 0.2 * width), int(x0 + 0.3 * width) : int(x1 - 0.3 * width)]
        diff = np.abs(a.astype(int) - b).max(axis=2)
        assert diff[core].mean() > 20, f"frame {index}: face not replaced"
        far = np.ones(diff.shape, bool)
        far[max(int(y0 - width), 0) : int(y1 + width), max(int(x0 - width), 0) : int(x1 + width)] = False
        assert np.percentile(diff[far], 99) <= 12, f"frame {index}: background changed"


def test_cli_diffusion_without_models_is_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("FACEANON_MODEL_DIR", raising=False)
    code = main([str(CARPHONE), "-o", str(tmp_path / "x.mp4"), "--mode", "diffusion", "--model-dir", str(tmp_path)])
    assert code == 3  # ModelError
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unet/config.json" in err and "download-models" in err
    assert not (tmp_path / "x.mp4").exists()


def test_cli_stops_before_the_first_frame_when_the_model_cannot_run(model_dir, tmp_path, capsys):
    """A model whose parts do not fit together loads, but the dry run at build time fails: one line,
    exit 3 (ModelError), no output video (rather than a video of fully obscured frames)."""
    import shutil

    from diffusers import UNet2DConditionModel

    from faceanon_video.anonymize.diffusion.models import TINY

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    narrow = UNet2DConditionModel(**dict(TINY.unet, block_out_channels=(8, 8, 16, 16)))
    shutil.rmtree(broken / "referencenet")
    narrow.save_pretrained(broken / "referencenet")
    output = tmp_path / "x.mp4"
    code = main([str(CARPHONE), "-o", str(output), "--mode", "diffusion", "--model-dir", str(broken), "--steps", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 3, err
    assert err.count("\n") == 0 and "cannot run on this model" in err
    assert not output.exists()
