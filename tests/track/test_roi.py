"""Re-detection around tracks: crops, the mosaic the detector sees, and mapping boxes back."""

import numpy as np
import pytest

from faceanon_video.detect.base import as_frame
from faceanon_video.track.roi import RoiRedetector, pack_tiles
from faceanon_video.types import Detections


class CanvasFaces:
    """A fake detector that reports a face wherever the canvas has a pure-red pixel blob."""

    def __init__(self):
        self.calls = []

    def detect(self, image):
        bgr = as_frame(image).read_bgr()
        self.calls.append(bgr.shape)
        red = (bgr[..., 2] == 255) & (bgr[..., 1] == 0) & (bgr[..., 0] == 0)
        import cv2

        n, labels, stats, _ = cv2.connectedComponentsWithStats(red.astype(np.uint8))
        boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:]]
        return Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), score=np.full(len(boxes), 0.9))


def frame_with_faces(boxes):
    bgr = np.full((400, 600, 3), 60, np.uint8)
    for x0, y0, x1, y1 in boxes:
        bgr[y0:y1, x0:x1] = (0, 0, 255)
    return bgr


def test_pack_tiles_places_every_tile_without_overlap():
    tiles = [np.full((h, w, 3), k, np.uint8) for k, (h, w) in enumerate([(50, 80), (120, 40), (30, 30), (90, 90)])]
    canvas, offsets = pack_tiles(tiles, gap_px=8)
    rects = [(x, y, x + t.shape[1], y + t.shape[0]) for (x, y), t in zip(offsets.astype(int), tiles)]
    for k, (x0, y0, x1, y1) in enumerate(rects):
        assert (canvas[y0:y1, x0:x1] == k).all()
        for j, (a0, b0, a1, b1) in enumerate(rects[k + 1 :], k + 1):
            assert x1 + 8 <= a0 or a1 + 8 <= x0 or y1 + 8 <= b0 or b1 + 8 <= y0


def test_faces_are_found_in_one_call_and_mapped_back_to_frame_coordinates():
    faces = [(50, 60, 90, 110), (300, 200, 324, 230), (500, 40, 560, 120)]
    detector = CanvasFaces()
    found = RoiRedetector(detector).detect(frame_with_faces(faces), np.array(faces, np.float32) + 3)
    assert len(detector.calls) == 1  # one mosaic, not one call per crop
    assert detector.calls[0][0] * detector.calls[0][1] < 0.6 * 400 * 600
    order = np.argsort(found.xyxy[:, 0])
    np.testing.assert_allclose(found.xyxy[order], np.array(faces, np.float32), atol=1.5)


def test_small_faces_are_upscaled_for_the_detector():
    detector = CanvasFaces()
    roi = RoiRedetector(detector, target_face_px=48)
    regions, scales = roi.regions(np.array([[100, 100, 116, 116]], np.float32), (400, 600))
    assert scales[0] == pytest.approx(3.0)  # 16 px face -> capped at max_upscale
    found = roi.detect(frame_with_faces([(100, 100, 116, 116)]), np.array([[100, 100, 116, 116]], np.float32))
    np.testing.assert_allclose(found.xyxy, [[100, 100, 116, 116]], atol=1)


def test_half_face_cut_by_a_crop_edge_is_not_reported():
    # The second face is only partly inside the first face's crop; its own crop sees it whole once.
    faces = [(100, 100, 140, 150), (172, 100, 212, 150)]
    found = RoiRedetector(CanvasFaces(), pad=0.5).detect(frame_with_faces(faces), np.array(faces, np.float32))
    assert len(found) == 2
    np.testing.assert_allclose(np.sort(found.xyxy[:, 0]), [100, 172], atol=1.5)


def test_no_boxes_no_call():
    detector = CanvasFaces()
    assert len(RoiRedetector(detector).detect(frame_with_faces([]), np.zeros((0, 4), np.float32))) == 0
    assert detector.calls == []


def test_crops_covering_most_of_the_frame_fall_back_to_one_full_frame_pass():
    detector = CanvasFaces()
    RoiRedetector(detector, target_face_px=400).detect(frame_with_faces([(200, 100, 400, 300)]), np.array([[200, 100, 400, 300]], np.float32))
    assert detector.calls == [(400, 600, 3)]
