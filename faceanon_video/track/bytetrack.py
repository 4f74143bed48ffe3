"""ByteTrack-style multi-face tracker (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating
Every Detection Box", ECCV 2022), tuned for anonymization: a face must never be dropped to save a box.

Per frame:
1. Predict every track one frame ahead with a constant-velocity Kalman filter (``kalman.py``).
2. Stage 1: confirmed tracks (including ones coasting through misses) <- high-score detections, by
   buffered IoU (C-BIoU, Yang et al., WACV 2023: boxes are enlarged before IoU so fast or small
   faces whose boxes no longer overlap can still match) fused with the detection score.
3. Stage 2: still-unmatched confirmed tracks <- low-score detections. Blurred, dim or turned faces
   score low; ByteTrack's insight is that these boxes are worth keeping when they continue a track,
   while on their own they are mostly clutter.
4. Stage 3: tentative (new, unconfirmed) tracks <- remaining high-score detections, then <- remaining
   low-score ones (these keep a tentative track alive but do not count towards confirming it).
5. Unmatched high-score detections (and low-score ones cut by the frame border: faces entering the
   picture) start tentative tracks, anonymized at once. A tentative track missed once is dropped (a
   blinking false positive); one detected ``min_hits`` times is confirmed and, when missed, coasts
   on its predicted box for ``lost_track_buffer`` frames, still anonymized (``predicted=True``).

Privacy invariants (tested): every input detection with ``score >= high_thresh`` is in the output,
confirmed or not; a track's output box is its smoothed box grown with its speed and, while
coasting, with the filter's position uncertainty (``smoothing.py``).

Track ids start at 1 for each video (``reset()``) and increase in creation order, so the same input
gives the same ids and, with the same key, the same seeds (``seeds.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
import lap

from faceanon_video.geometry import buffered_iou
from faceanon_video.track.kalman import BoxKalman, cxcywh_to_xyxy
from faceanon_video.track.seeds import TrackSeeder, random_key
from faceanon_video.track.smoothing import OneEuro, hold_pad, motion_pad, move_landmarks, pad_boxes
from faceanon_video.types import Detections, Frame

__all__ = ["ByteTracker", "ByteTrackSettings", "buffered_iou"]

log = logging.getLogger(__name__)


def _touches_border(xyxy: np.ndarray, frame: Frame, margin_px: float | None) -> np.ndarray:
    if margin_px is None:
        return np.zeros(len(xyxy), bool)
    return (
        (xyxy[:, 0] <= margin_px)
        | (xyxy[:, 1] <= margin_px)
        | (xyxy[:, 2] >= frame.width - margin_px)
        | (xyxy[:, 3] >= frame.height - margin_px)
    )


def _assign(similarity: np.ndarray, min_similarity: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching; pairs below the gate stay unmatched.

    Pairs under the gate are zeroed before solving so they cannot displace a valid pair, then
    dropped. ``lap.lapjv`` rather than scipy's ``linear_sum_assignment``: importing
    ``scipy.optimize`` took 0.5-1.5 s of every run's start-up on a 2-core machine (10-20 % of a
    3 s clip), while lapjv costs ~60-90 us a call against scipy's ~8 us (four calls a frame:
    ~0.25 ms more per frame, under 1 % of a 720p frame's CPU; the import is the larger cost for
    videos shorter than ~2-6 min at 30 fps).
    """
    gated = np.where(similarity >= min_similarity, similarity, 0.0)
    if not gated.size:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    _, col_of_row, _ = lap.lapjv(-gated, extend_cost=True)
    rows = np.flatnonzero(col_of_row >= 0)
    cols = col_of_row[rows].astype(np.intp)
    valid = gated[rows, cols] > 0.0
    return rows[valid], cols[valid]


