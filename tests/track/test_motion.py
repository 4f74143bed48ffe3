"""Kalman filter and smoothing: the pieces that decide where a coasting or jittery box goes."""

import numpy as np

from faceanon_video.track.kalman import BoxKalman, cxcywh_to_xyxy
from faceanon_video.track.smoothing import OneEuro, hold_pad, motion_pad, move_landmarks


def test_kalman_learns_constant_velocity_and_extrapolates():
    kf = BoxKalman()
    box = np.array([[100.0, 100.0, 140.0, 150.0]])
    mean, cov = kf.initiate(box)
    for step in range(1, 15):
        mean, cov = kf.predict(mean, cov, freeze_size=np.array([False]))
        mean, cov = kf.update(mean, cov, box + [6 * step, -2 * step, 6 * step, -2 * step])
    np.testing.assert_allclose(mean[0, 4:6], [6, -2], atol=0.3)
    # Five frames without measurements: the box keeps moving and the uncertainty grows.
    sigma_before = np.sqrt(cov[0, 0, 0])
    for _ in range(5):
        mean, cov = kf.predict(mean, cov, freeze_size=np.array([True]))
    expected = box[0] + [6 * 19, -2 * 19, 6 * 19, -2 * 19]
    np.testing.assert_allclose(cxcywh_to_xyxy(mean[:, :4])[0], expected, atol=3)
    assert np.sqrt(cov[0, 0, 0]) > 2 * sigma_before


def test_kalman_is_batched_rows_independent():
    kf = BoxKalman()
    boxes = np.array([[0.0, 0, 10, 10], [100, 100, 160, 180]])
    mean, cov = kf.initiate(boxes)
    mean2, cov2 = kf.predict(mean, cov, np.array([False, False]))
    mean2, cov2 = kf.update(mean2, cov2, boxes + [[1, 1, 1, 1], [0, 0, 0, 0]])
    single, _ = kf.update(*kf.predict(mean[1:], cov[1:], np.array([False])), boxes[1:])
    np.testing.assert_allclose(mean2[1], single[0])


def test_one_euro_removes_jitter_of_a_still_face_but_follows_a_moving_one():
    rng = np.random.default_rng(0)
    f = OneEuro()
    scale = np.array([50.0])
    # Still face, 1.5 px jitter.
    x = 100 + rng.normal(0, 1.5, 200)
    state = f.start(x[:1, None])
    out = []
    for v in x:
        y, state = f.step(np.array([[v]]), state, scale)
        out.append(y[0, 0])
    assert np.std(np.diff(out[20:])) < 0.35 * np.std(np.diff(x[20:]))
    # Face moving 10 px/frame (0.2 heights/frame): lag stays under 2 frames of motion.
    ramp = 100 + 10.0 * np.arange(60)
    state = f.start(ramp[:1, None])
    for v in ramp:
        y, state = f.step(np.array([[v]]), state, scale)
    assert ramp[-1] - y[0, 0] < 20


def test_one_euro_restarts_rows_whose_landmarks_were_unknown():
    f = OneEuro()
    state = f.start(np.full((1, 5, 2), np.nan))
    y, state = f.step(np.full((1, 5, 2), 7.0), state, np.array([40.0]))
    np.testing.assert_allclose(y, 7.0)


def test_motion_pad_grows_with_speed_and_uncertainty_and_is_capped():
    box = np.array([[0.0, 0, 40, 50]] * 3)
    pad = motion_pad(box, np.array([[0, 0], [10, 0], [300, 300]]), np.array([[0, 0], [0, 0], [0, 0]]), 1.5, 2.0, 1.5)
    np.testing.assert_allclose(pad, [[0, 0], [15, 0], [60, 75]])
    pad = motion_pad(box[:1], np.zeros((1, 2)), np.array([[3.0, 4.0]]), 1.5, 2.0, 1.5)
    np.testing.assert_allclose(pad, [[6, 8]])


def test_hold_pad_rises_at_once_and_falls_slowly():
    assert hold_pad(np.array([10.0]), np.array([2.0]), 0.9)[0] == 10.0
    assert hold_pad(np.array([0.0]), np.array([10.0]), 0.9)[0] == 9.0


def test_move_landmarks_follows_box():
    lms = np.array([[[10.0, 10], [30, 10], [20, 20], [12, 30], [28, 30]]])
    moved = move_landmarks(lms, np.array([[0.0, 0, 40, 40]]), np.array([[100.0, 50, 180, 130]]))
    np.testing.assert_allclose(moved[0, 0], [120, 70])
    np.testing.assert_allclose(moved[0, 2], [140, 90])
