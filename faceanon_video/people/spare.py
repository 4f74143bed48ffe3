"""``--spare`` / ``--only``: keep the listed people visible, or anonymize only them.

References: each ``PHOTO_OR_FOLDER`` argument is one person (a folder: several photos of them; the
largest face of each photo is embedded). A track's face matches a person when its SFace cosine
similarity to any of that person's photos is >= ``SPARE_SIMILARITY``.

Privacy first, for both modes: a face is left visible only on confident evidence, checked along the
track (``TrackSelector``):

- ``spare``: a track is shown only inside a streak of ``min_hits`` consecutive good faces (quality
  >= ``MIN_QUALITY``, see ``embed``) that matched a listed person, and only while every later good
  face reaches the keep threshold (``STRANGER_SIMILARITY``: hysteresis); one good face below it
  anonymizes it again until ``min_hits`` more match. Files decide each frame a few frames late
  (``TrackSelector.observe`` / ``decide``), so a streak is shown from its start.
  A spared track is re-checked on every good face (a tracker that jumps to a stranger in a crossing
  is caught on that stranger's first good face), and a face of a spared track that cannot be checked
  (detector missed it, too small or turned) stays shown for at most ``max_unchecked`` frames.
  A track not shown is checked every ``recheck_every`` frames, less often after repeated failing
  checks (``_recheck_interval``: a crowd of strangers is the cost of ``--spare``); that only delays
  showing someone, an unchecked face is never shown on its account.
- ``only``: a track is left visible only after ``min_hits`` good faces that were all clearly *not*
  a listed person (similarity < ``STRANGER_SIMILARITY``); a single good face at or above that, and
  the track is anonymized for the rest of its life.

Measured error rates (SFace int8 via ``embed``; ``benchmarks/spare_threshold.py``): on
tests/data/images/identities (5 dlib "johns" x 11 chips, plus the Obama, Miranda and Lacamoire
photos; 58 faces of 8 people, 275 same-person and 1378 different-person pairs) same-person
similarity is 0.55-0.96 (5th percentile 0.63), different people at most 0.35 (99th percentile
0.29). At ``SPARE_SIMILARITY`` = 0.45: a stranger's single face kept visible 0/1378, a stranger's
3-face track 0/38775, a listed person's face matched 275/275. At 0.30 strangers would pass (10/1378
faces, 11/38775 tracks). On short_hamilton_clip.mp4 with Miranda's photo as the reference (37 other
tracks; video faces are small and soft, so similarities are lower): strangers reach at most 0.34 and
none is shown; Miranda's frames score 0.38-0.73. In its first 5 s (tests/people/test_spare_cli.py)
he is shown on 80 of his 88 frames (37 with consecutive matches, no keep threshold, no look-ahead).
At the keep threshold 0.363 strangers' faces pass 0/1378 (the closest pair of different people: 0.352).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceanon_video.errors import InputError
from faceanon_video.io.images import read_image
from faceanon_video.geometry import box_iou
from faceanon_video.people.embed import MIN_QUALITY, FaceEmbedder, PhotoEmbedder, face_quality
from faceanon_video.types import Detections, Frame

__all__ = ["References", "TrackSelector", "SPARE_SIMILARITY", "STRANGER_SIMILARITY", "load_references"]

log = logging.getLogger(__name__)

#: A face is a listed person at or above this cosine similarity (see module docstring).
SPARE_SIMILARITY = 0.45
#: ``--only``: a face is confidently someone else only below this (OpenCV's published SFace
#: same-person threshold, so anything it would call "maybe" counts as the listed person).
STRANGER_SIMILARITY = 0.363
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class References:
    """Embeddings of the listed people: ``embeddings`` (n, d) with ``person`` (n,) indices into ``names``."""

    names: list[str]
    embeddings: np.ndarray
    person: np.ndarray

    def similarity(self, embedding: np.ndarray) -> tuple[float, int]:
        """Best cosine similarity of one face to any reference photo, and whose it is."""
        sims = self.embeddings @ embedding
        best = int(np.argmax(sims))
        return float(sims[best]), int(self.person[best])


def load_references(paths: list[str | Path], photo_embedder: PhotoEmbedder | None = None) -> References:
    """Embed the photos of each listed person; InputError for a missing path, an unreadable photo,
    a photo without a face, or a folder with no photo."""
    photo_embedder = photo_embedder or PhotoEmbedder()
    names, embeddings, person = [], [], []
    for index, raw in enumerate(paths):
        path = Path(raw)
        if path.is_dir():
            photos = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not photos:
                raise InputError(f"{path}: no photos in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.is_file():
            photos = [path]
        else:
            raise InputError(f"{path}: no such photo or folder")
        for photo in photos:
            embedding = photo_embedder.embed(read_image(photo))
            if embedding is None:
                raise InputError(f"{photo}: no face found in the photo")
            embeddings.append(embedding)
            person.append(index)
        names.append(str(path))
    log.info("%d reference photos of %d people", len(embeddings), len(names))
    return References(names, np.stack(embeddings), np.asarray(person))


@dataclass
class _Streak:
    """``--spare``: a run of consecutive matching checks of one track (frame indices)."""

    first: int
    after_fail: int  # the last failing check before it
    checks: list[int] = field(default_factory=list)  # its first min_hits checks
    confirmed_at: int | None = None  # frame of its min_hits-th check
    open: bool = True


@dataclass
class _TrackState:
    streak: int = 0  # consecutive good faces that support showing the track
    visible: bool = False  # shown on the newest frame observed (evidence up to that frame)
    vetoed: bool = False  # --only: matched a listed person once, anonymized for good
    last_checked: int = -(10**9)
    checks: int = 0
    best_similarity: float = -1.0
    matched_person: int | None = None
    last_fail: int = -(10**9)
    fails: int = 0  # failing checks in a row
    shown_online: dict[int, bool] = field(default_factory=dict)  # frame -> visible, until decided
    checked: dict[int, bool] = field(default_factory=dict)  # frame -> the check supported, until decided
    streaks: list[_Streak] = field(default_factory=list)  # --spare: those that may still show a frame


@dataclass
class TrackSelector:
    """Per frame, which tracked faces to anonymize under ``--spare`` or ``--only``.

    ``anonymize(frame, faces)`` returns an (n,) bool mask, True = anonymize, on the evidence up to
    that frame (live streams). Files can wait: ``observe`` each frame as it comes, ``decide`` it a few
    frames later (``FrameProcessor`` holds ``lookahead`` frames), with the evidence of the frames
    after it too. ``--spare``: a streak of ``min_hits`` matching checks confirmed within the window is
    shown from its first check (and ``max_unchecked`` frames before it, unless a failing check is
    among them), not only from the confirmation on; and a failing check hides the track's unchecked
    frames before it. Nothing else changes: a face never matched confidently stays anonymized.
    ``--only``: a track vetoed within the window is anonymized on the frames before the veto too.
    Call ``end(track_id)`` when a track ends to free its state.
    """

    references: References
    mode: str = "spare"  # or "only"
    embedder: FaceEmbedder = field(default_factory=FaceEmbedder)
    min_hits: int = 3
    #: Frames a spared track stays shown without a fresh check (detector missed the face, or it is
    #: turned or small); after that it is anonymized until checked again. With look-ahead, also how
    #: many frames before its first matching check a confirmed streak is shown.
    max_unchecked: int = 2
    #: Undecided and anonymized tracks are checked at most every this many frames (the cost of
    #: ``--spare`` on a crowd); spared tracks on every good face.
    recheck_every: int = 2
    #: ``--spare``: after this many failing checks in a row a track is checked half as often, down to
    #: every ``max_recheck_every`` frames (see ``_recheck_interval``).
    backoff_after: int = 3
    max_recheck_every: int = 8
    match_similarity: float = SPARE_SIMILARITY
    #: ``--spare``: a confirmed track stays shown while its checks reach this (see ``_update``).
    keep_similarity: float = STRANGER_SIMILARITY
    stranger_similarity: float = STRANGER_SIMILARITY
    #: ``--spare``: a face whose box covers a shown face's this much (IoU) is the same face found twice
    #: (a tracker duplicate): it is shown with it, since anonymizing it would hide the shown face.
    duplicate_iou: float = 0.6
    states: dict[int, _TrackState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("spare", "only"):
            raise ValueError(f"mode must be 'spare' or 'only', not {self.mode!r}")

    def anonymize(self, frame: Frame | np.ndarray, faces: Detections, frame_index: int | None = None) -> np.ndarray:
        """``observe`` and ``decide`` the same frame: no look-ahead."""
        index = frame.index if frame_index is None else frame_index
        self.observe(frame, faces, index)
        return self.decide(index, faces)

    def observe(self, frame: Frame | np.ndarray, faces: Detections, frame_index: int | None = None) -> None:
        """Check this frame's due faces against the references (frames in order, original pixels)."""
        if faces.track_id is None:
            return
        index = frame.index if frame_index is None else frame_index
        quality = face_quality(faces)
        for i, track_id in enumerate(faces.track_id.tolist()):
            state = self.states.setdefault(track_id, _TrackState())
            due = state.visible or index - state.last_checked >= self._recheck_interval(state)
            if quality[i] >= MIN_QUALITY and due and not state.vetoed:
                embedding, image_ok = self.embedder.embed(frame, faces.xyxy[i], faces.landmarks[i])
                if embedding is not None and image_ok > 0:
                    self._update(state, embedding, index)
            if state.visible and index - state.last_checked > self.max_unchecked:
                state.visible, state.streak = False, 0  # unchecked for too long: hide until re-confirmed
                if state.streaks:
                    state.streaks[-1].open = False
            state.shown_online[index] = state.visible

    def _recheck_interval(self, state: _TrackState) -> int:
        """Frames between checks of a track not shown: ``recheck_every``, doubled after every
        ``backoff_after`` failing checks in a row (up to ``max_recheck_every``) under ``--spare``:
        most faces in a crowd are strangers, and checking them less often only delays showing a
        listed person (an unchecked face stays anonymized), never shows anyone."""
        if self.mode != "spare":
            return self.recheck_every
        return min(self.recheck_every * 2 ** (state.fails // self.backoff_after), self.max_recheck_every)

    def decide(self, frame_index: int, faces: Detections) -> np.ndarray:
        """(n,) bool, True = anonymize, for an ``observe``d frame (frames decided in order), on all the
        evidence observed so far: its own frame's and that of any frame after it."""
        out = np.ones(len(faces), bool)
        if faces.track_id is None:
            return out  # untracked faces cannot accumulate evidence: anonymize
        for i, track_id in enumerate(faces.track_id.tolist()):
            state = self.states.get(track_id)
            if state is None:
                continue
            shown = state.shown_online.pop(frame_index, False)
            if self.mode == "only":
                shown = shown and not state.vetoed  # vetoed since: anonymized on the frames before too
            else:
                shown = (shown or self._confirmed_later(state, frame_index)) and not self._failed_soon_after(state, frame_index)
                state.checked = {f: ok for f, ok in state.checked.items() if f > frame_index}
            out[i] = not shown
        if self.mode == "spare" and out.any() and not out.all():
            overlap = box_iou(faces.xyxy[out], faces.xyxy[~out])
            out[np.flatnonzero(out)[(overlap >= self.duplicate_iou).any(axis=1)]] = False
        return out

    def _confirmed_later(self, state: _TrackState, index: int) -> bool:
        """Whether a streak confirmed after ``index`` covers it: within ``max_unchecked`` frames after
        one of its checks, or before its first (unless it follows a failing check closely)."""
        state.streaks = [s for s in state.streaks if s.open or (s.confirmed_at or -1) >= index - self.max_unchecked]
        for streak in state.streaks:
            if streak.confirmed_at is None or index >= streak.confirmed_at:
                continue  # not confirmed (yet), or the online decision already knew it
            # Unchecked frames just before it, unless a failing check is among them (the tracker may
            # have come over from someone else there).
            if streak.after_fail < streak.first - self.max_unchecked <= index < streak.first:
                return True
            if any(check <= index <= check + self.max_unchecked for check in streak.checks):
                return True
        return False

    def _failed_soon_after(self, state: _TrackState, index: int) -> bool:
        """An unchecked face followed within ``max_unchecked`` frames by a failing check: the tracker
        may already have jumped to someone else."""
        if index in state.checked:
            return not state.checked[index]
        return any(not ok for f, ok in state.checked.items() if index < f <= index + self.max_unchecked)

    def _update(self, state: _TrackState, embedding: np.ndarray, index: int) -> None:
        similarity, person = self.references.similarity(embedding)
        state.last_checked = index
        state.checks += 1
        if similarity > state.best_similarity:
            state.best_similarity, state.matched_person = similarity, person
        if self.mode == "spare":
            # Hysteresis: confirmed at match_similarity, kept while at least keep_similarity (below it
            # a face is clearly someone else, see STRANGER_SIMILARITY); SFace on small, soft video
            # faces wavers around match_similarity from frame to frame for one person.
            supports = similarity >= (self.keep_similarity if state.visible else self.match_similarity)
            self._record_check(state, index, supports)
        else:
            supports = similarity < self.stranger_similarity
            if not supports:
                state.vetoed = True
        state.streak = state.streak + 1 if supports else 0
        state.fails = 0 if supports else state.fails + 1
        state.visible = state.streak >= self.min_hits and not state.vetoed

    def _record_check(self, state: _TrackState, index: int, supports: bool) -> None:
        state.checked[index] = supports
        current = state.streaks[-1] if state.streaks and state.streaks[-1].open else None
        if not supports:
            if current is not None:
                current.open = False
            state.last_fail = index
            return
        if current is None:
            current = _Streak(first=index, after_fail=state.last_fail)
            state.streaks.append(current)
        if len(current.checks) < self.min_hits:
            current.checks.append(index)
            if len(current.checks) == self.min_hits:
                current.confirmed_at = index

    def end(self, track_id: int) -> None:
        self.states.pop(track_id, None)