@dataclass
class _Tracks:
    """Live tracks as parallel arrays (one row per track), so every step is one vectorised op."""

    track_id: np.ndarray  # (n,) int64
    mean: np.ndarray  # (n, 8) Kalman state
    cov: np.ndarray  # (n, 8, 8)
    hits: np.ndarray  # (n,) matched detections so far
    confirmed: np.ndarray  # (n,) bool
    since_seen: np.ndarray  # (n,) frames since the last matched detection (0 = detected now)
    unlooked: np.ndarray  # (n,) bool: a pass did not look for it closely enough (``searched``)
    struck: np.ndarray  # (n,) bool: it was forgiven a miss since it was last found
    missed: np.ndarray  # (n,) bool: a pass looked for it (``searched``) after it coasted its buffer, and missed
    score: np.ndarray  # (n,) last detection score
    # Box and landmarks, smoothed together (One-Euro state): [x0, y0, x1, y1, 5 x (x, y)], NaN
    # landmarks if unknown. One array so one filter step serves both.
    shape: np.ndarray  # (n, 14)
    shape_rate: np.ndarray  # (n, 14)
    pad: np.ndarray  # (n, 2) per-side motion padding last output (peak-hold state)

    @classmethod
    def empty(cls) -> _Tracks:
        shapes = {
            "track_id": ((0,), np.int64), "mean": ((0, 8), float), "cov": ((0, 8, 8), float),
            "hits": ((0,), np.int64), "confirmed": ((0,), bool), "since_seen": ((0,), np.int64),
            "missed": ((0,), bool), "unlooked": ((0,), bool), "struck": ((0,), bool),
            "score": ((0,), np.float32), "shape": ((0, 14), float), "shape_rate": ((0, 14), float),
            "pad": ((0, 2), float),
        }  # fmt: skip
        return cls(**{name: np.zeros(shape, dtype) for name, (shape, dtype) in shapes.items()})

    def __len__(self) -> int:
        return len(self.track_id)

    @property
    def box(self) -> np.ndarray:
        return self.shape[:, :4]

    @property
    def landmarks(self) -> np.ndarray:
        return self.shape[:, 4:].reshape(-1, 5, 2)

    def take(self, index) -> _Tracks:
        return _Tracks(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def concat(self, other: _Tracks) -> _Tracks:
        return _Tracks(**{f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)})


@dataclass(frozen=True)
class ByteTrackSettings:
    """Every knob of ``ByteTracker``, with what turning it buys and costs."""

    #: Detections at or above this score start tracks and are always anonymized. Set it to the
    #: detection threshold the user chose; lower = more false positives blurred, higher = more
    #: faces left to the tracker alone.
    high_thresh: float = 0.6
    #: Detections in [low_thresh, high_thresh) only extend existing tracks (stage 2); the detector
    #: must run at this threshold for stage 2 to see them. Lower = tracks survive blur and dim light
    #: longer, but clutter can hijack a lost track.
    low_thresh: float = 0.3
    #: Minimum buffered IoU x score to match a high detection to a track. Lower = fewer broken
    #: tracks on fast motion, more id swaps when faces cross.
    match_thresh: float = 0.2
    #: Minimum buffered IoU for low-score detections (no score fusion: scores are low there).
    low_match_thresh: float = 0.3
    #: How much boxes are enlarged before IoU (fraction of size per side). Larger = tolerates faster
    #: motion and tiny faces, weaker separation of nearby faces.
    iou_buffer: float = 0.3
    #: Per coasted frame the buffer grows by this fraction (up to 4x), so a track re-acquires a face
    #: that drifted from its prediction during a long miss. Larger = fewer new ids after
    #: occlusions, more risk of taking a neighbour's face.
    buffer_growth: float = 0.25
    #: Low-score detections within this many pixels of the frame border also start tracks: a face
    #: entering the frame is cut off and scores low. None = only high-score detections start tracks
    #: (fewer false positives along the borders).
    border_px: float | None = 2.0
    #: Detections needed to confirm a track. A tentative track is dropped at its first miss; a
    #: confirmed one coasts. 1 = every detection coasts (blinking false positives become lingering
    #: blobs); higher = a real face first seen briefly is not carried through a following miss.
    min_hits: int = 2
    #: Frames a confirmed track coasts without a detection before it is dropped. Longer = covers
    #: longer occlusions and detector failures, but a face that left leaves a drifting blob behind.
    lost_track_buffer: int = 15
    #: Frames of motion added around each box (per side) so smoothing lag and acceleration do not
    #: uncover a moving face. Larger = safer, bigger masks on fast movers.
    motion_lead: float = 1.5
    #: Standard deviations of the predicted position added around coasting boxes.
    sigma_k: float = 2.0
    #: Cap on the per-side growth, as a fraction of the box size. Measured on the synthetic clip:
    #: 1.0 leaves a sprinting, motion-blurred face uncovered for a few frames, 1.5 does not.
    max_growth: float = 1.5
    #: The growth rises at once but shrinks by at most this factor per frame, so noisy speed
    #: estimates do not make the mask breathe. Lower = masks tighten sooner after a face slows.
    pad_decay: float = 0.9
    #: Padding per side, as a fraction of the box size, around a track's first box (then fading by
    #: ``pad_decay`` per frame). A face's first detection is often of part of it (stepping out from
    #: behind something, entering at the frame edge): on the synthetic clip the first box of a face
    #: emerging from behind a pillar was 80 % of its width, and the mask missed its visible edge.
    birth_pad: float = 0.15
    #: One-Euro settings for boxes and landmarks; None = raw detector boxes (jittery).
    smoother: OneEuro | None = OneEuro()
    #: Motion-model noise settings.
    kalman: BoxKalman = BoxKalman()

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_thresh <= self.high_thresh:
            raise ValueError(f"need 0 <= low_thresh <= high_thresh, got {self.low_thresh}, {self.high_thresh}")
        if self.min_hits < 1 or self.lost_track_buffer < 0:
            raise ValueError(f"need min_hits >= 1 and lost_track_buffer >= 0, got {self.min_hits}, {self.lost_track_buffer}")


