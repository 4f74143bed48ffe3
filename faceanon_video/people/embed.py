"""Face embeddings for the person layer: SFace on aligned crops, a few good ones per track.

The embedding model and its alignment are ``eval.identity.SFaceIdentity`` (the bundled int8 SFace
through ``cv2.FaceRecognizerSF``, aligned on the detector's 5 landmarks); this module only decides
*which* faces are worth embedding and how much each counts:

- ``face_quality``: a cheap 0..1 score from what the detector already gives (box size, detection
  score, frontalness from the landmarks); faces below ``MIN_QUALITY`` are not embedded at all.
- ``image_quality`` of the 112x112 aligned crop scales the weight after embedding: contrast (a face
  in the dark, grey level spread < ``MIN_CONTRAST``, is not kept at all: on short_hamilton_clip.mp4
  near-black audience faces of *different* people reached similarities of 0.5-0.68 to each other)
  and sharpness (variance of the Laplacian: a motion-blurred face gives a noisy embedding).
- ``TrackEmbeddings``: fed every frame's tracked faces, embeds at most ``per_track`` faces of a
  track, spaced at least ``min_gap`` frames apart, and afterwards only a face clearly better than the
  worst one kept (so a long track costs a bounded number of embeddings, ``max_embeds``). A track's
  faces are embedded only once their weights add up to ``MIN_LINK_WEIGHT``, the evidence linking
  needs: a track that never gets there (short, small, dark or turned faces) costs no SFace run and
  keeps no embedding (it would stay alone anyway). 3 faces and 4 runs per track: on the 6 synthetic
  linking clips (tests/people) 1, 2, 3 or 4 faces per track all link 15/15 same-person pairs with
  0/121 wrong merges (same-person pair similarity >= 0.49 with 2-4, different people <= 0.26), so
  more buys margin, not links; on the 720p concert clip (people_cost.py) 25 SFace runs in place of
  46 (4 faces/6 runs, every track embedded), 16 with 2/3 but then one more weak track stays alone.

Per frame this costs one ~112x112 crop conversion and alignment for the few faces selected, not for
every face; the SFace run itself (30-60 ms here) is skipped for a face that would not be kept (too
dark or flat, no better than the track's kept ones, or in a track too weak to link) and otherwise
runs on a worker thread, off the frame-order path, which also loads the model while the video's
first frames are decoded and detected: the cost target of the person layer is < 10 % of 720p blur
throughput.
Measured alternative, not kept: the float32 SFace (dequantised from the bundled int8 file the way
``weights/derive.py`` does for YuNet) in onnxruntime on one thread gives the same embeddings (cosine
1.0000) for 29 ms CPU per face against 33-38 ms in OpenCV: not worth a 39 MB file or 1 s to derive it.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from faceanon_video.eval.identity import SFACE_MODEL, SFaceIdentity
from faceanon_video.types import Detections, Frame
from faceanon_video.weights import model_path

__all__ = [
    "FaceEmbedder",
    "PhotoEmbedder",
    "TrackEmbeddings",
    "TrackFaces",
    "face_quality",
    "MIN_QUALITY",
    "MIN_LINK_WEIGHT",
]

log = logging.getLogger(__name__)

#: Faces smaller than this (box height, px) embed poorly (SFace is trained on 112 px aligned faces,
#: and below ~40 px the same person's similarity drops towards strangers').
FULL_QUALITY_PX = 80.0
MIN_FACE_PX = 24.0
#: Below this quality a face is not embedded: too small, too turned or too unsure to identify.
MIN_QUALITY = 0.25
#: Laplacian variance of the aligned grey crop at which a face counts as fully sharp.
SHARP_LAPLACIAN_VAR = 100.0
#: Standard deviation of the grey levels of the aligned crop's centre below which a face is too dark
#: or flat to identify, and at which it counts as fully contrasted.
MIN_CONTRAST = 12.0
FULL_CONTRAST = 30.0
#: A track's faces are embedded (and the track linked) only once their weights (quality 0..1 each)
#: add up to this: one good face, or several mediocre ones.
MIN_LINK_WEIGHT = 0.3
#: Context kept around a face box when cropping it out of a frame for alignment (fraction of its size).
CROP_MARGIN = 0.35


def face_quality(faces: Detections) -> np.ndarray:
    """(n,) 0..1: how well each face can be identified, from size, detection score and frontalness.

    Frontalness: in a frontal face the nose tip sits halfway between the eyes (horizontally) and the
    eyes are level; a turned head moves the nose towards one eye. Faces without landmarks score 0
    (they cannot be aligned)."""
    n = len(faces)
    if not n:
        return np.zeros(0, np.float32)
    size = np.clip((faces.heights - MIN_FACE_PX) / (FULL_QUALITY_PX - MIN_FACE_PX), 0.0, 1.0)
    score = np.clip(faces.score, 0.0, 1.0)
    lm = faces.landmarks
    right_eye, left_eye, nose = lm[:, 0], lm[:, 1], lm[:, 2]
    eye_vec = left_eye - right_eye
    eye_dist = np.maximum(np.linalg.norm(eye_vec, axis=1), 1e-6)
    # Where the nose projects on the eye line: 0.5 when frontal, towards 0 or 1 when turned.
    t = np.sum((nose - right_eye) * eye_vec, axis=1) / eye_dist**2
    yaw = np.clip(1.0 - 2.0 * np.abs(t - 0.5), 0.0, 1.0)  # 0 once the nose is in line with an eye
    roll = np.clip(1.0 - np.abs(np.arctan2(eye_vec[:, 1], eye_vec[:, 0])) / (np.pi / 3), 0.0, 1.0)
    quality = size * np.sqrt(score) * yaw * roll
    quality = np.where(faces.has_landmarks, quality, 0.0)
    if faces.predicted is not None:
        quality = np.where(faces.predicted, 0.0, quality)  # a coasted box has no fresh landmarks
    return np.nan_to_num(quality).astype(np.float32)


def image_quality(aligned_bgr: np.ndarray) -> float:
    """0..1 from the contrast and sharpness of an aligned 112x112 face (0: too dark or flat)."""
    grey = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    contrast = float(grey[16:96, 16:96].std())  # the face itself, not the corners around it
    if contrast < MIN_CONTRAST:
        return 0.0
    sharpness = min(1.0, float(cv2.Laplacian(grey, cv2.CV_32F).var()) / SHARP_LAPLACIAN_VAR)
    return min(1.0, contrast / FULL_CONTRAST) * (0.25 + 0.75 * sharpness)


class FaceEmbedder:
    """Unit SFace embeddings of tracked faces in frames (``eval.identity.SFaceIdentity``), plus a
    sharpness weight of the aligned crop."""

    def __init__(self, model: SFaceIdentity | Future | None = None) -> None:
        self._model = model or SFaceIdentity()

    @property
    def model(self) -> SFaceIdentity:
        """The SFace model (waits for it when it is being loaded on another thread)."""
        if isinstance(self._model, Future):
            self._model = self._model.result()
        return self._model

    def embed(self, frame: Frame | np.ndarray, xyxy: np.ndarray, landmarks: np.ndarray, *, gate: bool = True) -> tuple[np.ndarray | None, float]:
        """(unit embedding (d,), image quality 0..1) of one face with known landmarks; quality 0
        means the aligned face is too dark or flat to tell who it is, and then (with ``gate``) the
        SFace run is skipped and the embedding is None: a run costs 30-60 ms here, the quality check
        of the aligned crop well under 1 ms, and callers drop such faces anyway."""
        aligned = self.align(frame, xyxy, landmarks)
        quality = image_quality(aligned)
        if gate and quality <= 0.0:
            return None, 0.0
        return self.feature(aligned), quality

    def align(self, frame: Frame | np.ndarray, xyxy: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The 112x112 BGR face SFace takes, aligned on its 5 landmarks."""
        xyxy = np.asarray(xyxy, np.float32)
        w, h = xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]
        x0, y0 = int(np.floor(xyxy[0] - CROP_MARGIN * w)), int(np.floor(xyxy[1] - CROP_MARGIN * h))
        x1, y1 = int(np.ceil(xyxy[2] + CROP_MARGIN * w)), int(np.ceil(xyxy[3] + CROP_MARGIN * h))
        if isinstance(frame, Frame):
            x0, y0 = max(x0, 0), max(y0, 0)
            crop = frame.crop_bgr(x0, y0, x1, y1)  # only the face is converted from I420
        else:
            x0, y0 = max(x0, 0), max(y0, 0)
            crop = frame[y0:y1, x0:x1]
        offset = np.array([x0, y0], np.float32)
        box = xyxy - np.tile(offset, 2)
        points = np.asarray(landmarks, np.float32) - offset
        row = np.concatenate([[box[0], box[1], box[2] - box[0], box[3] - box[1]], points.reshape(10), [1.0]]).astype(np.float32)[None]
        return self.model._net.alignCrop(np.ascontiguousarray(crop), row)

    def feature(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """Unit SFace embedding (d,) of an aligned 112x112 face (``align``): the 30-60 ms part."""
        embedding = self.model._net.feature(aligned_bgr).reshape(-1).astype(np.float32)
        return embedding / max(float(np.linalg.norm(embedding)), 1e-12)


class PhotoEmbedder:
    """Find the largest face in a photo (YuNet) and embed it: reference photos for ``--spare``/``--only``
    and ``verify --face``."""

    #: Border added before detection: YuNet misses faces that touch the image edge (tight chips).
    PAD = 0.25

    def __init__(self, embedder: FaceEmbedder | None = None) -> None:
        from faceanon_video.detect.yunet import YuNetDetector

        self.detector = YuNetDetector(threshold=0.5, min_face_px=0)
        self.embedder = embedder or FaceEmbedder()

    def embed(self, bgr: np.ndarray) -> np.ndarray | None:
        """Unit embedding of the largest face in ``bgr``, or None when there is no face."""
        pad = int(round(self.PAD * max(bgr.shape[:2])))
        padded = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        faces = self.detector.detect(padded)
        if not len(faces):
            return None
        i = int(np.argmax(faces.widths * faces.heights))
        # Not gated: a reference photo is embedded whatever its contrast (the user chose it).
        return self.embedder.embed(padded, faces.xyxy[i], faces.landmarks[i], gate=False)[0]


@dataclass
class TrackFaces:
    """The embeddings kept for one track, with their weights and the frames it was seen in."""

    track_id: int
    first_frame: int
    last_frame: int
    frames: int = 0  # frames the track was seen in
    max_height_px: float = 0.0
    embeddings: list[np.ndarray] = field(default_factory=list)  # (TrackEmbeddings: read them through its .tracks)
    weights: list[float] = field(default_factory=list)
    embedded_frames: list[int] = field(default_factory=list)
    embeds_run: int = 0  # SFace runs spent on this track (>= len(embeddings))
    last_embed_frame: int = -(10**9)

    @property
    def mean(self) -> np.ndarray | None:
        """Quality-weighted mean embedding (unit), or None when no face of the track was embedded."""
        if not self.embeddings:
            return None
        mean = np.average(np.stack(self.embeddings), axis=0, weights=np.maximum(self.weights, 1e-6))
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    @property
    def weight(self) -> float:
        return float(np.sum(self.weights))


#: Faces kept per track for linking people (``TrackEmbeddings``' ``per_track``; see the module doc).
FACES_PER_TRACK = 3


class TrackEmbeddings:
    """Accumulates a bounded sample of good, embedded faces per track over a video or stream.

    Call ``add(frame, faces)`` with each frame's tracked faces (``faces.track_id`` set); read
    ``tracks`` (track id -> ``TrackFaces``) at the end, or at any time for online linking.
    """

    def __init__(
        self, embedder: FaceEmbedder | None = None, per_track: int = FACES_PER_TRACK, min_gap: int = 8, max_embeds: int = 4, min_quality: float = MIN_QUALITY, background: bool = True
    ) -> None:
        self.per_track = per_track
        self.min_gap = min_gap
        self.max_embeds = max_embeds
        self.min_quality = min_quality
        self._tracks: dict[int, TrackFaces] = {}
        self._embedding: set[int] = set()  # tracks whose faces reached MIN_LINK_WEIGHT: embedded
        # SFace runs off the frame-order thread (``add`` only crops and aligns, < 1 ms): the caller
        # goes on with anonymizing and encoding while a face is embedded. Which faces are kept never
        # depends on the embedding itself (only on qualities known at once), so the result is the
        # same as embedding in line; ``tracks`` waits for the runs still pending.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sface") if background else None
        # The model (~0.3 s CPU) loads on that thread too, while the video's first frames are
        # decoded and detected; the first alignment waits for it. Its file is checked here first: a
        # missing or damaged model fails the run now, not at the first face (every frame obscured).
        if embedder is None:
            model_path(SFACE_MODEL)
        self.embedder = embedder or FaceEmbedder(self._executor.submit(SFaceIdentity) if self._executor else None)

    @property
    def tracks(self) -> dict[int, TrackFaces]:
        """Track id -> ``TrackFaces``, with every embedding requested so far computed; a track whose
        faces do not reach ``MIN_LINK_WEIGHT`` (yet) has none."""
        tracks = {}
        for track_id, track in self._tracks.items():
            if track_id in self._embedding:
                track.embeddings = [e.result() if isinstance(e, Future) else e for e in track.embeddings]
                tracks[track_id] = track
            else:  # its kept faces are aligned crops waiting for more evidence, not embeddings
                tracks[track_id] = dataclasses.replace(track, embeddings=[], weights=[], embedded_frames=[])
        return tracks

    def reset(self) -> None:
        """Forget every track (a new video): runs still pending finish unused."""
        self._tracks.clear()
        self._embedding.clear()

    def add(self, frame: Frame | np.ndarray, faces: Detections, frame_index: int | None = None) -> list[int]:
        """Record the faces of one frame; returns the track ids embedded in this frame."""
        if faces.track_id is None:
            raise ValueError("TrackEmbeddings needs tracked faces (track_id set)")
        index = frame.index if frame_index is None else frame_index
        quality = face_quality(faces)
        embedded = []
        for i, track_id in enumerate(faces.track_id.tolist()):
            track = self._tracks.get(track_id)
            if track is None:
                track = self._tracks[track_id] = TrackFaces(track_id, index, index)
            track.last_frame = index
            track.frames += 1
            track.max_height_px = max(track.max_height_px, float(faces.heights[i]))
            if self._wanted(track, float(quality[i]), index):
                aligned = self.embedder.align(frame, faces.xyxy[i], faces.landmarks[i])
                if self._keep(track, float(quality[i]) * image_quality(aligned), index):
                    # Appended last by _keep: the aligned crop, until the track is worth embedding.
                    track.embeddings[-1] = aligned
                    if track_id in self._embedding:
                        track.embeddings[-1] = self._feature(aligned)
                    elif track.weight >= MIN_LINK_WEIGHT:
                        self._embedding.add(track_id)
                        track.embeddings = [self._feature(a) for a in track.embeddings]
                embedded.append(track_id)
        return embedded

    def _feature(self, aligned: np.ndarray) -> np.ndarray | Future:
        """The SFace run of an aligned face: now, or on the worker thread."""
        return self._executor.submit(self.embedder.feature, aligned) if self._executor else self.embedder.feature(aligned)

    def _wanted(self, track: TrackFaces, quality: float, index: int) -> bool:
        if quality < self.min_quality or index - track.last_embed_frame < self.min_gap or track.embeds_run >= self.max_embeds:
            return False
        if len(track.embeddings) < self.per_track:
            return True
        # Full: only a face clearly better than the worst kept one is worth an SFace run.
        return quality > 1.25 * min(track.weights)

    def _keep(self, track: TrackFaces, weight: float, index: int) -> bool:
        """Make room for a face of this weight (dropping the worst kept one if full); False when it is
        not worth keeping, and then its SFace run is skipped."""
        track.embeds_run += 1  # counts skipped faces too: a track of dark faces stops being tried
        track.last_embed_frame = index
        if weight <= 0.0:
            return False  # too dark or flat: an embedding of noise would link strangers
        if len(track.embeddings) >= self.per_track:
            worst = int(np.argmin(track.weights))
            if weight <= track.weights[worst]:
                return False
            for values in (track.embeddings, track.weights, track.embedded_frames):
                values.pop(worst)
        track.embeddings.append(None)
        track.weights.append(weight)
        track.embedded_frames.append(index)
        return True
