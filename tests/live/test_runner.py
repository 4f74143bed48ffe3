"""LiveRunner: fail closed under injected faults, deadline, drop-not-queue, outage filling, clean stop.

The detector here reports one face covering the whole frame and the anonymizer paints faces pure green,
so every frame an output receives must be exactly green (anonymized) or exactly black (obscured);
anything else is a raw frame that slipped through.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from faceanon_video.anonymize.filters import Solid
from faceanon_video.config import RunConfig
from faceanon_video.errors import FaceanonError
from faceanon_video.live.runner import LiveRunner
from faceanon_video.live.sinks import FileSink
from faceanon_video.live.sources import LiveSource
from faceanon_video.pipeline import FrameProcessor
from faceanon_video.types import Detections, Frame
from tests.conftest import CARPHONE, decode_all

GREEN = np.array([0, 255, 0], np.uint8)


class NoTracker:
    """Passes detections through: every face is anonymized only in frames where it was detected."""

    follows_faces = False

    def update(self, detections, frame) -> Detections:
        return detections if detections is not None else Detections.empty()

    def predict_xyxy(self) -> np.ndarray:
        return np.zeros((0, 4), np.float32)

    def cut(self) -> None:
        pass

    def reset(self) -> None:
        pass


class ScriptedDetector:
    """One whole-frame face per call; ``script(call_number)`` says "ok", "raise" or "sleep"."""

    def __init__(self, script=lambda n: "ok", sleep_s: float = 0.3) -> None:
        self.script = script
        self.sleep_s = sleep_s
        self.calls = {"ok": 0, "raise": 0, "sleep": 0}

    def detect(self, image) -> Detections:
        action = self.script(sum(self.calls.values()))
        self.calls[action] += 1
        if action == "raise":
            raise RuntimeError("injected detector failure")
        if action == "sleep":
            time.sleep(self.sleep_s)
        height, width = image.shape[:2]
        return Detections(xyxy=[[0, 0, width, height]], score=[0.99])


class CaptureSink:
    """Keeps a copy of everything it is sent."""

    name = "capture"

    def __init__(self) -> None:
        self.frames: list[tuple[np.ndarray, bool, int]] = []
        self.closed = False

    def open(self, fps: Fraction) -> None:
        self.fps = fps

    def write(self, frame: Frame) -> bool:
        self.frames.append((frame.bgr.copy(), frame.obscured, frame.pts))
        return True

    def close(self) -> None:
        self.closed = True


def green_processor(config: RunConfig, detector: ScriptedDetector) -> FrameProcessor:
    anonymizer = Solid(color_bgr=(0, 255, 0), mask_shape="box", mask_scale=1.0)
    return FrameProcessor(config, make_detector=lambda: detector, tracker=NoTracker(), anonymizer=anonymizer, live=True)


def classify(frames) -> list[str]:
    """'green', 'black' or 'RAW' per frame."""
    kinds = []
    for bgr, obscured, _ in frames:
        if not bgr.any():
            assert obscured
            kinds.append("black")
        elif np.abs(bgr.astype(int) - GREEN).max() <= 2:  # green painted on 4:2:0 planes comes back as (1, 255, 0)
            kinds.append("green")
        else:
            kinds.append("RAW")
    return kinds


def run(detector: ScriptedDetector, source=None, **settings) -> tuple[LiveRunner, CaptureSink, list[str]]:
    config = RunConfig(**settings)
    sink = CaptureSink()
    runner = LiveRunner(source or LiveSource(str(CARPHONE)), [sink], config, processor=green_processor(config, detector))
    runner.run()
    assert sink.closed
    return runner, sink, classify(sink.frames)


def test_injected_faults_black_out_their_frames_and_nothing_leaks():
    # Every 5th call raises, every 5th (offset) sleeps past the deadline.
    detector = ScriptedDetector(lambda n: {1: "raise", 3: "sleep"}.get(n % 5, "ok"), sleep_s=0.25)
    runner, sink, kinds = run(detector, deadline_ms=100, duration_s=3.0)
    summary = runner.summary()
    assert "RAW" not in kinds
    assert detector.calls["raise"] >= 3 and detector.calls["sleep"] >= 3 and detector.calls["ok"] >= 10
    assert summary.obscured_error == detector.calls["raise"]
    assert summary.obscured_deadline >= detector.calls["sleep"]
    assert kinds.count("black") == summary.obscured_error + summary.obscured_deadline
    assert kinds.count("green") >= detector.calls["ok"] - detector.calls["sleep"] - 1


def test_hung_detector_blacks_out_every_frame_without_stalling_the_output():
    detector = ScriptedDetector(lambda n: "sleep", sleep_s=1.0)
    runner, sink, kinds = run(detector, deadline_ms=100, duration_s=2.0)
    assert set(kinds) == {"black"}
    assert len(kinds) >= 10  # about one frame per deadline, not one per detector call (2)
    latency = runner.summary().latency_ms["capture"]
    assert latency["p95"] < 100 + 150, latency  # the deadline plus scheduling slack on a loaded 2-core box


def test_slow_detector_drops_frames_instead_of_building_latency():
    detector = ScriptedDetector(lambda n: "sleep", sleep_s=0.06)  # ~16 fps for a 30 fps source
    runner, sink, kinds = run(detector, deadline_ms=2000, duration_s=2.5)
    summary = runner.summary()
    assert set(kinds) == {"green"}
    assert summary.frames_dropped >= 20 and summary.obscured_deadline == 0
    latencies = list(runner.workers[0].latencies_s())
    third = len(latencies) // 3
    early, late = np.median(latencies[:third]), np.median(latencies[-third:])
    assert late < early + 0.06, (early, late)  # flat, not growing with a queue
    assert summary.latency_ms["capture"]["p95"] < 400, summary.latency_ms


class OutageSource:
    """30 fps grey frames, a silent outage from 1.0 s to 2.5 s, then frames at a higher resolution (as from
    a camera that came back with other settings) until 3.5 s, then the end."""

    url = "scripted://outage"
    fps = Fraction(30)

    def __init__(self) -> None:
        self.captured = self.dropped = self.reconnects = 0
        self.gaps: list = []
        self.ended = False

    def start(self) -> OutageSource:
        self.started_s = time.monotonic()
        return self

    def close(self) -> None:
        pass

    def get(self, timeout_s: float) -> Frame | None:
        t = time.monotonic() - self.started_s
        if t >= 3.5:
            self.ended = True
            return None
        if 1.0 <= t < 2.5:
            time.sleep(timeout_s)
            return None
        due_s = self.started_s + (self.captured + 1) / 30
        time.sleep(max(0.0, due_s - time.monotonic()))
        self.captured += 1
        shape = (48, 64, 3) if t < 1.0 else (60, 80, 3)
        return Frame(bgr=np.full(shape, 128, np.uint8), index=self.captured - 1, capture_s=time.monotonic())


def test_outage_sends_black_frames_at_the_nominal_rate_and_keeps_the_output_size():
    runner, sink, kinds = run(ScriptedDetector(), source=OutageSource(), deadline_ms=200)
    runs = [(kind, len(list(group))) for kind, group in itertools.groupby(kinds)]
    assert [kind for kind, _ in runs] == ["green", "black", "green"], runs
    # Filling starts STALL_FILL_S (0.5 s) into the 1.5 s outage: ~1 s of black at 30 fps.
    assert 18 <= runs[1][1] <= 40, runs
    # Every filler frame reaches the sink, but for those its one-frame mailbox replaced unread when the
    # sink thread fell behind on a loaded machine (counted in output_dropped).
    summary = runner.summary()
    assert runs[1][1] <= summary.filler_frames <= runs[1][1] + summary.output_dropped[sink.name]
    black_pts = [pts for (_, _, pts), kind in zip(sink.frames, kinds) if kind == "black"]
    step_s = np.median(np.diff(black_pts)) * float(Fraction(1, 90000))
    assert 0.025 < step_s < 0.06
    all_pts = [pts for _, _, pts in sink.frames]
    assert all_pts == sorted(all_pts)
    assert {bgr.shape for bgr, _, _ in sink.frames} == {(48, 64, 3)}


def test_sigterm_stops_the_run_and_finalises_the_recording(tmp_path):
    config = RunConfig(deadline_ms=500, preset="ultrafast")
    detector = ScriptedDetector()
    out = tmp_path / "live.mp4"
    runner = LiveRunner(LiveSource(str(CARPHONE)), [FileSink(out, preset="ultrafast")], config, processor=green_processor(config, detector))
    previous = signal.getsignal(signal.SIGTERM)
    threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()  # as from a service manager
    summary = runner.run()  # pytest runs tests on the main thread, where the handler is installed
    assert signal.getsignal(signal.SIGTERM) is previous  # and removed again
    assert 1.0 < summary.seconds < 3.5
    frames, pts = decode_all(out)
    assert len(frames) == summary.written[str(out)] >= 20
    assert pts == sorted(pts)
    for bgr in frames:  # green after H.264 (not bit-exact)
        assert np.abs(bgr.astype(int) - GREEN).max() < 40


class BrokenSink(CaptureSink):
    name = "broken"

    def write(self, frame: Frame) -> bool:
        raise OSError("disk full")


def test_run_fails_when_every_output_has_failed():
    config = RunConfig()
    runner = LiveRunner(LiveSource(str(CARPHONE)), [BrokenSink()], config, processor=green_processor(config, ScriptedDetector()))
    started = time.monotonic()
    with pytest.raises(FaceanonError, match="disk full"):
        runner.run()
    assert time.monotonic() - started < 3


class SlowRedetector:
    """Stands in for the tracker's re-detection around tracks (``--detect-every``): hangs."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image, boxes: np.ndarray) -> Detections:
        self.calls += 1
        time.sleep(0.3)
        return Detections.empty()


def test_the_deadline_also_covers_re_detection_between_full_frame_passes():
    config = RunConfig(detect_every=2, deadline_ms=100, duration_s=2.0)
    anonymizer = Solid(color_bgr=(0, 255, 0), mask_shape="box", mask_scale=1.0)
    processor = FrameProcessor(config, make_detector=lambda: ScriptedDetector(), anonymizer=anonymizer, live=True)  # ByteTrack
    processor.tracking.roi = slow = SlowRedetector()
    sink = CaptureSink()
    runner = LiveRunner(LiveSource(str(CARPHONE)), [sink], config, processor=processor)
    runner.run()
    kinds = classify(sink.frames)
    assert "RAW" not in kinds
    assert slow.calls >= 3 and kinds.count("black") >= slow.calls
    assert kinds.count("green") >= 3
