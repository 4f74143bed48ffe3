"""The one front door to tracking: ``TrackingStage``.

It owns everything that happens between a frame's detections and the faces to anonymize on it:
the tracker (``ByteTracker``, or ``PassThroughTracker`` with ``--no-track``), the score thresholds,
shot-change detection (every track ends at a cut), re-detection around tracks on frames the
full-frame detector skips (``RoiRedetector``), and, for files, the frames held back so faces found
late are covered on earlier frames too (``Backfill``). Files, live streams, ``bench`` and ``eval``
all go through the same few calls:

* ``step(frame, detections)``: in frame order; returns the frames now final with their faces (files
  may hold some back; ``flush()`` returns the rest at the end of a video);
* ``track(frame, detections)``: this frame's faces at once (live streams, images);
* ``redetect_job(frame)``: the re-detection of a skipped frame as a job another thread can run
  against a deadline (live streams);
* ``should_detect(frame)``, ``high_thresh`` / ``low_thresh``, ``detect_every``, ``reset()``.

Faces come back as ``Detections``, or as the exception to fail closed on: a detection or tracking
failure is never raised here, it travels with its frame to the anonymizer step, which obscures it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from faceanon_video.failures import DamagedFrame
from faceanon_video.config import RunConfig
from faceanon_video.detect import DEFAULT_THRESHOLDS
from faceanon_video.detect.base import Detector
from faceanon_video.track.backfill import Backfill
from faceanon_video.track.base import Tracker
from faceanon_video.track.bytetrack import ByteTracker
from faceanon_video.track.passthrough import PassThroughTracker
from faceanon_video.track.roi import RoiRedetector
from faceanon_video.keys import load_key, random_key
from faceanon_video.track.shots import ShotChangeDetector
from faceanon_video.types import Detections, Frame

__all__ = ["LOW_SCORE_FRACTION", "Faces", "TrackingStage", "build_tracker", "thresholds"]

log = logging.getLogger(__name__)

#: A frame's faces, or the error its frame must be obscured for (fail closed).
Faces = Detections | BaseException

#: With tracking, the detector runs at this fraction of the anonymization threshold: ByteTrack's second
#: stage uses those low-score boxes (blurred, dim, turned faces) to continue existing tracks only.
LOW_SCORE_FRACTION = 0.5


def thresholds(config: RunConfig, high_thresh: float | None = None) -> tuple[float, float]:
    """(high, low): faces scoring ``high`` are anonymized on their own; with tracking, the detector
    reports down to ``low`` and those boxes only continue existing tracks (without, low == high)."""
    if high_thresh is None:
        high_thresh = config.thresh if config.thresh is not None else DEFAULT_THRESHOLDS[config.detector]
    return high_thresh, high_thresh * LOW_SCORE_FRACTION if config.track else high_thresh


def build_tracker(config: RunConfig, high_thresh: float = 0.5) -> Tracker:
    """ByteTrack (or, with ``--no-track``, a pass-through) seeded from ``--key-file`` or a per-run key."""
    key = load_key(config.key_file) if config.key_file else random_key()
    if not config.track:
        return PassThroughTracker(key=key)
    return ByteTracker(
        high_thresh=high_thresh,
        low_thresh=high_thresh * LOW_SCORE_FRACTION,
        lost_track_buffer=config.lost_track_buffer,
        key=key,
    )


class TrackingStage:
    """detections -> tracked faces, in frame order (see the module docstring).

    Args:
        tracker: any ``track.base.Tracker``.
        detect_full: runs the full-frame detector on a frame, on the calling thread; used at a shot
            change on a frame the schedule skipped (new tracks need a full detection to start from).
        high_thresh, low_thresh: see ``thresholds``.
        roi: re-detection around tracks (None: skipped frames only coast).
        hold: hold frames back (files: ``Backfill``); needs a tracker that follows faces.
        detect_every: full-frame detection every N-th frame (None: 2 when holding frames, else 1).
        timings: per-stage seconds lists ("detect", "track") to append to.
    """

    def __init__(
        self,
        tracker: Tracker,
        detect_full: Callable[[Frame], Detections],
        *,
        high_thresh: float,
        low_thresh: float,
        roi: RoiRedetector | None = None,
        hold: bool = False,
        detect_every: int | None = None,
        timings: dict[str, list[float]] | None = None,
        searched: Callable[[int, tuple[int, ...], np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.tracker = tracker
        # Which boxes a full pass looked at closely enough (``TiledDetector.searched``): a small face
        # found on an enlarged tile is not given up at the next pass whose tile is elsewhere.
        self.searched = searched
        self.high_thresh = high_thresh
        self.low_thresh = low_thresh
        self.roi = roi
        self.timings = timings if timings is not None else defaultdict(list)
        self._detect_full = detect_full
        self._shots = ShotChangeDetector()
        hold = hold and tracker.follows_faces
        # Skipping frames is safe by default only where held frames let backfill cover what they miss.
        self.detect_every = detect_every or (2 if hold else 1)
        self.backfill = Backfill(roi, detect_every=self.detect_every) if hold else None
        self._failed_pass: BaseException | None = None  # the last full pass's error, until one succeeds

    @classmethod
    def from_config(
        cls,
        config: RunConfig,
        detect_full: Callable[[Frame], Detections],
        *,
        live: bool,
        high_thresh: float | None = None,
        roi_detector: Detector | None = None,
        full_frame_detector: Detector | None = None,
        tracker: Tracker | None = None,
        timings: dict[str, list[float]] | None = None,
    ) -> TrackingStage:
        """The stage a run with ``config`` uses. ``roi_detector``: a detector of its own for
        re-detection around tracks (at ``low_thresh``, full resolution); ``full_frame_detector``:
        the one ``RoiRedetector`` falls back to when the crops would cost more than a full pass.
        Files (``live=False``) hold frames back; live streams cannot wait."""
        high, low = thresholds(config, high_thresh)
        roi = RoiRedetector(roi_detector, full_frame_detector=full_frame_detector) if roi_detector is not None and config.track else None
        return cls(
            tracker or build_tracker(config, high_thresh=high),
            detect_full,
            high_thresh=high,
            low_thresh=low,
            roi=roi,
            hold=config.track and not live,
            detect_every=config.detect_every,
            timings=timings,
            searched=getattr(full_frame_detector, "searched", None),
        )

    @property
    def holds_frames(self) -> bool:
        return self.backfill is not None

    def should_detect(self, frame: Frame) -> bool:
        """Whether the full-frame detector runs on this frame (every ``detect_every``-th frame)."""
        return frame.index % self.detect_every == 0

    def step(self, frame: Frame, detections: Detections | BaseException | None) -> list[tuple[Frame, Faces]]:
        """Track the next frame (in order). Returns the frames now final with their faces, in order:
        this one at once, or, when holding frames, those the look-back has settled (``flush`` returns
        the rest). Without holding, a skipped frame is re-detected around the tracks."""
        if self.backfill is None:
            return [(frame, self.track(frame, detections))]
        faces, full_pass, cut = self._track(frame, detections, redetect=False)
        start = time.perf_counter()
        settled = self.backfill.push(frame, faces, full_pass, cut)
        if self.timings["track"]:
            self.timings["track"][-1] += time.perf_counter() - start  # part of this frame's tracking
        return settled

    def track(self, frame: Frame, detections: Detections | BaseException | None) -> Faces:
        """This frame's faces now, never held back (live streams, images); on a skipped frame
        (``detections`` None), the tracked faces are looked for around their predicted boxes."""
        return self._track(frame, detections, redetect=True)[0]

    def flush(self) -> list[tuple[Frame, Faces]]:
        """The frames ``step`` still holds (call at the end of each video)."""
        return self.backfill.flush() if self.backfill is not None else []

    def redetect_job(self, frame: Frame) -> Callable[[], Detections | BaseException] | None:
        """Re-detection around the tracks for a skipped ``frame``, as a job for another thread (the
        live runner runs it against a deadline); None where there is nothing to re-detect with. Call
        in frame order, before ``track(frame, ...)``; run one job at a time (the re-detector's
        detector is not shared between threads). Errors are returned, for the frame to fail closed."""
        if not self._can_redetect():
            return None
        predicted_xyxy = self.tracker.predict_xyxy()  # where the tracks will be, read in frame order
        roi = self.roi

        def redetect() -> Detections | BaseException:
            start = time.perf_counter()
            try:
                return roi.detect(frame, predicted_xyxy)
            except Exception as exc:  # noqa: BLE001 - returned so the frame fails closed
                return exc
            finally:
                self.timings["detect"].append(time.perf_counter() - start)

        return redetect

    def reset(self) -> None:
        """Forget everything carried from frame to frame (between unrelated videos or images)."""
        self.tracker.reset()
        self._shots.reset()
        self._failed_pass = None
        if self.backfill is not None:
            self.backfill.reset()

    def _can_redetect(self) -> bool:
        return self.roi is not None and self.tracker.follows_faces

    def _track(self, frame: Frame, detections: Detections | BaseException | None, redetect: bool) -> tuple[Faces, bool, bool]:
        """This frame's faces (or the error to fail closed on), whether the full-frame detector ran on
        it, and whether it starts a new shot. ``redetect``: on a skipped frame, look for the tracked
        faces around their predicted boxes (else they coast until ``backfill`` settles them).

        A failed full pass fails the skipped frames after it too, until a pass succeeds (``backfill``
        fails those before it): nothing checked them. The tracker is not advanced on them, so a
        detector outage does not expire tracks as if their faces had gone."""
        full_pass = detections is not None
        try:
            if isinstance(detections, BaseException):
                raise detections
            if frame.obscured:
                # Damaged in the input (io.decode): nothing to learn from it; the tracks wait.
                raise DamagedFrame(f"frame {frame.index} is damaged in the input")
            if detections is None and self._failed_pass is not None:
                raise self._failed_pass
            cut, detections = self._handle_shot_change(frame, detections)
            full_pass = detections is not None
            if detections is None and redetect and self._can_redetect():
                # Skipped frame (--detect-every): look again around the live tracks only.
                start = time.perf_counter()
                detections = self.roi.detect(frame, self.tracker.predict_xyxy())
                self.timings["detect"].append(time.perf_counter() - start)
            start = time.perf_counter()
            if full_pass and self.searched is not None and isinstance(self.tracker, ByteTracker):
                searched = self.searched
                faces = self.tracker.update(detections, frame, searched=lambda xyxy: searched(frame.index, frame.shape, xyxy))
            else:
                faces = self.tracker.update(detections, frame)
            self.timings["track"].append(time.perf_counter() - start)
            if full_pass:
                self._failed_pass = None
            return faces, full_pass, cut
        except Exception as exc:  # noqa: BLE001 - fail closed: the frame is obscured downstream
            if full_pass:
                self._failed_pass = exc
            return exc, full_pass, False

    def _handle_shot_change(self, frame: Frame, detections: Detections | None) -> tuple[bool, Detections | None]:
        """At a shot change, end all tracks (so a new person never inherits the id, seed and fake face
        of someone else) and make sure this frame has a full detection to start the new tracks from.
        Returns whether this frame starts a new shot, and its detections."""
        if not self._shots.is_cut(frame):
            return False, detections
        log.debug("frame %d: shot change", frame.index)
        self.tracker.cut()
        if detections is None:
            start = time.perf_counter()
            detections = self._detect_full(frame)
            self.timings["detect"].append(time.perf_counter() - start)
        return True, detections
