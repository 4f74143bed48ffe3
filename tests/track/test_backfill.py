"""Backfill: held frames get faces found later (walking back) and interpolated boxes on skipped frames."""

import numpy as np

from faceanon_video.track.backfill import Backfill
from faceanon_video.types import Detections, Frame


def frame(i):
    return Frame(bgr=np.zeros((120, 160, 3), np.uint8), index=i)


def faces(*rows):
    """rows of (track_id, x0, y0, x1, y1)."""
    rows = np.array(rows, np.float32).reshape(-1, 5)
    n = len(rows)
    return Detections(
        xyxy=rows[:, 1:],
        score=np.ones(n),
        landmarks=np.repeat(((rows[:, 1:3] + rows[:, 3:5]) / 2)[:, None], 5, axis=1),
        track_id=rows[:, 0].astype(np.int64),
        predicted=np.zeros(n, bool),
        seed=rows[:, 0].astype(np.uint64),
    )


class FindsAt:
    """Stands in for RoiRedetector: finds a face at ``box`` in the frames listed, nothing elsewhere."""

    def __init__(self, frames_with_face, box):
        self.frames, self.box, self.calls = frames_with_face, np.array(box, np.float32), []

    def detect(self, frame, boxes):
        index = int(frame.read_bgr()[0, 0, 0])
        self.calls.append(index)
        if index in self.frames:
            return Detections(xyxy=self.box[None], score=np.ones(1))
        return Detections.empty()


def marked(i):
    f = frame(i)
    f.bgr[0, 0, 0] = i  # lets FindsAt know which frame it is looking at
    return f


def test_frames_come_out_in_order_after_the_lookback():
    backfill = Backfill(None, lookback=3)
    out = []
    for i in range(10):
        out += [f.index for f, _ in backfill.push(frame(i), faces(), full_pass=True)]
        assert len(backfill._held) <= 3
    out += [f.index for f, _ in backfill.flush()]
    assert out == list(range(10))


def test_a_face_found_late_is_followed_back_while_re_detection_finds_it():
    finder = FindsAt({3, 4}, [10, 10, 40, 40])
    backfill = Backfill(finder, lookback=8, carry=0, edge_carry=0)  # stop at the first full-pass miss
    for i in range(5):
        backfill.push(marked(i), faces(), full_pass=True)
    backfill.push(marked(5), faces((7, 12, 12, 42, 42)), full_pass=True)  # track 7 is born at frame 5
    settled = dict((f.index, d) for f, d in backfill.flush())
    assert settled[4].track_id.tolist() == [7] and settled[3].track_id.tolist() == [7]
    np.testing.assert_allclose(settled[4].xyxy[0], [5.5, 5.5, 44.5, 44.5])  # found box + 15 % per side
    assert not settled[4].predicted[0] and settled[4].seed[0] == 7
    # Frame 2 had a full pass and re-detection found nothing there either: the walk stops.
    assert len(settled[2]) == 0 and finder.calls == [4, 3, 2]


def test_on_skipped_frames_a_new_face_is_carried_back_even_unseen_and_stops_at_the_full_pass():
    backfill = Backfill(FindsAt(set(), None), lookback=8, detect_every=3, carry=0, edge_carry=0)
    backfill.push(marked(0), faces(), full_pass=True)
    backfill.push(marked(1), faces(), full_pass=False)
    backfill.push(marked(2), faces(), full_pass=False)
    backfill.push(marked(3), faces((4, 50, 50, 70, 70)), full_pass=True)
    settled = dict((f.index, d) for f, d in backfill.flush())
    assert len(settled[0]) == 0
    for i, grown in ((2, 1.15), (1, 1.15**2)):
        box = settled[i].xyxy[0]
        assert settled[i].predicted[0] and settled[i].track_id[0] == 4
        np.testing.assert_allclose(box[2:] - box[:2], 20 * grown, rtol=1e-5)
        np.testing.assert_allclose((box[:2] + box[2:]) / 2, 60, rtol=1e-5)


def test_skipped_frames_get_boxes_interpolated_between_full_passes():
    backfill = Backfill(None, detect_every=4)
    backfill.push(frame(0), faces((1, 0, 0, 20, 20)), full_pass=True)
    for i in (1, 2, 3):  # the tracker coasts: same box as frame 0
        backfill.push(frame(i), faces((1, 0, 0, 20, 20)), full_pass=False)
    backfill.push(frame(4), faces((1, 40, 8, 60, 28)), full_pass=True)
    settled = dict((f.index, d) for f, d in backfill.flush())
    for i in (1, 2, 3):
        np.testing.assert_allclose(settled[i].xyxy[0], [10 * i, 2 * i, 20 + 10 * i, 20 + 2 * i])
    np.testing.assert_allclose(settled[4].xyxy[0], [40, 8, 60, 28])


def test_a_shot_change_releases_the_held_frames_and_nothing_crosses_it():
    finder = FindsAt({0, 1}, [10, 10, 40, 40])
    backfill = Backfill(finder, lookback=8, carry=0, edge_carry=0)  # stop at the first full-pass miss
    backfill.push(marked(0), faces(), full_pass=True)
    backfill.push(marked(1), faces(), full_pass=True)
    released = backfill.push(marked(2), faces((9, 10, 10, 40, 40)), full_pass=True, cut=True)
    assert [f.index for f, _ in released] == [0, 1]
    assert all(len(d) == 0 for _, d in released) and finder.calls == []


def test_a_failed_frame_stays_failed_and_the_walk_goes_past_it():
    finder = FindsAt({0}, [10, 10, 40, 40])
    backfill = Backfill(finder, lookback=8, carry=0, edge_carry=0)  # stop at the first full-pass miss
    backfill.push(marked(0), faces(), full_pass=True)
    backfill.push(marked(1), RuntimeError("detector crashed"), full_pass=False)
    backfill.push(marked(2), faces((3, 10, 10, 40, 40)), full_pass=True)
    settled = dict((f.index, d) for f, d in backfill.flush())
    assert isinstance(settled[1], RuntimeError)
    assert settled[0].track_id.tolist() == [3]


def test_a_new_face_is_carried_back_past_full_passes_that_missed_it():
    """--detect-every 1: every frame is a full pass; a face first seen late is still covered a few
    frames back (``carry``), then the walk stops."""
    backfill = Backfill(FindsAt(set(), None), lookback=8, carry=2)
    for i in range(5):
        backfill.push(marked(i), faces(), full_pass=True)
    backfill.push(marked(5), faces((3, 60, 50, 90, 80)), full_pass=True)  # mid-frame, not at an edge
    settled = dict((f.index, d) for f, d in backfill.flush())
    assert [len(settled[i]) for i in range(5)] == [0, 0, 0, 1, 1]
    assert settled[4].predicted[0] and settled[3].xyxy[0, 0] < settled[4].xyxy[0, 0] < 60  # grown each frame back


def test_a_face_found_at_the_edge_is_carried_back_out_to_that_edge():
    backfill = Backfill(FindsAt(set(), None), lookback=8, carry=0, edge_carry=4)
    for i in range(6):
        backfill.push(marked(i), faces(), full_pass=True)
    backfill.push(marked(6), faces((9, 140, 40, 160, 62)), full_pass=True)  # touching the right edge (width 160)
    settled = dict((f.index, d) for f, d in backfill.flush())
    assert [len(settled[i]) for i in range(6)] == [0, 0, 1, 1, 1, 1]
    for i in (2, 5):
        x0, y0, x1, y1 = settled[i].xyxy[0]
        assert x1 >= 160 and x0 < 140 and y0 > 0  # stretched to the right edge only
