"""Detectors on real photos with hand-annotated faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceanon_video.detect import build_detector
from faceanon_video.errors import ConfigError, ModelError
from faceanon_video.geometry import box_iou
from tests.conftest import DATA, annotated_boxes


def iou(a, b) -> float:
    return float(box_iou(a, b)[0, 0])


@pytest.mark.parametrize("name, min_recall", [("yunet", 0.85), ("centerface", 0.85)])
def test_recall_on_annotated_faces(name, min_recall):
    detector = build_detector(name)
    found = total = 0
    for file, boxes in annotated_boxes().items():
        dets = detector.detect(cv2.imread(str(DATA / "images" / "annotated" / file)))
        assert dets.landmarks.shape == (len(dets), 5, 2) and not np.isnan(dets.landmarks).any()
        for box in boxes:
            total += 1
            found += any(iou(box, d) > 0.3 for d in dets.xyxy)
    assert found / total >= min_recall, f"{name}: {found}/{total}"


def test_landmarks_are_inside_their_boxes():
    dets = build_detector(tiles=False).detect(  # the network alone; tiles add a 22 px false positive here
        cv2.imread(str(DATA / "images" / "two_people.jpg")))
    assert len(dets) == 2
    for box, points in zip(dets.xyxy, dets.landmarks):
        assert ((points >= box[:2]) & (points <= box[2:])).all()
        assert points[0, 0] < points[1, 0]  # subject's right eye is on the image's left


def test_one_detector_gives_the_same_faces_from_several_threads_at_once():
    # Detectors keep per-thread input buffers: a shared one would mix two frames' pixels.
    from concurrent.futures import ThreadPoolExecutor

    from faceanon_video.types import Frame

    big = cv2.resize(cv2.imread(str(DATA / "images" / "two_people.jpg")), None, fx=2.5, fy=2.5)  # shrunk before the network
    images = [big, cv2.flip(big, 1), np.full_like(big, 127)]
    i420 = [Frame(bgr=image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2].copy()).read_i420() for image in images]
    detector = build_detector()
    alone = [detector.detect(Frame(i420=frame)).xyxy for frame in i420]
    assert [len(a) for a in alone] == [2, 2, 0]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda k: detector.detect(Frame(i420=i420[k % 3])).xyxy, range(30)))
    assert all(np.allclose(boxes, alone[k % 3]) for k, boxes in enumerate(together))


def test_no_faces_gives_empty_detections():
    dets = build_detector().detect(np.full((240, 320, 3), 127, np.uint8))
    assert len(dets) == 0 and dets.xyxy.shape == (0, 4)


def test_unknown_detector_and_corrupted_model(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="yunet"):
        build_detector("nope")
    import faceanon_video.weights as weights

    from faceanon_video.detect.yunet import MODEL

    bad = tmp_path / MODEL
    bad.write_bytes(b"corrupted")
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    weights.model_path.cache_clear()
    try:
        with pytest.raises(ModelError, match="corrupted"):
            build_detector("yunet")
    finally:
        weights.model_path.cache_clear()


def test_face_mesh_fits_the_face():
    pytest.importorskip("ai_edge_litert")
    from faceanon_video.detect.landmarker import MESH_KEY, FaceMesher, mesh_mask

    img = cv2.imread(str(DATA / "images" / "two_people.jpg"))
    dets = FaceMesher().add_meshes(img, build_detector(tiles=False).detect(img))
    for box, points, mesh in zip(dets.xyxy, dets.landmarks, dets.data[MESH_KEY]):
        mask = mesh_mask(mesh, img.shape)
        assert mask is not None
        # Eyes, nose and mouth all lie inside the mesh's face oval, and the oval hugs the detector box.
        assert all(mask[int(y), int(x)] for x, y in points)
        ys, xs = np.nonzero(mask)
        assert iou(np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32), box) > 0.5


@pytest.mark.parametrize("image", ["two_people.jpg", "annotated/2008_002079.jpg", "city.jpg"])
def test_yunet_on_onnxruntime_matches_opencvs_face_detector_on_the_original_weights(image):
    from faceanon_video.detect.yunet import YuNetDetector
    from faceanon_video.weights import model_path

    bgr = cv2.imread(str(DATA / "images" / image))
    height, width = bgr.shape[:2]
    reference = cv2.FaceDetectorYN.create(str(model_path("face_detection_yunet_2023mar_int8bq.onnx")), "", (width, height), 0.3, 0.3, 5000)
    _, expected = reference.detect(bgr)
    ours = YuNetDetector(threshold=0.3, min_face_px=0).detect(bgr)  # full resolution, like the reference
    assert expected is not None and len(ours) == len(expected) >= 2
    got = np.c_[ours.xyxy[:, :2], ours.xyxy[:, 2:] - ours.xyxy[:, :2], ours.landmarks.reshape(-1, 10), ours.score]
    got, expected = got[np.argsort(-got[:, -1])], expected[np.argsort(-expected[:, -1])]
    np.testing.assert_allclose(got, expected, atol=0.01)


def test_centerface_on_onnxruntime_matches_opencvs_dnn_on_the_original_file():
    from faceanon_video.detect.centerface import CenterFaceDetector
    from faceanon_video.weights import model_path

    detector = CenterFaceDetector(min_face_px=0)
    bgr = cv2.imread(str(DATA / "images" / "two_people.jpg"))
    blob = cv2.dnn.blobFromImage(bgr, 1.0, (1152, 672), (0, 0, 0), swapRB=True, crop=False)
    reference = cv2.dnn.readNetFromONNX(str(model_path("centerface.onnx")))
    reference.setInput(blob)
    expected = reference.forward(reference.getUnconnectedOutLayersNames())
    got = detector._session.run(detector._output_names, {detector._input_name: blob})
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-4)
