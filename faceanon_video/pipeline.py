"""The pipeline: decode -> detect -> track -> anonymize -> encode.

No model code lives here: this module wires the stages together, runs them concurrently, and makes
the two promises the tool is built on:

* **fail closed**: a frame whose detection or anonymization raised is blacked out, never passed through;
* **no half-written output**: the result is renamed into place only after the last frame is flushed.

Concurrency: decoding and encoding each run in their own thread, detection in a small pool (frames are
detected in parallel, then tracked and anonymized strictly in order). PyAV, OpenCV and onnxruntime
release the GIL in their heavy calls, so the threads really do run on both cores. Queues are bounded
so memory stays flat on long videos.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from faceanon_video.anonymize.base import Anonymizer
from faceanon_video.anonymize.filters import CLASSIC_MODES, NoOp, obscure_whole_frame
from faceanon_video.config import RunConfig
from faceanon_video.detect import DEFAULT_THRESHOLDS, build_detector
from faceanon_video.detect.base import Detector
from faceanon_video.errors import ConfigError, FaceanonError, InputError
from faceanon_video.failures import DamagedFrame, FailureWatch
from faceanon_video.io.decode import VideoReader
from faceanon_video.io.encode import VideoWriter
from faceanon_video.io.outputs import refuse_existing, write_atomic
from faceanon_video.track.base import Tracker
from faceanon_video.track.bytetrack import ByteTracker
from faceanon_video.track.passthrough import PassThroughTracker
from faceanon_video.track.backfill import Backfill
from faceanon_video.track.roi import RoiRedetector
from faceanon_video.track.seeds import load_key, random_key
from faceanon_video.track.tracks_io import TrackWriter, tracks_path_for
from faceanon_video.types import Detections, Frame
from faceanon_video.vault import VaultWriteError, VaultWriter, open_run_vault

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "track", "anonymize", "encode")
QUEUE_FRAMES = 8  # per queue: enough to smooth out uneven stage times, small enough for 4K frames in RAM
#: Frames waiting for their detection in a file run are limited to this many bytes (as I420).
HELD_FRAMES_BYTES = 512 * 1024 * 1024


@dataclass
class RunSummary:
    """What a run did; printed by the CLI and returned by ``process_file``."""

    input: str
    output: str | None
    frames: int = 0
    faces: int = 0
    obscured_frames: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "fps": round(self.fps, 2)}


# 1. Stage factories: the only place that maps settings to implementations.


#: With tracking, the detector runs at this fraction of the anonymization threshold: ByteTrack's second
#: stage uses those low-score boxes (blurred, dim, turned faces) to continue existing tracks only.
LOW_SCORE_FRACTION = 0.5


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


def build_anonymizer(config: RunConfig) -> Anonymizer:
    from faceanon_video.testing.faults import inject  # test seam: a no-op unless FACEANON_FAULTS is set

    return inject("anonymize", _build_anonymizer(config))


def _build_anonymizer(config: RunConfig) -> Anonymizer:
    if config.mode == "none":
        return NoOp()
    if config.mode == "diffusion":
        from faceanon_video.anonymize.diffusion import build_diffusion_anonymizer

        return build_diffusion_anonymizer(config)
    kwargs = {"mask_scale": config.mask_scale, "mask_shape": config.mask}
    if config.mode == "image":
        kwargs["image_path"] = config.replace_image
    return CLASSIC_MODES[config.mode](**kwargs)


def detector_factory(config: RunConfig, threshold: float | None = None, min_face_px: float | None = None) -> Callable[[], Detector]:
    threshold = config.thresh if threshold is None else threshold
    min_face_px = config.min_face_px if min_face_px is None else min_face_px
    return lambda: build_detector(config.detector, threshold=threshold, min_face_px=min_face_px)


# 2. Per-frame processing, independent of where frames come from (files, cameras, streams).


class ShotChangeDetector:
    """Cheap hard-cut detection on thumbnails: a cut changes both the picture (mean absolute
    difference of a 32x18 grey thumbnail) and its colours (HSV histogram correlation). Calibrated on
    the real cuts of tests/data: short_hamilton_clip.mp4's 3 score 25-29 / 0.49-0.62 and bikes.mp4's 5
    score 43-81 / 0.35-0.68; within shots, camera and stage motion peak at 19 / >= 0.91. Both
    conditions must hold, so a flash or a pan is not a cut."""

    def __init__(self, min_grey_change: float = 18.0, max_colour_correlation: float = 0.7) -> None:
        self.min_grey_change = min_grey_change
        self.max_colour_correlation = max_colour_correlation
        self._previous: tuple[np.ndarray, np.ndarray] | None = None

    def is_cut(self, frame: Frame) -> bool:
        # Every n-th pixel first (nearest-neighbour to 320x180): INTER_AREA over the whole of a large
        # frame would cost ~2 ms.
        small = cv2.resize(frame.resized_bgr(320, 180, cv2.INTER_NEAREST), (160, 90), interpolation=cv2.INTER_AREA)
        grey = cv2.resize(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)
        hist = cv2.calcHist([cv2.cvtColor(small, cv2.COLOR_BGR2HSV)], [0, 1], None, [16, 8], [0, 180, 0, 256])
        cv2.normalize(hist, hist)
        previous, self._previous = self._previous, (grey, hist)
        if previous is None:
            return False
        change = float(np.abs(grey - previous[0]).mean())
        return change > self.min_grey_change and cv2.compareHist(previous[1], hist, cv2.HISTCMP_CORREL) < self.max_colour_correlation

    def reset(self) -> None:
        self._previous = None


class FrameProcessor:
    """detect -> track -> anonymize for one stream of frames, failing closed.

    ``detect`` may run on several threads at once (each gets its own detector); ``finish`` (track +
    anonymize) must be called in frame order. ``process`` does both for callers that need no overlap.
    Files use ``finish_held`` + ``flush`` instead, which hold the last frames back so that faces found
    late are covered on earlier frames too (``track.backfill``); ``live=True`` processors (streams,
    which cannot wait) detect every frame by default and re-detect around tracks on skipped frames.
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
        self.roi: RoiRedetector | None = None
        if make_detector is not None:
            self._make_detector = make_detector
            self.detector = self._thread_detector()
            high_thresh = float(getattr(self.detector, "threshold", 0.5))
        else:
            high_thresh = config.thresh if config.thresh is not None else DEFAULT_THRESHOLDS[config.detector]
            # With tracking, the tracker's second stage needs the low-score boxes, so the detector
            # reports them too; faces below high_thresh are only anonymized when they continue a track.
            low_or_high = high_thresh * LOW_SCORE_FRACTION if config.track else high_thresh
            self._make_detector = detector_factory(config, threshold=low_or_high)
            self.detector = self._thread_detector()  # built now so model errors surface before any frame
            if config.track:
                # Re-detection around tracks (skipped frames, faces found late). Own instance (used only
                # in frame order), at full resolution (min_face_px=0).
                self.roi = RoiRedetector(
                    detector_factory(config, high_thresh * LOW_SCORE_FRACTION, min_face_px=0)(),
                    full_frame_detector=self.detector,  # this thread's; the pool's threads have their own
                )
        self.tracker = tracker or build_tracker(config, high_thresh=high_thresh)
        self.track_writer: TrackWriter | None = None  # set per input by process_video (--save-tracks)
        self.shot_detector = ShotChangeDetector()
        # Files only (finish_held): frames wait a little so faces found late are covered back to where
        # they appeared, and skipped frames get interpolated boxes. Needs tracks (identities) to follow.
        held = config.track and not live and isinstance(self.tracker, ByteTracker)
        # Skipping frames is safe by default only where held frames let backfill cover what they miss.
        self.detect_every = config.detect_every or (2 if held else 1)
        self.backfill = Backfill(self.roi, detect_every=self.detect_every) if held else None
        self.vault_writer: VaultWriter | None = None  # set per input by process_video (--vault)
        self.anonymizer = anonymizer or build_anonymizer(config)
        self.timings: dict[str, list[float]] = defaultdict(list)
        self.frames = 0
        self.faces = 0
        self.obscured_frames = 0
        self.failures = FailureWatch()
        self._failed_pass: BaseException | None = None  # the last full pass's error, until one succeeds

    def _thread_detector(self) -> Detector:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self._make_detector()
        return detector

    def should_detect(self, frame: Frame) -> bool:
        """Whether the full-frame detector runs on this frame (every ``detect_every``-th frame)."""
        return frame.index % self.detect_every == 0

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

    def finish(self, frame: Frame, detections: Detections | BaseException | None) -> Frame:
        """Track and anonymize, in frame order. Never returns a frame with a face it failed to cover."""
        faces, _, _ = self._track(frame, detections, redetect=True)
        return self._release(frame, faces)

    def finish_held(self, frame: Frame, detections: Detections | BaseException | None) -> list[Frame]:
        """Like ``finish``, for files: with ``--detect-every N > 1``, frames are held back until the
        next full-frame detection so that faces first found there are covered on the frames before it
        too (``track.backfill``). Returns the frames now final, in order; ``flush`` returns the rest."""
        faces, full_pass, cut = self._track(frame, detections, redetect=self.backfill is None)
        if self.backfill is None:
            return [self._release(frame, faces)]
        start = time.perf_counter()
        settled = self.backfill.push(frame, faces, full_pass, cut)
        if self.timings["track"]:
            self.timings["track"][-1] += time.perf_counter() - start  # part of this frame's tracking
        return [self._release(f, fs) for f, fs in settled]

    def flush(self) -> list[Frame]:
        """The frames ``finish_held`` still holds (call at the end of each video)."""
        if self.backfill is None:
            return []
        return [self._release(f, fs) for f, fs in self.backfill.flush()]

    def _track(self, frame: Frame, detections: Detections | BaseException | None, redetect: bool) -> tuple[Detections | BaseException, bool, bool]:
        """This frame's faces (or the error to fail closed on), whether the full-frame detector ran on
        it (or raised), and whether it starts a new shot. ``redetect``: on a skipped frame, look for the
        tracked faces around their predicted boxes (else they coast until ``backfill`` settles them).

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
            cut, detections = self._handle_scene_cut(frame, detections)
            full_pass = detections is not None
            if detections is None and redetect and self.roi is not None and isinstance(self.tracker, ByteTracker):
                # Skipped frame (--detect-every): look again around the live tracks only.
                start = time.perf_counter()
                detections = self.roi.detect(frame, self.tracker.predict_xyxy())
                self.timings["detect"].append(time.perf_counter() - start)
            start = time.perf_counter()
            faces = self.tracker.update(detections, frame)
            self.timings["track"].append(time.perf_counter() - start)
            if full_pass:
                self._failed_pass = None
            return faces, full_pass, cut
        except Exception as exc:  # noqa: BLE001 - fail closed: see module docstring
            if full_pass:
                self._failed_pass = exc
            return exc, full_pass, False

    def _release(self, frame: Frame, faces: Detections | BaseException) -> Frame:
        """Write the frame's faces to the track file and vault, then anonymize; obscure it whole on any error."""
        self.frames += 1
        try:
            if isinstance(faces, BaseException):
                raise faces
            if self.track_writer is not None:
                self.track_writer.write(frame.index, frame.time_s, faces)
            if self.vault_writer is not None:
                self.vault_writer.write(frame, faces)  # the originals, before the anonymizer paints over them
            start = time.perf_counter()
            self.faces += len(faces)
            frame = self.anonymizer.apply(frame, faces)
            self.timings["anonymize"].append(time.perf_counter() - start)
            self.failures.record(None)
            return frame
        except VaultWriteError:
            raise  # the vault is the only copy of the faces: stop the run rather than lose one silently
        except Exception as exc:  # noqa: BLE001 - fail closed: see module docstring
            # Damaged input frames are reported in one line by the reader, not one per frame.
            log.log(logging.DEBUG if isinstance(exc, DamagedFrame) else logging.WARNING, "frame %d obscured: %s: %s", frame.index, type(exc).__name__, exc)
            self.obscured_frames += 1
            self.failures.record(exc)  # raises when nearly every frame fails the same way
            return obscure_whole_frame(frame)

    def process(self, frame: Frame) -> Frame:
        return self.finish(frame, self.detect(frame))

    def reset(self) -> None:
        """Forget everything carried from frame to frame (call between unrelated videos or images)."""
        self.tracker.reset()
        self.shot_detector.reset()
        self.failures.reset()
        self._failed_pass = None
        if self.backfill is not None:
            self.backfill.reset()
        if hasattr(self.anonymizer, "reset"):
            self.anonymizer.reset()

    def _handle_scene_cut(self, frame: Frame, detections: Detections | None) -> tuple[bool, Detections | None]:
        """At a shot change, end all tracks (so a new person never inherits the id, seed and fake face
        of someone else) and make sure this frame has a full detection to start the new tracks from.
        Returns whether this frame starts a new shot, and its detections."""
        if not self.shot_detector.is_cut(frame) or not hasattr(self.tracker, "cut"):
            return False, detections
        log.debug("frame %d: shot change", frame.index)
        self.tracker.cut()
        if detections is None:
            start = time.perf_counter()
            detections = self._thread_detector().detect(frame)
            self.timings["detect"].append(time.perf_counter() - start)
        return True, detections


