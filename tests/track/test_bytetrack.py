"""ByteTracker on literal detections: ids, coasting, confirmation, privacy invariants, seeds, cost."""

import time

import numpy as np
import pytest

from faceanon_video.track.bytetrack import ByteTracker, buffered_iou
from faceanon_video.track.seeds import TrackSeeder
from faceanon_video.types import Detections, Frame

FRAME = Frame(bgr=np.zeros((480, 640, 3), np.uint8), index=0)
KEY = b"test-key-0123456789abcdef"


def dets(boxes, scores=None, **kwargs) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.full(len(boxes), 0.9) if scores is None else scores
    return Detections(xyxy=boxes, score=scores, **kwargs)


def face_at(x, y, size=40):
    return [x, y, x + size, y + size]


def covers(outer, inner, fraction=0.9) -> bool:
    lt, rb = np.maximum(outer[:2], inner[:2]), np.minimum(outer[2:], inner[2:])
    inter = np.prod(np.clip(rb - lt, 0, None))
    return inter >= fraction * np.prod(inner[2:] - inner[:2])


def tracker(**kwargs) -> ByteTracker:
    return ByteTracker(**{"high_thresh": 0.5, "low_thresh": 0.25, "key": KEY, **kwargs})


def test_ids_start_at_one_increase_and_restart_after_reset():
    t = tracker()
    out = t.update(dets([face_at(10, 10), face_at(300, 10)]), FRAME)
    assert out.track_id.tolist() == [1, 2]
    assert out.predicted.tolist() == [False, False]
    out = t.update(dets([face_at(12, 10), face_at(302, 10), face_at(150, 300)]), FRAME)
    assert out.track_id.tolist() == [1, 2, 3]
    t.reset()
    assert t.update(dets([face_at(500, 300)]), FRAME).track_id.tolist() == [1]


def test_moving_face_keeps_its_id():
    t = tracker()
    ids = {int(t.update(dets([face_at(20 + 12 * i, 100 + 3 * i)]), FRAME).track_id[0]) for i in range(40)}
    assert ids == {1}


def test_confirmed_track_coasts_on_predicted_box_then_is_dropped():
    t = tracker(lost_track_buffer=5)
    for i in range(10):  # moving right at 8 px/frame
        t.update(dets([face_at(100 + 8 * i, 100)]), FRAME)
    for k in range(1, 6):
        out = t.update(Detections.empty(), FRAME)
        assert out.track_id.tolist() == [1] and out.predicted.tolist() == [True]
        truth = np.array(face_at(100 + 8 * (9 + k), 100), np.float32)
        assert covers(out.xyxy[0], truth), (k, out.xyxy[0], truth)  # the face is still covered
    assert len(t.update(Detections.empty(), FRAME)) == 0  # buffer exhausted


def test_coasting_track_is_reacquired_with_the_same_id():
    t = tracker()
    for i in range(10):
        t.update(dets([face_at(100 + 8 * i, 100)]), FRAME)
    for i in range(10, 14):  # occluded for 4 frames
        t.update(Detections.empty(), FRAME)
    out = t.update(dets([face_at(100 + 8 * 14, 100)]), FRAME)
    assert out.track_id.tolist() == [1] and out.predicted.tolist() == [False]


def test_unconfirmed_detection_is_anonymized_but_a_blink_is_not_carried():
    t = tracker(min_hits=3)
    out = t.update(dets([face_at(200, 200)]), FRAME)
    assert len(out) == 1 and not out.predicted[0]  # privacy first: shown to the anonymizer at once
    assert len(t.update(Detections.empty(), FRAME)) == 0  # a one-frame false positive does not linger


def test_none_means_detector_skipped_nothing_is_dropped():
    t = tracker(min_hits=3)
    t.update(dets([face_at(200, 200)]), FRAME)
    out = t.update(None, FRAME)
    assert out.track_id.tolist() == [1] and out.predicted.tolist() == [True]


def test_a_pass_that_did_not_search_a_tentative_track_does_not_drop_it():
    """A small face found on an enlarged tile is kept through passes whose tile was elsewhere."""
    t = tracker(min_hits=2)
    t.update(dets([face_at(200, 200)]), FRAME)
    nowhere = lambda xyxy: np.zeros(len(xyxy), bool)  # noqa: E731
    out = t.update(Detections.empty(), FRAME, searched=nowhere)
    assert out.track_id.tolist() == [1] and out.predicted.tolist() == [True]
    out = t.update(dets([face_at(201, 200)]), FRAME)  # found again: confirmed
    assert out.track_id.tolist() == [1]
    # Searched and missed: a confirmed track coasts; a tentative one searched and missed is dropped.
    everywhere = lambda xyxy: np.ones(len(xyxy), bool)  # noqa: E731
    assert t.update(Detections.empty(), FRAME, searched=everywhere).predicted.tolist() == [True]
    t2 = tracker(min_hits=2)
    t2.update(dets([face_at(200, 200)]), FRAME)
    assert len(t2.update(Detections.empty(), FRAME, searched=everywhere)) == 0  # a blink: gone at once


