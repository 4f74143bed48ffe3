"""The evaluation's metrics on constructed cases whose answers are known."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceanon_video.anonymize.filters import Blur, Mosaic
from faceanon_video.eval.annotations import read_imglab_xml
from faceanon_video.eval.metrics import (
    CoverageSettings,
    background_damage,
    box_iou,
    face_altered_fraction,
    match_boxes,
)
from faceanon_video.types import Detections, Frame

DATA = Path(__file__).resolve().parents[1] / "data"
COVERED = CoverageSettings().covered_fraction


@pytest.fixture(scope="module")
def faces():
    """(image, xyxy) for the 4 real photos with 18 hand-annotated faces."""
    return [(cv2.imread(str(item.image_path)), item.xyxy) for item in read_imglab_xml(DATA / "images" / "annotated" / "training.xml")]


def _paint(image, xyxy, part="all"):
    out = image.copy()
    for x0, y0, x1, y1 in np.round(xyxy).astype(int):
        if part == "left":
            x1 = (x0 + x1) // 2
        elif part == "bottom":
            y0 = (y0 + y1) // 2
        out[y0:y1, x0:x1] = 0
    return out


def _filtered(anonymizer, image, xyxy):
    return anonymizer.apply(Frame(bgr=image.copy(), index=0), Detections(xyxy=xyxy, score=np.ones(len(xyxy)))).bgr


def _leak_rate(faces, make_output):
    fractions = np.concatenate([face_altered_fraction(img, make_output(img, xyxy), xyxy) for img, xyxy in faces])
    assert len(fractions) == 18 and not np.isnan(fractions).any()
    return float(np.mean(fractions < COVERED)), fractions


def test_untouched_copy_is_100_percent_leaked(faces):
    rate, fractions = _leak_rate(faces, lambda img, xyxy: img.copy())
    assert rate == 1.0
    assert fractions.max() == 0.0


def test_reencoded_copy_is_still_leaked(faces):
    def jpeg(img, xyxy):
        return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_COLOR)

    rate, _ = _leak_rate(faces, jpeg)
    assert rate == 1.0


def test_blacked_out_copy_is_0_percent_leaked(faces):
    rate, fractions = _leak_rate(faces, _paint)
    assert rate == 0.0
    assert fractions.min() == 1.0


@pytest.mark.parametrize("part", ["left", "bottom"])
def test_half_covered_face_counts_as_leaked(faces, part):
    rate, fractions = _leak_rate(faces, lambda img, xyxy: _paint(img, xyxy, part))
    assert rate == 1.0
    # About half the face was changed: the metric saw the change, and still called it a leak.
    assert 0.3 < fractions.mean() < 0.75


@pytest.mark.parametrize("anonymizer", [Blur(), Mosaic()], ids=["blur", "mosaic"])
def test_default_filters_cover_every_face(faces, anonymizer):
    rate, _ = _leak_rate(faces, lambda img, xyxy: _filtered(anonymizer, img, xyxy))
    assert rate == 0.0


def test_light_blur_is_leaked(faces):
    # sigma 1 px on these 37-90 px faces (no 6 px floor): softened, still recognisable.
    rate, _ = _leak_rate(faces, lambda img, xyxy: _filtered(Blur(strength=0.02, min_sigma_px=0.0), img, xyxy))
    assert rate == 1.0


def test_only_painting_the_wrong_face_leaks_that_face(faces):
    image, xyxy = faces[0]
    fractions = face_altered_fraction(image, _paint(image, xyxy[1:]), xyxy)
    assert fractions[0] < COVERED
    assert (fractions[1:] >= COVERED).all()


def test_face_outside_the_frame_is_nan():
    image = np.zeros((50, 50, 3), np.uint8)
    fractions = face_altered_fraction(image, image, np.array([[60, 60, 80, 80], [10, 10, 30, 30]]))
    assert np.isnan(fractions[0]) and fractions[1] == 0.0


def test_background_damage():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (100, 200, 3), dtype=np.uint8), (5, 5), 0)
    face = np.array([[80, 30, 120, 70]], np.float32)
    painted = _paint(image, face)
    assert background_damage(image, image, face).damaged_fraction == 0.0
    # Painting only the face is not background damage, even with the mask grown by 1.3.
    grown = _paint(image, np.array([[74, 24, 126, 76]]))
    assert background_damage(image, grown, face).damaged_fraction == 0.0
    # A false positive far from the face: its area, as a fraction of the far-from-face area.
    stray = _paint(painted, np.array([[0, 0, 20, 20]]))
    damage = background_damage(image, stray, face)
    assert damage.pixels == 100 * 200 - 80 * 80
    assert damage.damaged_fraction == pytest.approx(400 / damage.pixels, rel=0.15)
    # A fail-closed frame (everything black) is all damage.
    assert background_damage(image, np.zeros_like(image), face).damaged_fraction > 0.95


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 20, 20]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.25]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)


def test_match_boxes_counts():
    gt = np.array([[0, 0, 10, 10], [100, 100, 120, 120], [200, 0, 210, 10]])
    det = np.array([[1, 1, 11, 11], [0, 0, 10, 10], [300, 300, 310, 310], [104, 104, 124, 124]])
    counts, matched = match_boxes(gt, det)
    # gt0 takes the exact box, its shifted twin is a duplicate (FP); gt1 overlaps det3 at IoU 0.47 < 0.5.
    assert matched.tolist() == [1, -1, -1]
    assert (counts.true_positives, counts.false_positives, counts.false_negatives) == (1, 3, 2)
    assert counts.recall == pytest.approx(1 / 3) and counts.precision == pytest.approx(1 / 4)


def test_match_boxes_is_optimal_not_greedy():
    # Greedy by IoU would give det0 to gt0 (0.82) and leave det1 (0.67 with gt0, 0.33 with gt1)
    # nothing; the optimal matching pairs det0-gt1 and det1-gt0, both at 0.67.
    gt = np.array([[0, 0, 10, 10], [3, 0, 13, 10]])
    det = np.array([[1, 0, 11, 10], [-2, 0, 8, 10]])
    counts, matched = match_boxes(gt, det)
    assert matched.tolist() == [1, 0]
    assert counts.true_positives == 2


def test_match_boxes_ignored_faces_are_neither_found_nor_missed():
    gt = np.array([[0, 0, 10, 10], [50, 50, 60, 60]])
    counts, _ = match_boxes(gt, np.array([[50, 50, 60, 60]]), gt_ignore=np.array([False, True]))
    assert (counts.true_positives, counts.false_positives, counts.false_negatives) == (0, 0, 1)
    total = counts + match_boxes(gt, gt)[0]
    assert (total.true_positives, total.false_negatives) == (2, 1)
    empty, _ = match_boxes(np.zeros((0, 4)), np.zeros((0, 4)))
    assert np.isnan(empty.recall) and np.isnan(empty.precision)


def test_bright_box_corner_does_not_hide_a_dim_face(faces):
    # A face in shadow (grey levels 0-40) whose box corners hold something bright (a white collar,
    # the head of someone in front) outside the scored oval: the contrast stretch must come from the
    # face, so a blurred face counts as covered and an untouched one as leaked. With the stretch taken
    # from the whole box, the white corners left the dim features uninformative and the blurred face
    # scored ~0.7 altered (a 36 px face on the recall clip).
    image, xyxy = faces[0]
    dim = (image.astype(np.float32) * (40 / 255)).astype(np.uint8)
    for x0, y0, x1, y1 in np.round(xyxy).astype(int):
        yy, xx = np.mgrid[y0:y1, x0:x1]
        outside = ((xx + 0.5 - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2 + ((yy + 0.5 - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2 > 1.05
        dim[y0:y1, x0:x1][outside & (yy > (y0 + y1) / 2)] = 255
    blurred = face_altered_fraction(dim, _filtered(Blur(), dim, xyxy), xyxy)
    assert (blurred >= COVERED).all(), blurred
    assert (face_altered_fraction(dim, dim.copy(), xyxy) == 0).all()