class ByteTracker:
    """Multi-face tracker; ``update(detections | None, frame) -> Detections`` with ids, flags, seeds.

    Settings come as a ``ByteTrackSettings`` and/or its field names as keywords; seeds come from
    ``key`` or ``seeder`` (``seeds.TrackSeeder``), and with neither a random key is drawn, so seeds
    differ between runs.

    >>> t = ByteTracker(key=b"k" * 32, min_hits=2)
    >>> frame = Frame(bgr=np.zeros((100, 100, 3), np.uint8), index=0)
    >>> face = Detections(xyxy=[[10, 10, 40, 40]], score=[0.9])
    >>> [t.update(face, frame).track_id.tolist() for _ in range(3)]
    [[1], [1], [1]]
    >>> out = t.update(Detections.empty(), frame)  # missed: a confirmed track coasts
    >>> out.track_id.tolist(), out.predicted.tolist()
    ([1], [True])
    """

    follows_faces = True  # ids persist across frames (``base.Tracker``)

    def __init__(
        self,
        settings: ByteTrackSettings | None = None,
        *,
        key: bytes | None = None,
        seeder: TrackSeeder | None = None,
        **overrides,
    ) -> None:
        self.settings = replace(settings or ByteTrackSettings(), **overrides)
        self.seeder = seeder or TrackSeeder(key if key is not None else random_key())
        self.reset()

    def reset(self) -> None:
        """Forget all tracks; ids restart at 1 (call between videos)."""
        self._tracks = _Tracks.empty()
        self._next_id = 1

    def cut(self) -> None:
        """A shot change: end every track. Ids keep counting, so faces of the new shot get new ids
        and seeds instead of inheriting those of whoever stood at the same place before the cut."""
        self._tracks = _Tracks.empty()

    def __len__(self) -> int:
        """Number of live tracks (detected, tentative or coasting)."""
        return len(self._tracks)

    def predict_xyxy(self) -> np.ndarray:
        """(n, 4) boxes where the live tracks are expected in the next frame, grown like the output
        boxes of coasting tracks. Does not change the state; used to place re-detection regions."""
        t = self._tracks
        if not len(t):
            return np.zeros((0, 4), np.float32)
        mean, cov = self.settings.kalman.predict(t.mean, t.cov, freeze_size=t.since_seen > 0)
        box = cxcywh_to_xyxy(mean[:, :4])
        return pad_boxes(box, self._pad(mean, cov, box, coasting=np.ones(len(t), bool)))

    def update(self, detections: Detections | None, frame: Frame, searched: Callable[[np.ndarray], np.ndarray] | None = None) -> Detections:
        """Advance one frame. ``None`` = the detector did not run: every track coasts, nothing is
        dropped for being missed. ``searched``: (n, 4) predicted boxes -> (n,) bool, whether the
        detector could have found a face there (``TiledDetector.searched``); a tentative track it
        could not have found is kept, as on a skipped frame. Returns one row per live track (see
        the class docstring)."""
        t = self._tracks
        # 1. Predict.
        t.mean, t.cov = self.settings.kalman.predict(t.mean, t.cov, freeze_size=t.since_seen > 0)
        t.since_seen = t.since_seen + 1
        source = np.full(len(t), -1, np.intp)  # detection row feeding each track this frame

        if detections is not None:
            dets = detections
            high = dets.score >= self.settings.high_thresh
            low = (dets.score >= self.settings.low_thresh) & ~high
            # The net widens while a track coasts: its position is less and less certain.
            buffer = self.settings.iou_buffer * np.minimum(1.0 + self.settings.buffer_growth * (t.since_seen - 1), 4.0)
            iou = buffered_iou(cxcywh_to_xyxy(t.mean[:, :4]), dets.xyxy, buffer)
            fused = iou * dets.score[None, :]
            # 2-4. Association stages: (tracks, detections, gate, fuse score, counts towards confirmation).
            # Low-score boxes keep a tentative track alive and, at the same place again, confirm it:
            # a small, dim or grey face found at 0.5 once often scores 0.25-0.5 after (recall clips:
            # the 26 px grey face in shade was dropped at its first miss and leaked for 4 frames).
            taken = np.zeros(len(dets), bool)
            stages = (
                (t.confirmed, high, self.settings.match_thresh, True, True),
                (t.confirmed, low, self.settings.low_match_thresh, False, True),
                (~t.confirmed, high, self.settings.match_thresh, True, True),
                (~t.confirmed, low, self.settings.low_match_thresh, False, True),
            )
            hit = np.zeros(len(t), bool)
            for track_mask, det_mask, gate, fuse, counts in stages:
                if not (track_mask.any() and det_mask.any()):
                    continue
                track_rows = np.flatnonzero(track_mask & (source < 0))
                det_rows = np.flatnonzero(det_mask & ~taken)
                if not len(track_rows) or not len(det_rows):
                    continue
                ti, di = _assign((fused if fuse else iou)[track_rows][:, det_rows], gate)
                source[track_rows[ti]] = det_rows[di]
                taken[det_rows[di]] = True
                hit[track_rows[ti]] = counts
            # A face entering the frame is only partly visible and scores low, so low-score boxes
            # cut by the frame border may start tracks too.
            entering = low & _touches_border(dets.xyxy, frame, self.settings.border_px)
            free_high = np.flatnonzero((high | entering) & ~taken)
            self._correct(t, source, hit, dets)
            # 5. Tentative tracks must be re-detected every time the detector looks.
            looked = np.ones(len(t), bool) if searched is None or not len(t) else searched(cxcywh_to_xyxy(t.mean[:, :4]))
            # A miss where a pass looked (``searched``) ends a tentative track at once, and a
            # confirmed one once it has coasted ``lost_track_buffer`` (below). But a track that
            # passes did not look at (a small face between visits of its tile, every 7 x
            # --detect-every frames) is forgiven one such miss since it was last found: a grey
            # face in shade scores below the threshold on some visits.
            miss = looked & (source < 0)
            late = t.since_seen > self.settings.lost_track_buffer
            forgive = miss & t.unlooked & ~t.struck & (~t.confirmed | late)
            t.struck |= forgive
            t.missed |= miss & late & ~forgive
            t.unlooked |= ~looked
            keep = t.confirmed | (source >= 0) | ~looked | forgive
            if not keep.all():
                t, source = t.take(keep), source[keep]
            if len(free_high):
                t = t.concat(self._start(dets[free_high]))
                source = np.concatenate([source, free_high])

        predicted = t.since_seen > 0
        self._coast(t, predicted)
        # Drop tracks lost for too long or whose predicted box has left the frame entirely.
        box = cxcywh_to_xyxy(t.mean[:, :4])
        inside = (box[:, 2] > 0) & (box[:, 3] > 0) & (box[:, 0] < frame.width) & (box[:, 1] < frame.height)
        # A track coasts ``lost_track_buffer`` frames, and on until a pass has then looked for it
        # closely enough and missed it (a small face between tile visits), but never past 3x that.
        buffer = self.settings.lost_track_buffer
        alive = ((t.since_seen <= buffer) | (~t.missed & (t.since_seen <= 3 * buffer))) & inside
        if log.isEnabledFor(logging.DEBUG) and not alive.all():
            log.debug("frame %d: dropped tracks %s", frame.index, t.track_id[~alive].tolist())
        if not alive.all():
            t, source, predicted = t.take(alive), source[alive], predicted[alive]
        self._tracks = t
        return self._output(t, source, predicted, detections, frame)

    # -- steps ------------------------------------------------------------------------------------

    def _start(self, dets: Detections) -> _Tracks:
        n = len(dets)
        mean, cov = self.settings.kalman.initiate(dets.xyxy)
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        log.debug("new tracks %s", ids.tolist())
        shape = _shape(dets.xyxy, dets.landmarks)
        return _Tracks(
            track_id=ids, mean=mean, cov=cov, hits=np.ones(n, np.int64), confirmed=np.full(n, self.settings.min_hits <= 1),
            since_seen=np.zeros(n, np.int64), missed=np.zeros(n, bool), unlooked=np.zeros(n, bool), struck=np.zeros(n, bool), score=dets.score.copy(), shape=shape, shape_rate=np.zeros_like(shape),
            pad=np.zeros((n, 2)),
        )  # fmt: skip

    def _correct(self, t: _Tracks, source: np.ndarray, hit: np.ndarray, dets: Detections) -> None:
        """Kalman update and smoothing for tracks that got a detection this frame."""
        rows = np.flatnonzero(source >= 0)
        if not len(rows):
            return
        d = source[rows]
        t.mean[rows], t.cov[rows] = self.settings.kalman.update(t.mean[rows], t.cov[rows], dets.xyxy[d])
        t.hits[rows] += hit[rows]
        t.confirmed[rows] |= t.hits[rows] >= self.settings.min_hits
        t.since_seen[rows] = 0
        t.missed[rows] = False
        t.struck[rows] = False
        t.score[rows] = dets.score[d]
        shape = _shape(dets.xyxy[d], dets.landmarks[d])
        if self.settings.smoother is None:
            t.shape[rows] = shape
            return
        scale = shape[:, 3] - shape[:, 1]
        t.shape[rows], t.shape_rate[rows] = self.settings.smoother.step(shape, (t.shape[rows], t.shape_rate[rows]), scale)[1]

    def _coast(self, t: _Tracks, predicted: np.ndarray) -> None:
        """Tracks without a detection take the motion model's box and carry their landmarks along."""
        if not predicted.any():
            return
        new_box = cxcywh_to_xyxy(t.mean[predicted, :4])
        moved = move_landmarks(t.landmarks[predicted], t.box[predicted], new_box)
        t.shape[predicted] = np.concatenate([new_box, moved.reshape(-1, 10)], axis=1)

    def _pad(self, mean: np.ndarray, cov: np.ndarray, box: np.ndarray, coasting: np.ndarray) -> np.ndarray:
        sigma = np.sqrt(cov[:, [0, 1], [0, 1]]) * coasting[:, None]
        return motion_pad(box, mean[:, 4:6], sigma, self.settings.motion_lead, self.settings.sigma_k, self.settings.max_growth)

    def _output(
        self, t: _Tracks, source: np.ndarray, predicted: np.ndarray, dets: Detections | None, frame: Frame
    ) -> Detections:
        pad = self._pad(t.mean, t.cov, t.box, predicted)
        born = t.hits == 1
        pad[born] = np.maximum(pad[born], self.settings.birth_pad * (t.box[born, 2:] - t.box[born, :2]))
        t.pad = hold_pad(pad, t.pad, self.settings.pad_decay)
        xyxy = pad_boxes(t.box, t.pad)
        xyxy = np.clip(xyxy, 0, [frame.width, frame.height, frame.width, frame.height])
        # Rows are already in id order: new tracks are appended, removals keep the order.
        return Detections(
            xyxy=xyxy,
            score=t.score,
            landmarks=t.landmarks,
            track_id=t.track_id,
            predicted=predicted,
            seed=self.seeder.seeds_for(t.track_id),
            data=_carry_data(dets, source),
        )


def _shape(xyxy: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return np.concatenate([xyxy, landmarks.reshape(-1, 10)], axis=1).astype(float)


def _carry_data(dets: Detections | None, source: np.ndarray) -> dict[str, np.ndarray]:
    """Per-face extras (e.g. a landmark mesh) for detected rows; NaN for predicted rows. Non-float
    arrays cannot be marked unknown, so they are dropped."""
    if dets is None or not dets.data:
        return {}
    has = source >= 0
    out = {}
    for key, values in dets.data.items():
        if not np.issubdtype(values.dtype, np.floating):
            log.debug("tracker drops non-float Detections.data[%r]", key)
            continue
        carried = np.full((len(source), *values.shape[1:]), np.nan, values.dtype)
        carried[has] = values[source[has]]
        out[key] = carried
    return out