def test_a_tentative_small_face_gets_a_second_tile_visit_then_is_dropped():
    """Found once on a tile, missed when the tile comes round (a dim face scores low on some
    visits): kept to the next visit, dropped if missed there too."""
    t = tracker(min_hits=2, lost_track_buffer=15)
    t.update(dets([face_at(200, 200, 26)]), FRAME)
    nowhere = lambda xyxy: np.zeros(len(xyxy), bool)  # noqa: E731
    everywhere = lambda xyxy: np.ones(len(xyxy), bool)  # noqa: E731
    visits = []
    for frame in range(1, 29):
        out = t.update(Detections.empty(), FRAME, searched=everywhere if frame % 14 == 0 else nowhere)
        visits.append(len(out))
    assert visits[12] == 1 and visits[13] == 1  # the first visit's miss does not drop it
    assert visits[26] == 1 and visits[27] == 0  # the second does


def test_a_confirmed_small_face_is_forgiven_one_late_tile_miss():
    """Tile visits every 21 frames (--detect-every 3), past the 15-frame buffer: the first visit
    that misses the face does not end it, the next one does."""
    t = tracker(min_hits=2, lost_track_buffer=15)
    for _ in range(2):
        t.update(dets([face_at(200, 200, 26)]), FRAME)  # confirmed
    nowhere = lambda xyxy: np.zeros(len(xyxy), bool)  # noqa: E731
    everywhere = lambda xyxy: np.ones(len(xyxy), bool)  # noqa: E731
    alive = [len(t.update(Detections.empty(), FRAME, searched=everywhere if f % 21 == 0 else nowhere)) for f in range(1, 43)]
    assert all(alive[:41]) and alive[41] == 0, alive


def test_low_score_box_continues_a_track_but_does_not_start_one():
    t = tracker()
    for i in range(5):
        t.update(dets([face_at(100 + 5 * i, 100)]), FRAME)
    out = t.update(dets([face_at(125, 100), face_at(400, 300)], scores=[0.3, 0.3]), FRAME)
    assert out.track_id.tolist() == [1] and out.predicted.tolist() == [False]
    assert out.score[0] == pytest.approx(0.3)


def test_low_score_box_cut_by_the_frame_border_starts_a_track():
    t = tracker()
    out = t.update(dets([[620, 200, 640, 250], [300, 200, 340, 250]], scores=[0.3, 0.3]), FRAME)
    assert len(out) == 1 and out.xyxy[0, 2] == 640


@pytest.mark.parametrize("seed", range(5))
def test_every_high_score_detection_is_covered(seed):
    """The privacy invariant, on random clutter: tracks appear, vanish, overlap and jump."""
    rng = np.random.default_rng(seed)
    t = tracker()
    for _ in range(60):
        n = rng.integers(0, 8)
        xy = rng.uniform(0, 600, (n, 2))
        size = rng.uniform(15, 80, (n, 1))
        boxes = np.concatenate([xy, xy + size], axis=1)
        d = dets(boxes, rng.uniform(0.1, 1.0, n))
        out = t.update(d, FRAME)
        for box in d.xyxy[d.score >= 0.5]:
            clipped = np.clip(box, 0, [640, 480, 640, 480])
            if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                continue  # entirely off-screen: nothing to cover
            assert any(covers(o, clipped) for o in out.xyxy), (box, out.xyxy)


def test_two_faces_crossing_with_occlusion_keep_their_ids():
    t = tracker()
    seen = {1: set(), 2: set()}
    for i in range(50):
        a = face_at(50 + 10 * i, 100)  # left to right
        b = face_at(550 - 10 * i, 104)  # right to left, in front
        boxes = [a, b] if abs(a[0] - b[0]) > 30 else [b]  # a is hidden while they overlap
        out = t.update(dets(boxes), FRAME)
        for box, tid in zip(out.xyxy, out.track_id):
            if not out.predicted[list(out.track_id).index(tid)]:
                centre = (box[0] + box[2]) / 2
                (seen[1] if abs(centre - (a[0] + 20)) < abs(centre - (b[0] + 20)) else seen[2]).add(int(tid))
    assert seen == {1: {1}, 2: {2}}


def test_fast_face_gets_a_bigger_box_than_a_still_one():
    t = tracker()
    for i in range(10):
        out = t.update(dets([face_at(100, 100), face_at(50 + 20 * i, 300)]), FRAME)
    widths = out.xyxy[:, 2] - out.xyxy[:, 0]
    assert widths[1] > widths[0] + 30


