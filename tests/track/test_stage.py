"""TrackingStage: one front door for tracking, on literal frames and boxes."""

from __future__ import annotations

import numpy as np

from faceanon_video.config import RunConfig
from faceanon_video.track.stage import TrackingStage, thresholds
from faceanon_video.types import Detections, Frame

FACE = Detections(xyxy=[[40, 40, 80, 90]], score=[0.9])


def grey(index: int, bgr=(120, 120, 120)) -> Frame:
    return Frame(bgr=np.full((180, 320, 3), bgr, np.uint8), index=index)


def stage(live: bool, detect_full=lambda frame: FACE, **config) -> TrackingStage:
    return TrackingStage.from_config(RunConfig(**config), detect_full, live=live)


def test_thresholds_follow_the_detector_and_tracking():
    assert thresholds(RunConfig()) == (0.5, 0.25)
    assert thresholds(RunConfig(detector="centerface")) == (0.3, 0.15)
    assert thresholds(RunConfig(thresh=0.8, track=False)) == (0.8, 0.8)
    assert stage(live=True).high_thresh == 0.5


def test_live_stage_releases_every_frame_at_once_with_its_tracked_faces():
    s = stage(live=True)
    assert s.detect_every == 1 and not s.holds_frames
    released = s.step(grey(0), FACE)
    assert [f.index for f, _ in released] == [0]
    faces = released[0][1]
    assert faces.track_id.tolist() == [1] and np.allclose(faces.xyxy[0], FACE.xyxy[0], atol=15)


def test_file_stage_holds_frames_back_and_flush_returns_them_in_order():
    s = stage(live=False)
    assert s.detect_every == 2 and s.holds_frames
    out = []
    frames = s.backfill.lookback + 6
    for i in range(frames):
        out += s.step(grey(i), FACE if s.should_detect(grey(i)) else None)
    assert len(out) == frames - s.backfill.lookback  # the rest are still held
    out += s.flush()
    assert [f.index for f, _ in out] == list(range(frames))
    assert all(isinstance(faces, Detections) and len(faces) == 1 for _, faces in out)  # skipped frames too


def test_a_detection_error_travels_with_its_frame_to_fail_closed():
    s = stage(live=True)
    error = RuntimeError("detector down")
    (frame, faces), = s.step(grey(0), error)
    assert faces is error


def test_no_track_passes_detections_through_and_has_nothing_to_redetect():
    s = stage(live=True, track=False)
    assert s.redetect_job(grey(1)) is None
    (_, faces), = s.step(grey(0), FACE)
    assert faces.track_id.tolist() == [1]
    (_, faces), = s.step(grey(1), FACE)
    assert faces.track_id.tolist() == [2]  # a new id every frame


def test_a_shot_change_ends_tracks_and_detects_a_skipped_frame_in_full():
    calls = []
    s = stage(live=True, detect_every=2, detect_full=lambda frame: calls.append(frame.index) or FACE)
    dark_blue, bright_red = (90, 20, 20), (40, 40, 230)
    s.step(grey(0, dark_blue), FACE)
    s.step(grey(1, dark_blue), None)
    (_, faces), = s.step(grey(3, bright_red), None)  # a cut on a frame the schedule skips
    assert calls == [3]
    assert faces.track_id.tolist() == [2]  # a new track: nobody inherits the id across the cut


def test_redetect_job_looks_around_the_predicted_boxes():
    s = stage(live=True, detect_every=2)

    class Roi:
        def detect(self, frame, boxes_xyxy):
            self.boxes = boxes_xyxy
            return FACE

    s.roi = roi = Roi()
    s.step(grey(0), FACE)
    job = s.redetect_job(grey(1))
    assert job is not None and job() is FACE
    (x0, y0, x1, y1), = roi.boxes  # the track's predicted box, grown: it holds the face
    assert x0 <= 40 and y0 <= 40 and x1 >= 80 and y1 >= 90 and x1 - x0 < 2.5 * 40
