"""Alignment, the face mask, colour matching and paste-back, on literal and real faces."""

from __future__ import annotations

import cv2
import numpy as np

from faceanon_video.anonymize.diffusion.align import (
    TEMPLATE_5PT,
    align_faces,
    face_mask,
    landmarks_or_box,
    match_colour,
    paste_faces,
    similarity_from_landmarks,
)
from faceanon_video.types import Detections


def _rotated_template(angle_deg: float, scale: float, offset_xy) -> np.ndarray:
    theta = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return (TEMPLATE_5PT * 100) @ rotation.T * scale + np.asarray(offset_xy)


def test_similarity_maps_landmarks_onto_template():
    landmarks = _rotated_template(25, 0.7, (40, 30))
    matrix = similarity_from_landmarks(landmarks, 512)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, TEMPLATE_5PT * 512, atol=0.05)
    # A similarity: equal singular values (no shear, no anisotropic scale).
    singular = np.linalg.svd(matrix[:, :2], compute_uv=False)
    assert abs(singular[0] - singular[1]) < 1e-6


def test_box_fallback_for_unknown_landmarks():
    landmarks = np.full((2, 5, 2), np.nan, np.float32)
    landmarks[0] = _rotated_template(0, 1, (0, 0))
    faces = Detections(xyxy=[[0, 0, 100, 100], [200, 100, 300, 220]], score=[1, 1], landmarks=landmarks)
    filled = landmarks_or_box(faces)
    np.testing.assert_array_equal(filled[0], landmarks[0])
    assert np.all((filled[1, :, 0] > 200) & (filled[1, :, 0] < 300) & (filled[1, :, 1] > 100) & (filled[1, :, 1] < 220))
    assert filled[1, 0, 0] < filled[1, 1, 0] and filled[1, 2, 1] < filled[1, 3, 1]  # right eye left, mouth below nose


def test_face_mask_is_face_shaped_and_soft():
    mask = face_mask(256, feather=0.06)
    assert mask.shape == (256, 256) and mask.min() == 0 and mask.max() == 1
    assert mask[0, 0] == mask[0, -1] == mask[-1, 0] == mask[-1, -1] == 0  # no square
    eyes_y, mouth_y = (TEMPLATE_5PT[[0, 3], 1] * 256).astype(int)
    assert mask[eyes_y, 128] == 1 and mask[mouth_y, 128] == 1
    # Narrower at the chin than at the cheeks: a face, not an ellipse.
    width = (mask > 0.5).sum(axis=1)
    assert width[int(0.85 * 256)] < 0.8 * width[int(0.55 * 256)]
    # The edge ramps over ~0.06 of the side, not in one step.
    assert np.abs(np.diff(mask, axis=1)).max() < 0.1


def test_colour_match_moves_statistics():
    rng = np.random.default_rng(0)
    original = np.clip(rng.normal((150, 110, 90), 20, (64, 64, 3)), 0, 255).astype(np.uint8)
    generated = np.clip(rng.normal((60, 120, 200), 5, (64, 64, 3)), 0, 255).astype(np.uint8)
    mask = np.ones((64, 64), np.float32)
    matched = match_colour(generated, original, mask)
    assert np.abs(matched.mean((0, 1)) - original.mean((0, 1))).max() < 4
    assert np.array_equal(match_colour(generated, original, mask, strength=0), generated)


def test_paste_back_changes_only_the_face_region(carphone):
    frames, faces = carphone
    frame, face = frames[0], faces[0]
    aligned = align_faces(frame, face, 64)
    assert aligned.pixels.shape == (1, 64, 64, 3)
    mask = face_mask(64)
    generated = np.zeros_like(aligned.pixels)
    generated[...] = (0, 255, 0)  # the whole crop square is green; only the face shape may show
    out = paste_faces(frame, generated, aligned.frame_to_crop, mask)

    changed = np.abs(out.astype(int) - frame).max(axis=2) > 0
    warped_mask = cv2.warpAffine(mask, aligned.frame_to_crop[0], frame.shape[1::-1], flags=cv2.WARP_INVERSE_MAP)
    assert changed.sum() > 0.5 * (warped_mask > 0.5).sum()  # the face got replaced...
    # ...and nothing outside the face shape did (1 px margin: the ROI warp rounds sub-pixel positions
    # differently from this full-frame warp).
    outside = cv2.dilate(warped_mask, np.ones((3, 3), np.uint8)) == 0
    assert outside.sum() > 0.5 * outside.size and not changed[outside].any()
    # The crop square's corners map into the frame unchanged: no square seam.
    corners = np.array([[1, 1], [62, 1], [1, 62], [62, 62]], np.float64)
    crop_to_frame = cv2.invertAffineTransform(aligned.frame_to_crop[0])
    for x, y in np.rint(corners @ crop_to_frame[:, :2].T + crop_to_frame[:, 2]).astype(int):
        if 0 <= x < frame.shape[1] and 0 <= y < frame.shape[0]:
            assert not changed[y, x]
    # The face box centre is fully replaced.
    cx, cy = ((face.xyxy[0, :2] + face.xyxy[0, 2:]) / 2).astype(int)
    assert tuple(out[cy, cx]) == (0, 255, 0)


def test_faces_outside_the_frame_are_skipped():
    frame = np.full((50, 50, 3), 7, np.uint8)
    far = Detections(xyxy=[[500, 500, 560, 560]], score=[1])
    aligned = align_faces(frame, far, 32)
    out = paste_faces(frame, np.zeros_like(aligned.pixels), aligned.frame_to_crop, face_mask(32))
    assert np.array_equal(out, frame)


def test_mesh_mask_follows_the_real_face_and_is_used_for_paste_back():
    import cv2 as _cv2
    import pytest as _pytest

    _pytest.importorskip("ai_edge_litert")
    from faceanon_video.anonymize.diffusion.align import align_faces, mesh_face_mask
    from faceanon_video.detect import build_detector
    from faceanon_video.detect.landmarker import MESH_KEY, FaceMesher
    from tests.conftest import DATA

    image = _cv2.imread(str(DATA / "images" / "two_people.jpg"))
    # Without tiles: the enlarged tile adds a 22 px false positive on this photo, which has no mesh.
    faces = FaceMesher().add_meshes(image, build_detector(tiles=False).detect(image))
    aligned = align_faces(image, faces, 128)
    for i in range(len(faces)):
        mask = mesh_face_mask(faces.data[MESH_KEY][i], aligned.frame_to_crop[i], 128)
        assert mask is not None and mask.max() == 1.0
        # The aligned eyes and mouth (template positions) are well inside the mesh oval, the crop corners outside.
        points = faces.landmarks[i] @ aligned.frame_to_crop[i][:, :2].T + aligned.frame_to_crop[i][:, 2]
        assert all(mask[int(y), int(x)] > 0.5 for x, y in points)
        assert mask[0, 0] == mask[0, -1] == mask[-1, 0] == mask[-1, -1] == 0
    assert mesh_face_mask(np.full((468, 2), np.nan, np.float32), aligned.frame_to_crop[0], 128) is None
