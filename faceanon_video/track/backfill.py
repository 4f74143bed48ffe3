"""Frames of a file held back a little, so what later frames reveal can still cover earlier ones.

Files need no answer the moment a frame is decoded, so the last ``lookback`` frames are held (24 by
default, ~0.8 s at 30 fps: at least a full cycle of ``detect.tiles``) before they are anonymized. That closes two gaps a frame-by-frame
pipeline leaves open:

- **Faces found late.** A face is often first detected a few frames after it came into view: it
  walked in, stepped out from behind a pillar, turned towards the camera, or stopped moving fast
  enough to be blurred. When a track is born, it is followed backwards through the held frames,
  newest first, by re-detection around its box (``RoiRedetector``: crops upscaled so faces are
  ~48 px, which finds blurred and small faces the full-frame pass missed). The walk stops at a
  frame where both the full-frame detector and that closer look found nothing, or at a shot change
  (a face from the next shot was never in the frames before it). On frames the full-frame
  detector skipped (``--detect-every N``), a face re-detection cannot find is still covered: its
  box is carried back, grown by ``grow`` per frame. So a new face is not left visible for up to
  N-1 frames.
- **Skipped frames** (``--detect-every N``). A face tracked at two consecutive full passes gets,
  on the frames between, the box and landmarks interpolated linearly between its two detections:
  as accurate as re-detecting there for the steady motion of people at 30 fps, and free (a
  re-detection costs about half a full pass per frame on a four-face 720p clip). A face lost at
  the later pass keeps the tracker's coasted box, as on any detector miss.

Live streams do not use this: holding frames back would add latency; they re-detect around tracks
on skipped frames instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from faceanon_video.geometry import buffered_iou
from faceanon_video.track.roi import RoiRedetector
from faceanon_video.types import Detections, Frame

__all__ = ["Backfill"]


@dataclass
class _Held:
    frame: Frame
    faces: Detections | BaseException  # an exception: the frame will be obscured whole
    full_pass: bool  # the full-frame detector ran on it


class Backfill:
    """Holds the last frames back and settles their faces with what later frames show.

    Args:
        redetector: looks for a new face around its box in each earlier frame; None only carries the box back.
        lookback: frames held (raised to ``detect_every`` if that is larger, so every skipped frame
            is still held when the next full pass comes). More covers faces found later, at the
            cost of memory (one decoded frame each) and delay.
        grow: how much a carried-back box grows per frame, as a fraction of its size (faces move).
        first_pad: padding per side, as a fraction of the box size, around a face re-detection finds.
        carry: frames a new face's box is still carried back past full passes that did not find it.
        edge_carry: the same for a face first found at the frame edge (within half its size); its
            carried box is stretched out to that edge, where the face came in from.
    """

    def __init__(
        self,
        redetector: RoiRedetector | None,
        lookback: int = 24,
        detect_every: int = 1,
        grow: float = 0.15,
        first_pad: float = 0.15,
        carry: int = 2,
        edge_carry: int = 8,
    ) -> None:
        self.redetector = redetector
        self.carry = carry
        self.edge_carry = edge_carry
        self.lookback = max(lookback, detect_every)
        self.grow = grow
        self.first_pad = first_pad
        self._held: list[_Held] = []
        self._seen: set[int] = set()
        self._last_pass: tuple[int, Detections] | None = None  # frame index and faces of the last full pass
        self._last_pass_index = -math.inf  # of the last full pass, failed or not (warm-up frames have indices < 0)

    def push(self, frame: Frame, faces: Detections | BaseException, full_pass: bool, cut: bool = False) -> list[tuple[Frame, Detections | BaseException]]:
        """Add the next frame (in order) with its tracked faces; returns the frames now final, in order."""
        released = []
        if cut:
            released = self.flush()
            self._seen.clear()
            self._last_pass = None
        tracked = isinstance(faces, Detections) and faces.track_id is not None
        if full_pass and isinstance(faces, BaseException):
            # A failed full pass fails the skipped frames since the previous pass: it was the one
            # that would have found a face appearing among them (fail closed).
            for held in self._held:
                if held.frame.index > self._last_pass_index and not held.full_pass:
                    held.faces = faces
        if tracked and full_pass:
            self._interpolate(frame.index, faces)
        if tracked and len(faces):
            ids = faces.track_id.tolist()
            for row, track_id in enumerate(ids):
                if track_id not in self._seen:
                    self._extend_back(faces[row], frame)
            self._seen.update(ids)
        self._held.append(_Held(frame, faces, full_pass))
        if full_pass:
            self._last_pass = (frame.index, faces) if tracked else None
            self._last_pass_index = frame.index
        while len(self._held) > self.lookback:
            held = self._held.pop(0)
            released.append((held.frame, held.faces))
        return released

    def flush(self) -> list[tuple[Frame, Detections | BaseException]]:
        """Release every held frame (at the end of a video, or at a shot change)."""
        released = [(held.frame, held.faces) for held in self._held]
        self._held.clear()
        return released

    def reset(self) -> None:
        self._held.clear()
        self._seen.clear()
        self._last_pass = None
        self._last_pass_index = -math.inf

    def _interpolate(self, index: int, faces: Detections) -> None:
        if self._last_pass is None or not self._held:
            return
        start_index, start = self._last_pass
        at_start = {t: row for row, t in enumerate(start.track_id.tolist())}
        at_end = {t: row for row, t in enumerate(faces.track_id.tolist())}
        for held in self._held:
            if held.frame.index <= start_index or not isinstance(held.faces, Detections) or held.faces.track_id is None:
                continue
            alpha = np.float32((held.frame.index - start_index) / max(index - start_index, 1))
            held.faces.xyxy, held.faces.landmarks = held.faces.xyxy.copy(), held.faces.landmarks.copy()  # not the tracker's
            for row, track_id in enumerate(held.faces.track_id.tolist()):
                if track_id in at_start and track_id in at_end:
                    a, b = at_start[track_id], at_end[track_id]
                    held.faces.xyxy[row] = (1 - alpha) * start.xyxy[a] + alpha * faces.xyxy[b]
                    # NaN landmarks at either end (a coasted box) stay NaN: unknown, not guessed.
                    held.faces.landmarks[row] = (1 - alpha) * start.landmarks[a] + alpha * faces.landmarks[b]

    @staticmethod
    def _edges_near(box: np.ndarray, frame: Frame) -> np.ndarray:
        """(4,) bool: whether ``box`` is within half its size of the left, top, right, bottom edge."""
        margin = 0.5 * (box[2:] - box[:2])
        return np.concatenate([box[:2] < margin, box[2:] > np.array([frame.width, frame.height]) - margin])

    @staticmethod
    def _to_edges(box: np.ndarray, edges: np.ndarray, frame: Frame) -> np.ndarray:
        """``box`` stretched out to each frame edge the face was found near."""
        limits = np.array([0.0, 0.0, frame.width, frame.height], np.float32)
        return np.where(edges, np.concatenate([np.minimum(box[:2], 0.0), np.maximum(box[2:], limits[2:])]), box).astype(np.float32)

    def _extend_back(self, face: Detections, frame: Frame) -> None:
        box = face.xyxy[0]
        edges = self._edges_near(box, frame)
        misses = 0
        for held in reversed(self._held):
            if isinstance(held.faces, BaseException):
                continue  # obscured whole anyway; keep walking with the same box
            try:
                found = self.redetector.detect(held.frame, box[None]) if self.redetector is not None else Detections.empty()
            except Exception as exc:  # noqa: BLE001 - fail closed: this frame is obscured, the run goes on
                held.faces = exc
                continue
            if len(found):
                misses = 0
                best = int(np.argmax(buffered_iou(found.xyxy, box[None], 0.0)[:, 0]))
                box, landmarks, predicted = found.xyxy[best], found.landmarks[best], False
                # Padded like a new track's first box (``ByteTrackSettings.birth_pad``): early sightings
                # of a face are often of part of it. The walk continues from the unpadded box.
                pad = self.first_pad * (box[2:] - box[:2])
                painted = np.concatenate([box[:2] - pad, box[2:] + pad])
            else:
                misses += 1
                # A full pass and a closer look both missed it here. It may have come into view later;
                # but a face is usually seen a frame or two after it appears (a first sighting is of a
                # face already in view), and one coming in through an edge was partly visible before
                # any detector could find it. So carry the box back a few frames more (further when it
                # is at an edge, stretched out to that edge) instead of stopping at once: stopping
                # made --detect-every 1, where every frame is a full pass, less safe than 2.
                if held.full_pass and misses > (self.edge_carry if edges.any() else self.carry):
                    return
                centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * (1 + self.grow)
                box, landmarks, predicted = np.concatenate([centre - half, centre + half]), np.full((5, 2), np.nan, np.float32), True
                painted = self._to_edges(box, edges, held.frame)
            row = Detections(
                xyxy=painted[None],
                score=np.zeros(1, np.float32),
                landmarks=landmarks[None],
                track_id=face.track_id,
                predicted=np.array([predicted]),
                seed=face.seed,
                # Per-face extras (e.g. a mesh) are unknown here; NaN rows keep the keys through the merge.
                data={k: np.full((1, *v.shape[1:]), np.nan, v.dtype) for k, v in face.data.items()},
            )
            held.faces = Detections.merge([held.faces, row]) if len(held.faces) else row
