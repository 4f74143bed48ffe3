"""A missing or damaged SFace model fails a --people run before its first frame (one clear line),
not at the first face, where each frame was obscured until the failure watch stopped the run."""

from __future__ import annotations

import shutil

import pytest

from faceanon_video import weights
from faceanon_video.errors import ModelError
from faceanon_video.eval.identity import SFACE_MODEL
from faceanon_video.people.embed import TrackEmbeddings


@pytest.fixture
def damaged_sface(tmp_path, monkeypatch):
    for name in weights.SHA256:
        if (weights.WEIGHTS_DIR / name).is_file():
            shutil.copy(weights.WEIGHTS_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / SFACE_MODEL).read_bytes())
    data[1000:1004] = b"XXXX"
    (tmp_path / SFACE_MODEL).write_bytes(bytes(data))
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    weights.model_path.cache_clear()
    yield
    weights.model_path.cache_clear()


def test_a_damaged_sface_model_fails_when_the_embedder_is_built(damaged_sface):
    with pytest.raises(ModelError, match=f"bundled model {SFACE_MODEL} is corrupted"):
        TrackEmbeddings()
