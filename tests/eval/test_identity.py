from pathlib import Path

import cv2
import numpy as np
import pytest

from faceanon_video.anonymize.filters import Blur
from faceanon_video.detect.yunet import YuNetDetector
from faceanon_video.errors import ConfigError
from faceanon_video.eval.identity import IDENTITY_MODELS, load_identity_model, track_consistency
from faceanon_video.types import Frame

JOHNS = Path(__file__).resolve().parents[1] / "data" / "images" / "identities" / "johns"
PEOPLE = sorted(p.name for p in JOHNS.iterdir())[:3]
PER_PERSON = 2


def _models():
    out = ["sface"]
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401

        out.append("dlib")
    except ImportError:
        pass
    return out


@pytest.fixture(scope="module")
def chips():
    """{person: [(bgr, face Detections row)]} for 3 people x 2 photos."""
    detector = YuNetDetector(threshold=0.5, min_face_px=20)
    out = {}
    for person in PEOPLE:
        for path in sorted((JOHNS / person).glob("*.jpg"))[:PER_PERSON]:
            bgr = cv2.imread(str(path))
            faces = detector.detect(bgr)
            assert len(faces), path
            best = faces[int(np.argmax(faces.score))]
            out.setdefault(person, []).append((bgr, best))
    return out


@pytest.fixture(scope="module", params=_models())
def model(request):
    return load_identity_model(request.param)


@pytest.fixture(scope="module")
def embeddings(chips, model):
    """{person: (k, d) embeddings of the original photos, and of blacked-out and blurred copies}."""
    out = {}
    for person, items in chips.items():
        rows = []
        for bgr, face in items:
            black = np.zeros_like(bgr)
            blurred = Blur().apply(Frame(bgr=bgr.copy(), index=0), face).bgr
            rows.append(model.embed([bgr, black, blurred], face.xyxy[0], face.landmarks[0]))
        out[person] = np.stack(rows)  # (photos, 3 versions, d)
    return out


def test_same_person_verifies_and_different_people_do_not(embeddings, model):
    originals = {p: e[:, 0] for p, e in embeddings.items()}
    for person, emb in originals.items():
        d = model.distance(emb[:, None], emb[None, :])
        assert (d[~np.eye(len(emb), dtype=bool)] <= model.threshold).all(), person
        for other, other_emb in originals.items():
            if other != person:
                assert (model.distance(emb[:, None], other_emb[None, :]) > model.threshold).all(), (person, other)


def test_anonymized_copies_are_not_reidentified(embeddings, model):
    for person, emb in embeddings.items():
        original, black, blurred = emb[:, 0], emb[:, 1], emb[:, 2]
        assert (model.distance(original, black) > model.threshold).all(), person
        assert (model.distance(original, blurred) > model.threshold).all(), person


def test_track_consistency_separates_people(embeddings, model):
    result = track_consistency({p: e[:, 0] for p, e in embeddings.items()}, model)
    assert result.tracks == 3
    assert result.within_mean < result.between_mean
    assert result.within_same_rate == 1.0 and result.between_same_rate == 0.0
    # Tracks that each hold one photo of every person are inconsistent: nobody within, matches between.
    mixed = track_consistency({f"t{k}": np.stack([e[k, 0] for e in embeddings.values()]) for k in range(PER_PERSON)}, model)
    assert mixed.within_same_rate == 0.0 and mixed.between_same_rate > 0.0


def test_track_consistency_thins_long_tracks(model):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(500, 8)).astype(np.float32)
    result = track_consistency({"a": emb[:300], "b": emb[300:]}, model, max_per_track=10)
    assert result.tracks == 2 and np.isfinite(result.within_mean)
    empty = track_consistency({}, model)
    assert empty.tracks == 0 and np.isnan(empty.within_mean)


def test_unknown_model_is_a_config_error():
    assert IDENTITY_MODELS == ("sface", "dlib")
    with pytest.raises(ConfigError, match="unknown identity model"):
        load_identity_model("arcface")


def test_missing_dlib_is_a_config_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_dlib(name, *args, **kwargs):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dlib)
    with pytest.raises(ConfigError, match=r"pip install 'faceanon-video\[eval\]'"):
        load_identity_model("dlib")
