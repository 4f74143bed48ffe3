"""The synthetic ground-truth generator: deterministic, honest boxes, readable by the eval tools."""

import av
import numpy as np
import pytest

from faceanon_video.eval.annotations import read_gt_json
from faceanon_video.testing.synthetic import make_synthetic_clip, render_clip, score_tracks
from faceanon_video.types import Detections


@pytest.fixture()
def clip(synthetic_clip):
    return synthetic_clip


def test_same_seed_same_clip_other_seed_other_clip(clip):
    again = render_clip(12, seed=0)
    other = render_clip(12, seed=1)
    short = render_clip(12, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(again.frames, short.frames))
    assert again.gt == short.gt
    assert not all(np.array_equal(a, b) for a, b in zip(again.frames, other.frames))


def test_ground_truth_covers_the_scripted_situations(clip):
    faces = [f for frame in clip.gt_frames for f in frame["faces"]]
    assert {f["id"] for f in faces} == {1, 2, 3, 4, 5, 6}
    conditions = set().union(*(f["conditions"] for f in faces))
    assert {"blur", "dim", "squeeze", "halfcrop", "occluded", "small", "crossing"} <= conditions
    present = {k: [i for i, fr in enumerate(clip.gt_frames) if any(f["id"] == k for f in fr["faces"])] for k in range(1, 7)}
    gaps = {k: sorted(set(range(v[0], v[-1] + 1)) - set(v)) for k, v in present.items()}
    assert 1 <= len(gaps[1]) <= 6  # fully hidden behind face 2 for a few frames while crossing
    assert 1 <= len(gaps[6]) <= 8  # fully behind the pillar
    assert len(gaps[4]) >= 10  # left the frame and came back
    h, w = clip.frames[0].shape[:2]
    for frame in clip.gt_frames:
        for f in frame["faces"]:
            x0, y0, x1, y1 = f["xyxy"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert 0 < f["visible"] <= 1
    sizes = [f["size_px"] for f in faces if f["id"] == 5]
    assert min(sizes) <= 21 and max(sizes) >= 25  # the small face spans 20-30 px


def test_ground_truth_boxes_sit_on_the_pasted_faces(clip):
    """Where a face is visible, its box is not background: the pixels differ from the plain frame."""
    import cv2

    background = render_clip(41, seed=0, scenario=([], []))
    for i in (0, 20, 40):
        for f in clip.gt_frames[i]["faces"]:
            if f["visible"] < 0.9:
                continue
            x0, y0, x1, y1 = (int(round(v)) for v in f["xyxy"])
            diff = cv2.absdiff(clip.frames[i][y0:y1, x0:x1], background.frames[i][y0:y1, x0:x1])
            assert (diff.max(axis=2) > 20).mean() > 0.8


def test_make_synthetic_clip_writes_video_and_eval_readable_json(tmp_path):
    video, gt = make_synthetic_clip(tmp_path, seed=0, n_frames=20)
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == 20 and frames[0].shape == (272, 640, 3)
    annotations = read_gt_json(gt)
    assert annotations.video_path == video
    assert len(annotations.items) == 20
    assert sum(len(item.xyxy) for item in annotations.items) > 60


def test_score_tracks_counts_leaks_and_id_switches(clip):
    gt_boxes = [clip.boxes(i, include_ignored=True) for i in range(len(clip.frames))]
    perfect = [Detections(xyxy=b, score=np.ones(len(b)), track_id=ids) for b, ids in gt_boxes]
    score = score_tracks(clip, perfect)
    assert len(score.leaked) == 0 and len(score.id_switches) == 0 and score.false_positive_boxes == 0
    # Drop face 3 in frame 10 and swap the ids of faces 1 and 2 from frame 30 on.
    broken = []
    for i, (b, ids) in enumerate(gt_boxes):
        ids = [{1: 2, 2: 1}.get(k, k) if i >= 30 else k for k in ids]
        keep = np.array([not (i == 10 and k == 3) for k in ids], bool)
        broken.append(Detections(xyxy=b[keep], score=np.ones(keep.sum()), track_id=np.array(ids)[keep]))
    score = score_tracks(clip, broken)
    assert [(r["frame"], r["id"]) for r in score.leaked] == [(10, 3)]
    assert sorted((s["frame"], s["id"]) for s in score.id_switches) == [(30, 1), (30, 2)]
