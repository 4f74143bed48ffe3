"""The per-frame stage chain: detect -> ``TrackingStage`` -> anonymize, failing closed.

Independent of where frames come from: the file runner (``pipeline.process_video``), the live runner
(``live.runner``), ``bench`` and ``eval`` all drive a ``FrameProcessor`` through the same calls.

Fail closed: a frame whose detection, tracking or anonymization failed is blacked out whole, never
passed through. Where that is decided:

* ``FrameProcessor.detect`` returns a detector's error instead of raising it, so it stays with its frame;
* ``TrackingStage`` (``track.stage``) turns any error of detection or tracking into that frame's
  "faces" (the exception), held back and released in order like any other frame;
* ``FrameProcessor._anonymize`` hands such a frame to ``_detection_failed``, and a frame whose track
  file write or anonymizer raised to ``_anonymizer_failed``: both obscure it whole.

``--spare`` / ``--only``: a ``people.spare.TrackSelector`` picks, per frame, which tracked faces the
anonymizer gets; the track file and the vault still get every face. An error while selecting fails
closed like an anonymizer error (the whole frame is obscured). Files hold ``SPARE_LOOKAHEAD`` more
frames back, so a person confirmed a few frames into their track is shown from its start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

import numpy as np

from faceanon_video.anonymize.base import Anonymizer
from faceanon_video.anonymize.filters import CLASSIC_MODES, NoOp, obscure_whole_frame
from faceanon_video.config import RunConfig
from faceanon_video.detect import build_detector
from faceanon_video.detect.base import Detector
from faceanon_video.failures import DamagedFrame, FailureWatch
from faceanon_video.track.base import Tracker
from faceanon_video.track.stage import Faces, TrackingStage, thresholds
from faceanon_video.track.tracks_io import TrackWriter
from faceanon_video.types import Detections, Frame
from faceanon_video.vault import VaultWriteError, VaultWriter

__all__ = ["STAGES", "FrameProcessor", "build_anonymizer", "build_selector", "detector_factory"]

log = logging.getLogger(__name__)

#: The stages timed in ``FrameProcessor.timings`` (decode and encode by the file runner).
STAGES = ("decode", "detect", "track", "anonymize", "encode")
#: Frames a file run holds back under ``--spare`` / ``--only`` so that the selector decides with the
#: evidence of the frames after each one (``TrackSelector.observe`` / ``decide``): a confirmation
#: takes 3 checks, 2 frames apart, so 10 frames let a streak that starts on a frame confirm before
#: the frame leaves. Measured in the README (People): --spare recall, and the memory (10 frames).
SPARE_LOOKAHEAD = 10
#: Seconds before ``--start`` a file run decodes, detects and tracks without writing anything of them
#: (``Frame.warm_up``): a face already in view at the start (a profile the detector alone misses on
#: the first frames, which the tracker follows from where it was found) is covered from the span's
#: first frame, as in a run over the whole video. Also how far before its cut each segment of a
#: segment-parallel run starts (``segments.OVERLAP_S``), for the same reason.
WARM_UP_S = 2.0


def build_anonymizer(config: RunConfig) -> Anonymizer:
    from faceanon_video.testing.faults import inject  # test seam: a no-op unless FACEANON_FAULTS is set

    return inject("anonymize", _build_anonymizer(config))


def _build_anonymizer(config: RunConfig) -> Anonymizer:
    if config.mode == "none":
        return NoOp()
    if config.mode == "diffusion":
        from faceanon_video.anonymize.diffusion import build_diffusion_anonymizer  # optional: torch, diffusers

        return build_diffusion_anonymizer(config)
    kwargs = {"mask_scale": config.mask_scale, "mask_shape": config.mask}
    if config.mode == "image":
        kwargs["image_path"] = config.replace_image
    return CLASSIC_MODES[config.mode](**kwargs)


def build_selector(config: RunConfig):
    """The ``TrackSelector`` of ``--spare`` / ``--only`` (None without them). Loads and embeds the
    reference photos now, so a missing photo or one without a face fails before any frame is read."""
    if not (config.spare or config.only):
        return None
    from faceanon_video.people.embed import FaceEmbedder, PhotoEmbedder
    from faceanon_video.people.spare import TrackSelector, load_references

    embedder = FaceEmbedder()  # one SFace for the photos and the tracks (both used on this thread only)
    references = load_references(config.spare or config.only, PhotoEmbedder(embedder))
    return TrackSelector(references, mode="spare" if config.spare else "only", embedder=embedder)


def detector_factory(config: RunConfig, threshold: float | None = None, min_face_px: float | None = None) -> Callable[[], Detector]:
    threshold = config.thresh if threshold is None else threshold
    min_face_px = config.min_face_px if min_face_px is None else min_face_px
    return lambda: build_detector(config.detector, threshold=threshold, min_face_px=min_face_px)


class FrameProcessor:
    """detect -> track -> anonymize for one stream of frames, failing closed.

    ``detect`` may run on several threads at once (each gets its own detector); the rest must be
    called in frame order: ``finish`` (this frame now: live streams, images) or, for files,
    ``finish_held`` + ``flush``, which hold the last frames back so that faces found late are
    covered on earlier frames too (``track.backfill``). ``live=True`` processors (streams, which
    cannot wait) detect every frame by default and re-detect around tracks on skipped frames.
    ``process`` is ``finish(frame, detect(frame))``.

    Public hooks: ``tracking`` (the ``TrackingStage``: thresholds, schedule, re-detection jobs),
    ``track_writer`` / ``vault_writer`` (set per input by the file runner), ``on_release`` (called
    with each frame, as it came in, once it is anonymized or obscured: bench times frames with it), ``timings``, and the
    counters ``frames`` / ``faces`` / ``obscured_frames`` (``reset_counters``).
    """

    def __init__(
        self,
        config: RunConfig,
        make_detector: Callable[[], Detector] | None = None,
        tracker: Tracker | None = None,
        anonymizer: Anonymizer | None = None,
        live: bool = False,
    ) -> None:
        self.config = config
        self.live = live
        self._local = threading.local()
        self.timings: dict[str, list[float]] = defaultdict(list)
        roi_detector = None
        if make_detector is not None:
            self._make_detector = make_detector
            self.detector = self._thread_detector()
            high_thresh, low_thresh = thresholds(config, float(getattr(self.detector, "threshold", 0.5)))
        else:
            high_thresh, low_thresh = thresholds(config)
            # With tracking, the tracker's second stage needs the low-score boxes, so the detector
            # reports them too; faces below high_thresh are only anonymized when they continue a track.
            self._make_detector = detector_factory(config, threshold=low_thresh)
            self.detector = self._thread_detector()  # built now so model errors surface before any frame
            if config.track:
                # Re-detection around tracks (skipped frames, faces found late). Own instance (used only
                # in frame order), at full resolution (min_face_px=0).
                roi_detector = detector_factory(config, low_thresh, min_face_px=0)()
        self.tracking = TrackingStage.from_config(
            config,
            lambda frame: self._thread_detector().detect(frame),
            live=live,
            high_thresh=high_thresh,
            roi_detector=roi_detector,
            full_frame_detector=self.detector,  # this thread's; the pool's threads have their own
            tracker=tracker,
            timings=self.timings,
        )
        self.anonymizer = anonymizer or build_anonymizer(config)
        self.selector = build_selector(config)  # --spare / --only: which tracked faces are anonymized
        # Files: (frame, faces, the selector's error) observed by the selector, not yet decided.
        self._undecided: deque[tuple[Frame, Faces, Exception | None]] = deque()
        self.embeddings = None  # --people / --gallery: a few embeddings per track, linked at the end of a file
        if config.people or config.gallery:
            from faceanon_video.people.embed import TrackEmbeddings

            self.embeddings = TrackEmbeddings()
        self.track_writer: TrackWriter | None = None  # set per input by process_video (--save-tracks)
        self.vault_writer: VaultWriter | None = None  # set per input by process_video (--vault)
        self.on_release: Callable[[Frame], None] | None = None
        self.frames = 0
        self.faces = 0
        self.obscured_frames = 0
        self.failures = FailureWatch()  # stops a run whose frames nearly all fail the same way
        self.track_ids: set[int] = set()  # for the report: how many tracks were covered
        self.obscure_reasons: dict[str, int] = defaultdict(int)  # for the report: why frames were obscured

    @property
    def detect_every(self) -> int:
        return self.tracking.detect_every

    @property
    def warm_up_s(self) -> float:
        """Seconds before ``--start`` a file run feeds this processor as warm-up (``WARM_UP_S``): only a
        tracker has anything to warm up."""
        return WARM_UP_S if self.config.track else 0.0

    def _thread_detector(self) -> Detector:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self._make_detector()
        return detector

    def should_detect(self, frame: Frame) -> bool:
        """Whether the full-frame detector runs on this frame (every ``detect_every``-th frame)."""
        return self.tracking.should_detect(frame)

    def detect(self, frame: Frame, force: bool = False) -> Detections | BaseException | None:
        """Full-frame detection, or None on frames the schedule skips (unless ``force``). Errors are
        returned, not raised, so that ``finish`` can fail closed on exactly the frame they belong to."""
        if not force and not self.should_detect(frame):
            return None
        start = time.perf_counter()
        try:
            return self._thread_detector().detect(frame)
        except Exception as exc:  # noqa: BLE001 - any failure must obscure the frame, not stop the run
            return exc
        finally:
            self.timings["detect"].append(time.perf_counter() - start)

    def redetect_job(self, frame: Frame) -> Callable[[], Detections | BaseException] | None:
        """For a frame the schedule skips: re-detection around the tracks as a job another thread
        can run (``TrackingStage.redetect_job``); None where there is none."""
        return self.tracking.redetect_job(frame)

    def finish(self, frame: Frame, detections: Detections | BaseException | None) -> Frame:
        """Track and anonymize, in frame order. Never returns a frame with a face it failed to cover."""
        return self._release(frame, self.tracking.track(frame, detections))

    def finish_held(self, frame: Frame, detections: Detections | BaseException | None) -> list[Frame]:
        """Like ``finish``, for files: frames may be held back until the next full-frame detection so
        that faces first found there are covered on the frames before it too (``track.backfill``).
        Returns the frames now final, in order; ``flush`` returns the rest."""
        return self._release_held(self.tracking.step(frame, detections))

    def flush(self) -> list[Frame]:
        """The frames ``finish_held`` still holds (call at the end of each video)."""
        return self._release_held(self.tracking.flush(), drain=True)

    def _release_held(self, items, drain: bool = False) -> list[Frame]:
        """Release tracked frames; with a selector, each after it has seen ``SPARE_LOOKAHEAD`` more.
        Warm-up frames (``Frame.warm_up``) end here: tracked (and seen by the selector), never returned."""
        if self.selector is None:
            out = [self._release(f, faces) for f, faces in items]
        else:
            for frame, faces in items:
                self._undecided.append((frame, faces, self._observe(frame, faces)))
            out = []
            while self._undecided and (drain or len(self._undecided) > SPARE_LOOKAHEAD):
                frame, faces, error = self._undecided.popleft()
                out.append(self._release(frame, faces, keep=error or self._decide(frame, faces)))
        return [frame for frame in out if not frame.warm_up]

    def _decide(self, frame: Frame, faces: Faces) -> np.ndarray | Exception | None:
        """The selector's decision (which faces to anonymize) for a frame it has observed."""
        return self._select(self.selector.decide, frame.index, faces)

    def _observe(self, frame: Frame, faces: Faces) -> Exception | None:
        """The selector's checks on a frame's original pixels, as it comes."""
        return self._select(self.selector.observe, frame, faces)

    @staticmethod
    def _select(step: Callable, frame_key, faces: Faces):
        """One selector step on a frame's faces; an error is returned, not raised, so that the frame's
        release obscures it (fail closed on exactly that frame)."""
        if isinstance(faces, BaseException):
            return None
        try:
            return step(frame_key, faces)
        except Exception as exc:  # noqa: BLE001 - fail closed on this frame when it is released
            return exc

    def process(self, frame: Frame) -> Frame:
        return self.finish(frame, self.detect(frame))

    def reset(self) -> None:
        """Forget everything carried from frame to frame (call between unrelated videos or images)."""
        self.tracking.reset()
        self.failures.reset()
        self._undecided.clear()
        if self.selector is not None:
            self.selector.states.clear()  # track ids start over: no evidence carries to another video
        if self.embeddings is not None:
            self.embeddings.reset()
        if hasattr(self.anonymizer, "reset"):
            self.anonymizer.reset()

    def reset_counters(self) -> FrameProcessor:
        """Zero the counters and timings (between inputs, or after a warm-up)."""
        self.frames = self.faces = self.obscured_frames = 0
        self.timings.clear()
        self.track_ids.clear()
        self.obscure_reasons.clear()
        return self

    # Releasing a frame: the only place a frame leaves, anonymized or obscured whole.

    def _release(self, frame: Frame, faces: Faces, keep: np.ndarray | Exception | None = None) -> Frame:
        if frame.warm_up:
            # Before --start: its tracking is done, and nothing of it may reach the track file, vault,
            # embeddings, counters, failure watch or progress. The one place warm-up frames are
            # dropped (``_release_held`` leaves them out of what it returns; the file runner never
            # encodes one either), so every side effect below stays the span's alone.
            return frame
        released = self._anonymize(frame, faces, keep)
        if self.on_release is not None:
            self.on_release(frame)
        return released

    def _anonymize(self, frame: Frame, faces: Faces, keep: np.ndarray | Exception | None = None) -> Frame:
        """Write the frame's faces to the track file and vault, then anonymize; obscure it whole on any
        error. ``keep``: the selector's decision made already (``_release_held``): which faces to
        anonymize, or the error that stopped it."""
        self.frames += 1
        if isinstance(faces, BaseException):
            return self._detection_failed(frame, faces)
        try:
            if self.track_writer is not None:
                self.track_writer.write(frame.index, frame.time_s, faces)
            if self.vault_writer is not None:
                self.vault_writer.write(frame, faces)  # the originals, before the anonymizer paints over them
            if self.embeddings is not None and faces.track_id is not None:
                self.embeddings.add(frame, faces)  # every face, spared or not, from the original pixels
            start = time.perf_counter()
            self.faces += len(faces)
            if faces.track_id is not None:
                self.track_ids.update(faces.track_id.tolist())
            if self.selector is not None:
                # Only the faces the selector does not clear; it reads the original pixels, so it runs
                # before the anonymizer paints over any of them.
                if isinstance(keep, Exception):
                    raise keep
                faces = faces[keep if keep is not None else self.selector.anonymize(frame, faces)]
            frame = self.anonymizer.apply(frame, faces)
            self.timings["anonymize"].append(time.perf_counter() - start)
            self.failures.record(None)
            return frame
        except VaultWriteError:
            raise  # the vault is the only copy of the faces: stop the run rather than lose one silently
        except Exception as exc:  # noqa: BLE001 - fail closed
            return self._anonymizer_failed(frame, exc)

    def _detection_failed(self, frame: Frame, error: BaseException) -> Frame:
        """Detection or tracking failed on this frame (or it sits where a pass failed): obscure it whole."""
        return self._obscure(frame, error)

    def _anonymizer_failed(self, frame: Frame, error: Exception) -> Frame:
        """Writing the frame's tracks or anonymizing it failed: obscure it whole."""
        return self._obscure(frame, error)

    def _obscure(self, frame: Frame, error: BaseException) -> Frame:
        # Damaged input frames are reported in one line by the reader, not one per frame.
        log.log(logging.DEBUG if isinstance(error, DamagedFrame) else logging.WARNING, "frame %d obscured: %s: %s", frame.index, type(error).__name__, error)
        self.obscured_frames += 1
        self.obscure_reasons[f"{type(error).__name__}: {error}"[:200]] += 1
        self.failures.record(error)  # raises when nearly every frame fails the same way
        return obscure_whole_frame(frame)
