"""Fail-closed and no-partial-output guarantees of the pipeline, under injected faults."""

from __future__ import annotations

import numpy as np
import pytest

from faceanon_video.config import RunConfig
from faceanon_video.detect import build_detector
from faceanon_video.errors import ModelError
from faceanon_video.pipeline import FrameProcessor, process_video
from tests.conftest import HAMILTON, decode_all


class FlakyDetector:
    """The real detector, except that it raises on chosen frames."""

    def __init__(self, fail_on: set[int]):
        self.inner = build_detector()
        self.fail_on = fail_on
        self.calls = 0

    def detect(self, image):
        index = self.calls
        self.calls += 1
        if index in self.fail_on:
            raise RuntimeError("injected detector fault")
        return self.inner.detect(image)


# With --detect-every 2, a failed pass on frame 6 also fails frames 5 and 7: it was their only check.
@pytest.mark.parametrize("detect_every, failing_calls, failing_frames", [(1, {3, 7}, {3, 7}), (2, {3, 7}, {5, 6, 7, 13, 14, 15}), (3, {2}, {4, 5, 6, 7, 8})])
def test_detector_fault_obscures_that_frame_and_those_it_checked(tmp_path, detect_every, failing_calls, failing_frames):
    config = RunConfig(progress=False, end_s=1.0, workers=1, detect_every=detect_every)
    processor = FrameProcessor(config, make_detector=lambda: FlakyDetector(failing_calls))
    out = tmp_path / "out.mp4"
    summary = process_video(HAMILTON, out, config, processor)
    frames, _ = decode_all(out)
    assert summary.obscured_frames == len(failing_frames) and len(frames) == summary.frames
    means = [f.mean() for f in frames]
    assert all(means[i] < 3 for i in failing_frames)  # fully black (after compression)
    assert all(m > 10 for i, m in enumerate(means) if i not in failing_frames)  # the opening shot is dark (~16)


class BrokenAnonymizer:
    def __init__(self, every: int = 1):
        self.every = every

    def apply(self, frame, faces):
        if len(faces) and frame.index % self.every == 0:
            raise ValueError("injected anonymizer fault")
        return frame


def test_anonymizer_fault_never_passes_a_face_through(tmp_path):
    config = RunConfig(progress=False, end_s=1.0)
    processor = FrameProcessor(config, anonymizer=BrokenAnonymizer(every=3))
    out = tmp_path / "out.mp4"
    summary = process_video(HAMILTON, out, config, processor)
    frames, _ = decode_all(out)
    assert summary.obscured_frames > 0
    assert summary.obscured_frames == sum(1 for f in frames if f.mean() < 3)


def test_anonymizer_failing_on_every_frame_stops_the_run(tmp_path):
    # Fail closed per frame, but a run that would be all black stops with the error (exit 3), no output.
    config = RunConfig(progress=False, end_s=2.0)
    processor = FrameProcessor(config, anonymizer=BrokenAnonymizer())
    out = tmp_path / "out.mp4"
    with pytest.raises(ModelError, match="25 of 25 frames failed the same way.*injected anonymizer fault"):
        process_video(HAMILTON, out, config, processor)
    assert list(tmp_path.iterdir()) == []


class Interrupting:
    def __init__(self):
        self.n = 0

    def apply(self, frame, faces):
        self.n += 1
        if self.n == 20:
            raise KeyboardInterrupt
        return frame


def test_interrupt_leaves_no_output(tmp_path):
    config = RunConfig(progress=False)
    processor = FrameProcessor(config, anonymizer=Interrupting())
    # KeyboardInterrupt is not an ordinary failure: it stops the run instead of obscuring a frame.
    processor.finish = _reraise_interrupt(processor.finish)
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        process_video(HAMILTON, out, config, processor)
    assert list(tmp_path.iterdir()) == []


def _reraise_interrupt(finish):
    return finish  # finish lets BaseException (KeyboardInterrupt) propagate; kept explicit for readers


def test_frame_processor_counts(tmp_path):
    config = RunConfig(progress=False, end_s=0.5)
    processor = FrameProcessor(config)
    out = tmp_path / "out.mp4"
    summary = process_video(HAMILTON, out, config, processor)
    assert summary.frames == 15 and summary.obscured_frames == 0
    assert summary.faces >= 15  # at least one face per frame in this clip's opening shot
    assert set(summary.stage_seconds) >= {"decode", "detect", "track", "anonymize", "encode"}
    assert np.isfinite(summary.fps)


def test_shot_change_ends_tracks_so_no_one_inherits_another_persons_identity():
    # short_hamilton_clip.mp4 cuts at frames 20, 82 and 211 (from one stage shot to another).
    from faceanon_video.io.decode import VideoReader

    processor = FrameProcessor(RunConfig(progress=False, mode="none"))
    ids_by_frame, cuts = {}, []
    for frame in VideoReader(HAMILTON, end_s=7.2):
        faces, _, cut = processor.tracking._track(frame, processor.detect(frame), redetect=True)
        ids_by_frame[frame.index] = set(faces.track_id.tolist())
        cuts += [frame.index] if cut else []
    assert cuts == [c for c in (20, 82, 211) if c in ids_by_frame]
    for cut in (20, 82, 211):
        if cut in ids_by_frame:
            assert not ids_by_frame[cut] & ids_by_frame[cut - 1], f"a track crosses the cut at frame {cut}"
    # ...while within a shot the same faces keep their ids.
    assert ids_by_frame[40] & ids_by_frame[41]