def test_smoothing_reduces_jitter_of_a_still_face():
    rng = np.random.default_rng(1)
    t = tracker()
    raw, smooth = [], []
    for _ in range(100):
        box = np.array(face_at(200, 200), np.float32) + rng.normal(0, 2, 4)
        raw.append(box)
        smooth.append(t.update(dets([box]), FRAME).xyxy[0])
    raw, smooth = np.array(raw[20:]), np.array(smooth[20:])
    assert np.std(np.diff(smooth, axis=0)) < 0.5 * np.std(np.diff(raw, axis=0))


def test_seeds_are_keyed_and_deterministic():
    def run(key):
        t = ByteTracker(key=key)
        return [t.update(dets([face_at(10 + i, 10), face_at(300, 200)]), FRAME).seed.tolist() for i in range(3)]

    assert run(KEY) == run(KEY)
    assert run(KEY) != run(b"another-key-0123456789")
    first = run(KEY)[0]
    assert first == TrackSeeder(KEY).seeds_for(np.array([1, 2])).tolist()


def test_landmarks_are_smoothed_and_carried_while_coasting():
    t = tracker()
    lms = np.array([[[110, 110], [130, 110], [120, 120], [112, 130], [128, 130]]], np.float32)
    for i in range(8):
        out = t.update(dets([face_at(100 + 4 * i, 100)], landmarks=lms + [4 * i, 0]), FRAME)
    assert out.has_landmarks.all()
    coast = t.update(Detections.empty(), FRAME)
    assert coast.predicted[0] and coast.has_landmarks[0]
    assert coast.landmarks[0, 2, 0] > out.landmarks[0, 2, 0]  # nose moved on with the face


def test_float_data_is_carried_for_detected_rows_and_nan_when_predicted():
    t = tracker()
    for i in range(3):
        out = t.update(dets([face_at(100, 100)], data={"mesh": np.full((1, 3), float(i))}), FRAME)
    np.testing.assert_array_equal(out.data["mesh"], [[2.0, 2.0, 2.0]])
    out = t.update(Detections.empty(), FRAME)
    assert np.isnan(out.data.get("mesh", np.full((1, 1), np.nan))).all()


def test_predict_xyxy_does_not_change_state():
    t = tracker()
    for i in range(5):
        t.update(dets([face_at(100 + 10 * i, 100)]), FRAME)
    before = t._tracks.mean.copy()
    boxes = t.predict_xyxy()
    assert boxes.shape == (1, 4) and (boxes[0, 0] + boxes[0, 2]) / 2 == pytest.approx(150 + 20, abs=3)
    assert boxes[0, 0] < 150 and boxes[0, 2] > 190  # grown for motion
    np.testing.assert_array_equal(before, t._tracks.mean)


def test_buffered_iou_matches_plain_iou_at_zero_buffer():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(buffered_iou(a, b, 0.0), [[1 / 3, 0]])
    assert buffered_iou(a, b[1:], 0.6)[0, 0] > 0  # far boxes overlap once buffered


def test_bad_thresholds_rejected():
    with pytest.raises(ValueError):
        ByteTracker(high_thresh=0.3, low_thresh=0.5)


def test_update_with_ten_faces_takes_under_a_millisecond():
    rng = np.random.default_rng(0)
    base = np.array([face_at(20 + 60 * i, 100 + 120 * (i % 3), 45) for i in range(10)], np.float32)
    frames = []
    for f in range(200):
        boxes = base + 30 * np.sin(f / 20 + np.arange(10))[:, None] + rng.normal(0, 1.5, (10, 4))
        frames.append(dets(boxes, rng.uniform(0.3, 0.95, 10))[rng.random(10) > 0.1])
    medians = []
    for _ in range(3):  # best of three: on a shared VM, other guests' load shows up even in CPU time
        t = tracker()
        times = []
        for d in frames:
            start = time.thread_time()
            t.update(d, FRAME)
            times.append(time.thread_time() - start)
        assert len(t) >= 9
        medians.append(np.median(times[20:]))
    # The target is < 1 ms (about 0.5 ms CPU on an idle 2-core VM; see benchmarks/tracking.py); the
    # bound leaves 2x for a CI machine shared with other jobs, which inflates even CPU time.
    assert 1000 * min(medians) < 2.0


def test_a_new_tracks_first_box_is_padded_then_tightens():
    # First detections are often of part of a face (stepping out from behind something): pad them.
    t = tracker()
    first = t.update(dets([face_at(200, 200)]), FRAME).xyxy[0]
    np.testing.assert_allclose(first, [194, 194, 246, 246])  # 40 px box + 15 % per side
    widths = [t.update(dets([face_at(200, 200)]), FRAME).widths[0] for _ in range(30)]
    assert widths[0] < first[2] - first[0] and widths[-1] < 42  # fades back to the (still) face
