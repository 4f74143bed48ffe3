"""Fault injection at every --detect-every setting and in live mode (issue 14).

Faults come in through the documented seam (``FACEANON_FAULTS``, faceanon_video/testing/faults.py),
not by editing code. The reference is the barcode clip's faces as a fault-free detector finds them
in the decoded source (tests/live/conftest.py): no output frame may show the source's fine detail
in any of them. A frame either has its faces anonymized or is obscured whole.
"""

from __future__ import annotations

import numpy as np
import pytest

from faceanon_video.cli import main
from faceanon_video.config import MAX_DETECT_EVERY, RunConfig
from faceanon_video.errors import EXIT_MODEL, EXIT_OBSCURED
from faceanon_video.live.runner import LiveRunner
from faceanon_video.live.sources import LiveSource
from faceanon_video.testing import faults
from tests.live.conftest import CLIP_FRAMES, barcode_clip, decode_frames, is_black  # noqa: F401 - barcode_clip is a fixture

#: A detector outage over part of the clip, a detector that fails now and then, an anonymizer that
#: fails on a run of frames. Each obscures some frames and leaves the rest to be checked.
SCENARIOS = {
    "outage": "detect:calls=15-45",
    "intermittent": "detect:every=4",
    "anonymizer": "anonymize:frames=30-50",
}
#: Representative --detect-every values for the default suite; test_every_detect_every_value runs all.
QUICK_N = (1, 2, 3, 5, 8, MAX_DETECT_EVERY)


@pytest.fixture
def inject(monkeypatch):
    def set_faults(spec: str) -> None:
        monkeypatch.setenv(faults.ENV, spec)
        faults.reset()

    yield set_faults
    faults.reset()


def run_file(clip, tmp_path, detect_every: int) -> tuple[int, list[np.ndarray] | None]:
    out = tmp_path / f"out_{detect_every}.mp4"
    code = main([str(clip.path), "-o", str(out), "-q", "--detect-every", str(detect_every)])
    return code, decode_frames(out) if out.exists() else None


def check_file_run(clip, tmp_path, detect_every: int, spec: str, inject) -> None:
    inject(spec)
    code, frames = run_file(clip, tmp_path, detect_every)
    if code == EXIT_MODEL:
        # Nearly every frame failed the same way: the run stopped, and wrote nothing.
        assert frames is None and list(tmp_path.iterdir()) == []
        return
    assert code == EXIT_OBSCURED, f"--detect-every {detect_every}, {spec}: exit {code}"
    assert len(frames) == CLIP_FRAMES
    counts = clip.check(frames)  # asserts: no face shows the source's detail
    assert counts["black"] > 0 and counts["faces"] > 0, counts


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("detect_every", QUICK_N)
def test_no_face_leaves_under_faults(barcode_clip, tmp_path, inject, detect_every, scenario):
    check_file_run(barcode_clip, tmp_path, detect_every, SCENARIOS[scenario], inject)


@pytest.mark.parametrize("detect_every", QUICK_N)
def test_detector_failing_on_every_call_stops_the_run_and_writes_nothing(barcode_clip, tmp_path, inject, detect_every):
    inject("detect:all")
    code, frames = run_file(barcode_clip, tmp_path, detect_every)
    assert code == EXIT_MODEL and frames is None and list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("detect_every", [n for n in range(1, MAX_DETECT_EVERY + 1) if n not in QUICK_N])
def test_every_detect_every_value(barcode_clip, tmp_path, inject, detect_every):
    for spec in SCENARIOS.values():
        check_file_run(barcode_clip, tmp_path, detect_every, spec, inject)
        for path in tmp_path.iterdir():
            path.unlink()


class CaptureSink:
    name = "capture"

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def open(self, fps) -> None:
        pass

    def write(self, frame) -> bool:
        self.frames.append(frame.bgr.copy())
        return True

    def close(self) -> None:
        pass


@pytest.mark.parametrize("spec", ["detect:every=3", "detect:calls=10-40", "anonymize:every=5"])
def test_no_face_leaves_under_faults_live(barcode_clip, inject, spec):
    # Live mode detects every frame by default (a new face could otherwise stay visible up to N-1 frames).
    inject(spec)
    sink = CaptureSink()
    runner = LiveRunner(LiveSource(str(barcode_clip.path)), [sink], RunConfig(deadline_ms=2000, progress=False))
    summary = runner.run()
    assert summary.obscured_error > 0
    counts = barcode_clip.check(sink.frames)
    assert counts["faces"] > 0 and counts["black"] >= summary.obscured_error
    assert sum(is_black(f) for f in sink.frames) == counts["black"]
