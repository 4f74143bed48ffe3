"""The live loop: newest frame -> detect (with a deadline) -> track -> anonymize -> every output.

Promises, in order of importance:

* **Fail closed.** A frame is sent only after ``FrameProcessor.finish`` anonymized it, or blacked out
  (``obscure_whole_frame``) when detection raised, when anonymization raised, or when detection did not
  finish within ``deadline_ms`` of the frame's capture. While the source is down, outputs get black
  frames at the nominal rate. No code path hands a sink a frame that skipped both.
* **No backlog.** The source keeps only its newest frame and each output only its newest pending one,
  so when processing falls behind, frames are dropped (and counted), never queued; latency from
  capture to written is measured per output (p50/p95).
* **Survives its inputs and outputs.** Source outages are reconnected by ``LiveSource``, pushes by
  ``StreamSink``; SIGINT/SIGTERM stop the loop and finalise every output.

Threads: capture (``LiveSource``), one detection worker (so the loop can stop waiting for it at the
deadline; it detects the next frame while this loop tracks and anonymizes the current one), this loop
(track + anonymize, in frame order), and one per output (encoding).
"""

from __future__ import annotations

import concurrent.futures
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import cv2
import numpy as np

from faceanon_video.anonymize.filters import obscure_whole_frame
from faceanon_video.config import RunConfig
from faceanon_video.errors import FaceanonError
from faceanon_video.live.sinks import LIVE_TIME_BASE, Sink, SinkWorker
from faceanon_video.live.sources import LiveSource
from faceanon_video.processor import FrameProcessor
from faceanon_video.types import Detections, Frame

log = logging.getLogger(__name__)

#: With no frame for this long, outputs get black frames at the nominal rate: long enough not to flicker
#: on network jitter, short enough that viewers see the outage rather than a frozen picture.
STALL_FILL_S = 0.5
#: Frame rate assumed when the source does not announce one.
DEFAULT_FPS = Fraction(30)
#: At most one "frames obscured: deadline missed" warning per this many seconds.
WARN_EVERY_S = 5.0


class DeadlineMissed(Exception):
    """Detection for a frame did not finish before its deadline; the frame is obscured."""


@dataclass
class PendingDetection:
    """A frame whose detection has been asked for; ``DeadlineDetector.result`` gives the outcome."""

    frame: Frame
    deadline_s: float
    full_frame: bool
    future: concurrent.futures.Future | None = None


class DeadlineDetector:
    """Runs each frame's detection on one worker thread so the loop can give up waiting at a deadline.

    That is the full-frame detector on the frames ``--detect-every`` schedules, and on the others the
    tracker's re-detection around its live tracks (which ``FrameProcessor.finish`` would otherwise run
    in line, beyond the deadline's reach). A detection that overruns keeps the worker busy; later
    frames wait for it only until their own deadline and are obscured if it is still running. So a
    hung detector costs black frames, never a growing queue or a raw frame.

    ``submit`` starts a full-frame detection at once when the worker is free, so it can overlap the
    tracking and anonymizing of the frame before; re-detection starts in ``result``, because it needs
    the tracker to have seen that frame first.
    """

    def __init__(self, processor: FrameProcessor) -> None:
        self.processor = processor
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-detect")
        # Build the worker thread's own detector now (FrameProcessor keeps one per thread), so the first
        # frame does not pay for loading it and miss its deadline.
        self._pool.submit(processor.detect, Frame(bgr=np.zeros((64, 64, 3), np.uint8), index=0)).result()
        self._running: concurrent.futures.Future | None = None

    def submit(self, frame: Frame, deadline_s: float) -> PendingDetection:
        pending = PendingDetection(frame, deadline_s, full_frame=self.processor.should_detect(frame))
        if pending.full_frame and (self._running is None or self._running.done()):
            pending.future = self._running = self._pool.submit(self.processor.detect, frame)
        return pending

    def result(self, pending: PendingDetection) -> Detections | BaseException | None:
        """Detections, an error to fail closed on, ``DeadlineMissed``, or None where nothing is to be
        detected (a skipped frame without re-detection: the tracker coasts)."""
        if pending.future is None:
            job = self._job(pending)
            if job is None:
                return None
            if self._running is not None and not _finished_by(self._running, pending.deadline_s):
                return DeadlineMissed("the detector is still busy with an earlier frame")
            pending.future = self._running = self._pool.submit(job)
        if not _finished_by(pending.future, pending.deadline_s):
            return DeadlineMissed("detection did not finish before the deadline")
        return pending.future.result()

    def _job(self, pending: PendingDetection) -> Callable[[], Detections | BaseException] | None:
        processor, frame = self.processor, pending.frame
        if pending.full_frame:
            return lambda: processor.detect(frame)
        # Read in frame order; only one job runs at a time, so the re-detector (which must not be
        # shared between threads) is never used twice at once.
        return processor.redetect_job(frame)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _finished_by(future: concurrent.futures.Future, deadline_s: float) -> bool:
    try:
        future.result(timeout=max(0.0, deadline_s - time.monotonic()))
        return True
    except concurrent.futures.TimeoutError:
        return False