# 3. Files: a threaded run over one video, and the image path.

_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event, producer: threading.Thread | None = None):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END
            if producer is not None and not producer.is_alive() and q.empty():
                return _Failed(RuntimeError(f"the {producer.name} thread stopped without finishing"))


def process_video(source: str | Path, destination: str | Path, config: RunConfig, processor: FrameProcessor | None = None) -> RunSummary:
    """Anonymize one video file into ``destination`` (written atomically)."""
    started = time.perf_counter()
    # 1. Open the input: a missing or non-video file fails here, before anything is written.
    reader = VideoReader(source, start_s=config.start_s, end_s=config.end_s, strict=config.strict)
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(QUEUE_FRAMES)
    to_encode: queue.Queue = queue.Queue(QUEUE_FRAMES)
    encode_error: list[BaseException] = []
    try:
        # 2. Build the stages (models load here, before the output file is created).
        processor = processor or FrameProcessor(config)
        if config.save_tracks:
            processor.track_writer = TrackWriter(tracks_path_for(config.save_tracks, source), overwrite=config.overwrite)
        if config.vault:
            processor.vault_writer = open_run_vault(config, source)
        writer = VideoWriter(
            destination,
            fps=reader.info.fps,
            time_base=reader.info.time_base,
            templates=reader.copy_streams if config.keep_audio else [],
            codec=config.codec,
            crf=config.crf,
            preset=config.preset,
            metadata=dict(reader.container.metadata),
        )
    except BaseException:
        reader.close()
        _close_track_writer(processor, success=False)
        _close_vault(processor, success=False)
        raise
    timings = processor.timings

    # 3. Decode and encode threads around the in-order detect/track/anonymize loop.
    def decode_loop() -> None:
        try:
            items = reader.items(packets=config.keep_audio)
            while True:
                start = time.perf_counter()
                item = next(items, _END)
                if isinstance(item, Frame):
                    timings["decode"].append(time.perf_counter() - start)
                if not _put(decoded, item, stop) or item is _END:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            _put(decoded, _Failed(exc), stop)

    def encode_loop() -> None:
        try:
            while True:
                item = _get(to_encode, stop)
                if item is _END:
                    return
                start = time.perf_counter()
                if isinstance(item, Frame):
                    writer.write(item)
                    timings["encode"].append(time.perf_counter() - start)
                else:
                    writer.write_packet(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            encode_error.append(exc)
            stop.set()

    # Detection threads each run OpenCV single-threaded: frame-level parallelism wastes nothing, while
    # OpenCV's own pool inside every worker oversubscribes the cores (measured: ~15% more CPU per frame).
    opencv_threads = cv2.getNumThreads()
    if config.workers > 1:
        cv2.setNumThreads(1)
    decoder = threading.Thread(target=decode_loop, name="decode", daemon=True)
    encoder = threading.Thread(target=encode_loop, name="encode", daemon=True)
    pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="detect")
    pending: deque[tuple[object, Future | None]] = deque()
    # Frames in flight between decoder and tracker: two full-frame detections per worker, however
    # many frames apart they are (--detect-every); fewer left a core idle while the tracker waited
    # for the oldest one (measured at 720p: 74 % of two cores busy, 89 % with this window).
    window = config.workers * 2 * getattr(processor, "detect_every", 1)
    # ...but never more frames than HELD_FRAMES_BYTES (4K at --detect-every 30 would hold ~1.5 GB).
    frame_bytes = max(1, reader.info.width * reader.info.height * 3 // 2)
    window = max(config.workers, min(window, HELD_FRAMES_BYTES // frame_bytes))
    progress = _progress_bar(reader.info.frame_count, str(source), config.progress)
    success = False
    try:
        decoder.start()
        encoder.start()

        def emit_oldest() -> None:
            item, future = pending.popleft()
            send(processor.finish_held(item, future.result()) if future is not None else [item])

        def send(items: list) -> None:
            for item in items:
                if not _put(to_encode, item, stop):
                    raise encode_error[0] if encode_error else KeyboardInterrupt
                if isinstance(item, Frame):
                    progress.update(1)
            progress.set_postfix(faces=processor.faces, refresh=False)

        while True:
            item = _get(decoded, stop, decoder)
            if isinstance(item, _Failed):
                raise item.exc
            if item is _END:
                _close_with_a_pass(pending, pool, processor)
                break
            future = pool.submit(processor.detect, item) if isinstance(item, Frame) else None
            pending.append((item, future))
            while len(pending) > window:
                emit_oldest()
        while pending:
            emit_oldest()
        send(processor.flush())
        _put(to_encode, _END, stop)
        encoder.join()
        if encode_error:
            raise encode_error[0]
        # 4. Finalize: a run that nearly all failed fails; flush the encoder; complete the vault, bound
        # to the encoded video (its failure fails the run); rename into place.
        processor.failures.check_final()
        writer.finish()
        if processor.vault_writer is not None:
            processor.vault_writer.finish(video_sha256=writer.video_sha256())
        writer.close(success=True)
        success = True
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        progress.close()
        decoder.join(timeout=5)
        encoder.join(timeout=5)
        cv2.setNumThreads(opencv_threads)
        if not success:
            writer.close(success=False)
        reader.close()
        _close_track_writer(processor, success)
        _close_vault(processor, success)
    return _summary(source, destination, processor, time.perf_counter() - started)


def _close_with_a_pass(pending: deque, pool: ThreadPoolExecutor, processor: FrameProcessor) -> None:
    """Make the video's last frame a full pass: the held frames after the last scheduled one need a
    later pass to be checked against, and a face that came in there would otherwise never be seen
    (with --detect-every 30, the last second of a video)."""
    should_detect = getattr(processor, "should_detect", None)  # absent in bench's copy-only stand-in
    for i in range(len(pending) - 1, -1, -1):
        item, future = pending[i]
        if isinstance(item, Frame):
            if future is not None and should_detect is not None and not should_detect(item):
                future.cancel()
                pending[i] = (item, pool.submit(processor.detect, item, True))
            return


def _close_track_writer(processor: FrameProcessor | None, success: bool) -> None:
    if processor is not None and processor.track_writer is not None:
        tracks, processor.track_writer = processor.track_writer, None
        tracks.close(success=success)


def _close_vault(processor: FrameProcessor | None, success: bool) -> None:
    if processor is not None and processor.vault_writer is not None:
        vault, processor.vault_writer = processor.vault_writer, None
        vault.close(success=success)


def process_image(source: str | Path, destination: str | Path, config: RunConfig, processor: FrameProcessor | None = None) -> RunSummary:
    """Anonymize one still image (written atomically, same format as the destination's extension)."""
    started = time.perf_counter()
    if config.vault:
        raise ConfigError(f"{source}: --vault works on videos only")
    bgr = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{source}: not a readable image")
    processor = processor or FrameProcessor(config)
    frame = processor.process(Frame(bgr=bgr, index=0))
    ok, encoded = cv2.imencode(Path(destination).suffix or ".png", frame.bgr)
    if not ok:
        raise InputError(f"{destination}: cannot write this image format")
    write_atomic(destination, encoded.tobytes())
    return _summary(source, destination, processor, time.perf_counter() - started)


def _summary(source, destination, processor: FrameProcessor, seconds: float) -> RunSummary:
    return RunSummary(
        input=str(source),
        output=str(destination),
        frames=processor.frames,
        faces=processor.faces,
        obscured_frames=processor.obscured_frames,
        seconds=seconds,
        stage_seconds={k: float(np.sum(v)) for k, v in processor.timings.items()},
    )


def _progress_bar(total: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=Path(name).name[:30], unit="frame", disable=not enabled, dynamic_ncols=True, leave=False)


# 4. Inputs and outputs: which files, and where their results go.

VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".mpg", ".mpeg", ".3gp"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, and the videos/images directly inside any directory given."""
    paths: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)
            if not found:
                raise InputError(f"{path}: no video or image files in this folder")
            paths.extend(found)
        elif not path.exists() and "://" not in name:
            raise InputError(f"{path}: no such file")
        else:
            paths.append(path)
    return paths


def output_path_for(source: Path, output: str | None, several: bool) -> Path:
    """``NAME_anonymized.EXT`` next to the input, inside ``output`` if that is a folder, or ``output`` itself.
    Inputs in a format we cannot write (GIF, ...) get an ``.mp4`` output."""
    suffix = source.suffix if source.suffix.lower() in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS else ".mp4"
    default_name = f"{source.stem}_anonymized{suffix}"
    if output is None:
        return source.with_name(default_name)
    out = Path(output)
    if several or out.is_dir():
        if not out.is_dir():
            raise InputError(f"{out}: with several inputs, -o must be an existing folder")
        return out / default_name
    return out


def check_output_kind(source: Path, destination: Path) -> None:
    """An image must go to an image file and a video to a video file: checked before any work."""
    if is_image(source) and not is_image(destination):
        raise InputError(f"{destination}: {source.name} is an image; name the output {', '.join(sorted(IMAGE_EXTENSIONS))}")
    if not is_image(source) and destination.suffix.lower() not in VIDEO_EXTENSIONS:
        raise InputError(f"{destination}: {source.name} is a video; name the output {', '.join(sorted(VIDEO_EXTENSIONS))}")


def process_file(source: Path, destination: Path, config: RunConfig, processor: FrameProcessor | None = None) -> RunSummary:
    if destination.resolve() == source.resolve():
        raise InputError(f"{destination}: refusing to overwrite the input")
    check_output_kind(source, destination)
    refuse_existing(destination, config.overwrite)
    run = process_image if is_image(source) else process_video
    return run(source, destination, config, processor)


__all__ = [
    "FaceanonError",
    "FrameProcessor",
    "RunSummary",
    "STAGES",
    "build_anonymizer",
    "build_tracker",
    "expand_inputs",
    "output_path_for",
    "process_file",
    "process_image",
    "process_video",
]
