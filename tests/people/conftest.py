"""Shared fixtures: real faces tracked the way the pipeline tracks them, and their ground truth."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from faceanon_video.detect.yunet import YuNetDetector
from faceanon_video.testing.synthetic import Actor, render_clip
from faceanon_video.track.bytetrack import ByteTracker
from faceanon_video.types import Detections, Frame

KEY = b"k" * 32
DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def track_frames(frames: list[np.ndarray], cuts: set[int] = frozenset()) -> list[Detections]:
    """YuNet + ByteTrack over BGR frames, ending every track at the frames in ``cuts`` (as the
    pipeline does at a detected shot change)."""
    detector = YuNetDetector(threshold=0.25, min_face_px=20)
    tracker = ByteTracker(high_thresh=0.5, low_thresh=0.25, lost_track_buffer=15, key=KEY)
    out = []
    for index, bgr in enumerate(frames):
        if index in cuts:
            tracker.cut()
        frame = Frame(bgr=bgr, index=index)
        out.append(tracker.update(detector.detect(frame), frame))
    return out


def gt_identity_of_tracks(clip, tracked: list[Detections]) -> dict[int, int]:
    """Track id -> ground-truth person (actor id), by the most frequent best-IoU match."""
    votes: dict[int, dict[int, int]] = {}
    for gt_frame, faces in zip(clip.gt_frames, tracked):
        for xyxy, track in zip(faces.xyxy, faces.track_id.tolist()):
            best, best_iou = None, 0.3
            for f in gt_frame["faces"]:
                g = np.asarray(f["xyxy"])
                inter = np.prod(np.clip(np.minimum(xyxy[2:], g[2:]) - np.maximum(xyxy[:2], g[:2]), 0, None))
                iou = inter / (np.prod(xyxy[2:] - xyxy[:2]) + np.prod(g[2:] - g[:2]) - inter)
                if iou > best_iou:
                    best, best_iou = f["id"], iou
            if best is not None:
                votes.setdefault(track, {}).setdefault(best, 0)
                votes[track][best] += 1
    return {t: max(v, key=v.get) for t, v in votes.items()}


def _cut_scenario(n_frames: int, W: int = 640, H: int = 272) -> list[Actor]:
    """Three people, then a cut at frame ``n_frames // 2`` after which the same three stand elsewhere
    (an edited interview: the people stay, the framing changes)."""
    end, start = (n_frames // 2 - 1) / (n_frames - 1), (n_frames // 2) / (n_frames - 1)

    def two_shots(a, b):
        (x0, y0, h0), (x1, y1, h1) = a, b
        return ((0.0, x0 * W, y0 * H, h0), (end, x0 * W + 6, y0 * H, h0), (start, x1 * W, y1 * H, h1), (1.0, x1 * W - 6, y1 * H, h1))

    return [
        Actor("obama", two_shots((0.2, 0.35, 70), (0.75, 0.5, 80))),
        Actor("lacamoire", two_shots((0.5, 0.4, 66), (0.2, 0.45, 74))),
        Actor("john_a", two_shots((0.8, 0.4, 62), (0.5, 0.35, 58))),
    ]


@lru_cache(maxsize=None)
def cut_clip(seed: int = 0, n_frames: int = 60):
    clip = render_clip(n_frames=n_frames, seed=seed, scenario=(_cut_scenario(n_frames), []))
    cut = n_frames // 2  # u = 0.5 falls between frames cut-1 and cut
    return clip, track_frames(clip.frames, {cut}), cut


@lru_cache(maxsize=None)
def default_clip(seed: int = 0):
    clip = render_clip(n_frames=90, seed=seed)
    return clip, track_frames(clip.frames)


def linking_score(tracks, person_of_track: dict[int, int], gt: dict[int, int], min_face_px: float = 40) -> dict:
    """Pairs of tracks of one ground-truth person that are not on screen together (a tracker's
    duplicate box can never be linked, by design) and both reach ``min_face_px``: how many got one
    person id; and pairs of different people that got one person id (wrong merges)."""
    ids = sorted(gt)
    same = linked = different = wrong = 0
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            ta, tb = tracks[a], tracks[b]
            if gt[a] != gt[b]:
                different += 1
                wrong += person_of_track[a] == person_of_track[b]
            elif ta.last_frame < tb.first_frame or tb.last_frame < ta.first_frame:
                if min(ta.max_height_px, tb.max_height_px) >= min_face_px:
                    same += 1
                    linked += person_of_track[a] == person_of_track[b]
    return {"same_pairs": same, "linked": linked, "different_pairs": different, "wrong_merges": wrong}


@pytest.fixture(scope="session")
def key() -> bytes:
    return KEY