@dataclass
class LiveSummary:
    """What a live run did. ``latency_ms`` is per output: capture -> written, over the last frames."""

    input: str
    outputs: list[str]
    seconds: float = 0.0
    frames_captured: int = 0
    frames_processed: int = 0
    #: Frames the source replaced with a newer one because the pipeline was busy.
    frames_dropped: int = 0
    obscured_deadline: int = 0
    obscured_error: int = 0
    #: Black frames sent while the source was down.
    filler_frames: int = 0
    reconnects: int = 0
    gaps: list[dict] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)
    output_dropped: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames_processed / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "fps": round(self.fps, 2)}


def latency_stats_ms(latencies_s) -> dict[str, float]:
    """p50/p95/max in milliseconds and the sample count."""
    values = np.asarray(latencies_s, dtype=np.float64) * 1000
    if not len(values):
        return {"n": 0}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "max": round(float(values.max()), 1), "n": len(values)}


class LiveRunner:
    """Anonymizes ``source`` into ``sinks`` until stopped (``stop`` event, SIGINT/SIGTERM, ``duration_s``,
    the end of a file source, or ``SourceLost``).

    Settings (from ``RunConfig``):
        deadline_ms: longest a frame may wait for detection, counted from its capture. Lower bounds the
            latency tighter but obscures more frames on a slow or busy CPU; higher rarely obscures but lets
            a stalled detector hold frames that long.
        duration_s: stop after this many seconds (None: run until stopped).

    >>> runner = LiveRunner(source, [FileSink("out.mp4")], RunConfig())  # doctest: +SKIP
    >>> summary = runner.run()  # doctest: +SKIP
    """

    def __init__(self, source: LiveSource, sinks: list[Sink], config: RunConfig, processor: FrameProcessor | None = None) -> None:
        self.source = source
        self.config = config
        # Models load here, before the source is opened or any output written.
        if processor is not None and not processor.live:
            # A file processor may skip frames by default, counting on holding frames back: a stream cannot.
            raise ValueError("LiveRunner needs a FrameProcessor built with live=True")
        self.processor = processor or FrameProcessor(config, live=True)
        self.detector = DeadlineDetector(self.processor)
        self.workers = [SinkWorker(sink) for sink in sinks]
        self.deadline_s = config.deadline_ms / 1000
        self.stop = threading.Event()
        self.obscured_deadline = 0
        self.filler_frames = 0
        self._interval_s = float(1 / DEFAULT_FPS)
        self._started_s: float | None = None
        self._shape: tuple[int, ...] | None = None
        self._last_frame_s = 0.0
        self._last_out_s = 0.0
        self._filling_since: int | None = None
        self._missed_logged = (0.0, 0)  # (time of the last warning, count then)

    # 1. The loop.

    def run(self, on_status: Callable[[LiveSummary], None] | None = None, status_every_s: float = 10.0) -> LiveSummary:
        with _stop_on_signals(self.stop):
            try:
                self.source.start()
                self._started_s = time.monotonic()
                self._loop(on_status, status_every_s)
            finally:
                self._close()
        return self.summary()

    def _loop(self, on_status, status_every_s: float) -> None:
        next_status_s = self._started_s + status_every_s
        pending: PendingDetection | None = None
        while not self.stop.is_set():
            now = time.monotonic()
            if self.config.duration_s is not None and now - self._started_s >= self.config.duration_s:
                break
            if on_status is not None and now >= next_status_s:
                on_status(self.summary())
                next_status_s = now + status_every_s
            self._check_outputs()
            if pending is None:
                frame = self.source.get(timeout_s=self._interval_s)  # raises SourceLost when the source gave up
                if frame is None:
                    if self.source.ended:
                        break
                    self._fill_if_stalled()
                    continue
                pending = self._submit(frame)
            detections = self.detector.result(pending)
            # Pipelining: the newest frame's detection runs while this one is tracked and anonymized.
            upcoming = self.source.get(timeout_s=0)
            following = self._submit(upcoming) if upcoming is not None else None
            self._emit(self._finish(pending.frame, detections), pending.frame.capture_s)
            pending = following

    def _start_outputs(self) -> None:
        fps = self.source.fps or DEFAULT_FPS
        self._interval_s = float(1 / fps)
        for worker in self.workers:
            worker.start(fps)

    # 2. One frame: detect against the deadline, then track and anonymize (or obscure).

    def _submit(self, frame: Frame) -> PendingDetection:
        if self._shape is None:
            self._start_outputs()
            self._shape = frame.shape
        self._last_frame_s = time.monotonic()
        if self._filling_since is not None:
            log.warning("source back: %d black frames were sent during the outage", self.filler_frames - self._filling_since)
            self._filling_since = None
        if frame.capture_s is None:
            frame.capture_s = time.monotonic()
        return self.detector.submit(frame, frame.capture_s + self.deadline_s)

    def _finish(self, frame: Frame, detections: Detections | BaseException | None) -> Frame:
        if isinstance(detections, DeadlineMissed):
            self.obscured_deadline += 1
            self._warn_missed(detections)
            return obscure_whole_frame(frame)
        return self.processor.finish(frame, detections)

    def _warn_missed(self, reason: DeadlineMissed) -> None:
        last_s, last_count = self._missed_logged
        now = time.monotonic()
        if now - last_s >= WARN_EVERY_S:
            log.warning("%d frames obscured: %s (--deadline-ms %g)", self.obscured_deadline - last_count, reason, self.config.deadline_ms)
            self._missed_logged = (now, self.obscured_deadline)

    # 3. Outputs.

    def _emit(self, frame: Frame, time_s: float | None) -> None:
        """Stamp ``frame`` on the run's clock (continuous across reconnects) and hand it to every output."""
        now = time.monotonic()
        if frame.shape != self._shape:
            # The source came back at another resolution; the encoders keep the size they started with.
            height, width = self._shape[:2]
            frame = frame.with_image(frame.resized_bgr(width, height, cv2.INTER_AREA))
        frame.pts = round(((time_s or now) - self._started_s) / LIVE_TIME_BASE)
        frame.time_base = LIVE_TIME_BASE
        for worker in self.workers:
            worker.submit(frame)
        self._last_out_s = now

    def _fill_if_stalled(self) -> None:
        now = time.monotonic()
        if self._shape is None or now - self._last_frame_s < STALL_FILL_S or now - self._last_out_s < self._interval_s * 0.9:
            return
        if self._filling_since is None:
            log.warning("no frames for %.1f s: sending black frames until the source is back", now - self._last_frame_s)
            self._filling_since = self.filler_frames
        self.filler_frames += 1
        filler = obscure_whole_frame(Frame(bgr=np.empty(self._shape, np.uint8), index=self.filler_frames))
        self._emit(filler, None)

    def _check_outputs(self) -> None:
        if self.workers and all(worker.error is not None for worker in self.workers):
            raise FaceanonError(f"every output failed; first: {self.workers[0].error}")

    def _close(self) -> None:
        self.detector.close()
        for worker in self.workers:
            worker.close()
        self.source.close()

    # 4. Reporting.

    def summary(self) -> LiveSummary:
        started = self._started_s or time.monotonic()
        return LiveSummary(
            input=self.source.url,
            outputs=[w.name for w in self.workers],
            seconds=time.monotonic() - started,
            frames_captured=self.source.captured,
            frames_processed=self.processor.frames + self.obscured_deadline,
            frames_dropped=self.source.dropped,
            obscured_deadline=self.obscured_deadline,
            obscured_error=self.processor.obscured_frames,
            filler_frames=self.filler_frames,
            reconnects=self.source.reconnects,
            gaps=[{"start_s": round(g.start_s - started, 2), "duration_s": round(g.duration_s, 2), "reason": g.reason, "initial": g.initial} for g in self.source.gaps],
            written={w.name: w.written for w in self.workers},
            output_dropped={w.name: w.dropped for w in self.workers},
            latency_ms={w.name: latency_stats_ms(w.latencies_s()) for w in self.workers},
        )


def run_live(source: LiveSource, sinks: list[Sink], config: RunConfig, processor: FrameProcessor | None = None, **kwargs) -> LiveSummary:
    """``LiveRunner(source, sinks, config, processor).run(**kwargs)``."""
    return LiveRunner(source, sinks, config, processor).run(**kwargs)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """The first SIGINT/SIGTERM asks the loop to stop so outputs are finalised; a second SIGINT aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("stopping on signal %d: finalising outputs (Ctrl-C again to abort)", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
