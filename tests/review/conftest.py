"""Fixtures of the review app's tests: a literal plan for the carphone clip, and a session serving it."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from faceanon_video.config import RunConfig
from faceanon_video.plan import FORMAT, Plan
from faceanon_video.report import sha256_file

DATA = Path(__file__).parent.parent / "data"
CARPHONE = DATA / "carphone_pristine.mp4"  # 176x144, 120 frames
FACE_XYXY = [60.0, 30.0, 120.0, 100.0]  # person 1, on every frame (a literal box; the pixels are what is checked)
LATE_XYXY = [10.0, 40.0, 40.0, 80.0]  # person 2 appears mid-frame at frame 40
SECOND_XYXY = [130.0, 60.0, 170.0, 100.0]  # a face only the second detector found, on frame 64


def carphone_plan() -> Plan:
    def rows(frames, xyxy):
        return [{"frame": f, "xyxy": xyxy, "landmarks": None, "score": 0.9, "detected": f % 3 == 0} for f in frames]

    return Plan.from_dict({
        "format": FORMAT, "version": 1,
        "input": {"name": CARPHONE.name, "sha256": sha256_file(CARPHONE), "frame_count": 120, "width": 176, "height": 144,
                  "fps": 29.97, "time_base": "1/30000"},
        "persons": [{"person_id": 1, "track_ids": [1]}, {"person_id": 2, "track_ids": [2]}],
        "tracks": [{"track_id": 1, "person_id": 1, "frames": rows(range(120), FACE_XYXY)},
                   {"track_id": 2, "person_id": 2, "frames": rows(range(40, 60), LATE_XYXY)}],
        "obscured": [{"start_frame": 100, "end_frame": 101, "reason": "RuntimeError: boom"}],
        "candidates": [{"frame": 10, "xyxy": [130, 10, 160, 40], "score": 0.3},  # a plan made before sources: low_score
                       {"frame": 64, "xyxy": SECOND_XYXY, "score": 0.8, "source": "second_detector"}],
    })


@pytest.fixture
def session(tmp_path):
    from faceanon_video.review.session import ReviewSession

    s = ReviewSession(CARPHONE, carphone_plan(), tmp_path / "carphone.plan.json", tmp_path / "out.mp4", RunConfig(progress=False),
                      [tmp_path / "out.report.json"])
    yield s
    s.close()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
