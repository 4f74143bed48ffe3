"""End to end: the pipeline and written outputs scored against the synthetic clip's ground truth."""

import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from faceanon_video.config import RunConfig
from faceanon_video.errors import InputError
from faceanon_video.eval.annotations import load_annotations
from faceanon_video.eval.evaluate import EvalSettings, evaluate_outputs, evaluate_pipeline
from faceanon_video.testing.synthetic import make_synthetic_clip

FRAMES = 12
DATA = Path(__file__).resolve().parents[1] / "data"
NO_IDENTITY = EvalSettings(identity_models=())


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    video, gt = make_synthetic_clip(tmp_path_factory.mktemp("clip"), seed=0, n_frames=FRAMES)
    return video, gt, load_annotations(gt)


def _config(mode, **kwargs):
    return RunConfig(mode=mode, progress=False, **kwargs)


def test_mode_none_leaks_every_face_and_damages_nothing(clip):
    _, gt, annotations = clip
    report = evaluate_pipeline(annotations, _config("none"), NO_IDENTITY)
    assert report.items == FRAMES
    scored = sum(int((~item.ignore).sum()) for item in annotations.items)
    assert report.faces == scored > 0
    assert report.leak_rate == 1.0
    assert report.background_damaged_fraction == 0.0
    # The detector still ran: mode none only skips painting.
    assert report.detection.recall > 0.7 and report.detection.precision > 0.8


def test_solid_mode_covers_what_it_detects(clip):
    _, _, annotations = clip
    # Without the tracker the painted boxes are the detections, so a face can leak only where the
    # detector missed it (the tracker's motion padding would also paint some background).
    report = evaluate_pipeline(annotations, _config("solid", track=False), NO_IDENTITY)
    misses = report.detection.false_negatives
    assert report.leaked <= misses
    assert report.leak_rate < 0.25
    assert report.background_damaged_fraction < 0.01


def test_outputs_of_another_tool_are_scored(clip, tmp_path):
    video, gt, annotations = clip
    # "Another tool": black out every ground-truth face except face id 1, and write a video.
    out_path = tmp_path / "other.mp4"
    truth = annotations.by_key()
    with av.open(str(video)) as src, av.open(str(out_path), "w") as dst:
        stream = dst.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 272, "yuv420p"
        stream.options = {"crf": "18"}
        for i, frame in enumerate(src.decode(video=0)):
            bgr = frame.to_ndarray(format="bgr24")
            item = truth[i]
            for xyxy, face_id in zip(item.xyxy, item.ids):
                if face_id != "1":
                    x0, y0, x1, y1 = np.round(xyxy).astype(int)
                    bgr[y0:y1, x0:x1] = 0
            dst.mux(stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))
        dst.mux(stream.encode())
    report = evaluate_outputs(annotations, out_path, NO_IDENTITY, anonymizer_name="test")
    face1 = sum(int(((np.array(item.ids) == "1") & ~item.ignore).sum()) for item in annotations.items)
    assert report.leaked == face1 > 0
    assert report.detection is None
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["leaked"] == face1 and as_json["detection"] is None


def test_reidentification_on_a_few_frames(clip):
    _, _, annotations = clip
    settings = EvalSettings(identity_models=("sface",), identity_every=4, max_items=8)
    cache = {}  # shared: each original face is embedded once for both runs
    leaked = evaluate_pipeline(annotations, _config("none"), settings, embedding_cache=cache)
    originals = sum(1 for key in cache if key[0] == "sface")
    hidden = evaluate_pipeline(annotations, _config("solid"), settings, embedding_cache=cache)
    assert originals == leaked.reidentification["sface"]["faces"] == sum(1 for key in cache if key[0] == "sface")
    assert leaked.items == hidden.items == 8
    assert leaked.reidentification["sface"]["faces"] >= 4
    assert leaked.reidentification["sface"]["rate"] == 1.0
    assert hidden.reidentification["sface"]["rate"] < 0.3
    consistency = leaked.track_consistency["sface"]
    # Untouched faces keep their identity along tracks, and different people differ.
    assert consistency["within_same_rate"] > 0.9 and consistency["between_same_rate"] < 0.1
    assert "re-identified (sface)" in leaked.table()


def test_image_annotations_with_the_pipeline():
    annotations = load_annotations(DATA / "images" / "annotated" / "training.xml")
    report = evaluate_pipeline(annotations, _config("blur"), NO_IDENTITY)
    assert report.items == 4 and report.faces == 18
    assert math.isfinite(report.detection.recall)
    # Every face the detector found (IoU >= 0.5) was blurred enough to count as covered.
    assert report.leaked <= report.detection.false_negatives


def test_missing_image_folder_is_an_input_error(tmp_path):
    annotations = load_annotations(DATA / "images" / "annotated" / "training.xml")
    with pytest.raises(InputError, match="cannot read the annotated image"):
        evaluate_pipeline(annotations, _config("blur"), NO_IDENTITY, media=tmp_path)
    cv2.imwrite(str(tmp_path / "2007_007763.jpg"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(InputError, match="missing or unreadable"):
        evaluate_outputs(annotations, tmp_path / "nowhere", NO_IDENTITY)


def test_detection_is_scored_at_the_detector_threshold_not_the_trackers_low_one():
    # With tracking, the pipeline's detector also reports boxes down to half its threshold (they only
    # continue tracks); recall and precision must judge the boxes at the threshold itself.
    from faceanon_video.detect import build_detector
    from faceanon_video.eval.metrics import match_boxes

    annotations = load_annotations(DATA / "images" / "annotated" / "training.xml")
    report = evaluate_pipeline(annotations, _config("none"), NO_IDENTITY)
    detector = build_detector("yunet")  # its default threshold, 0.5
    expected = None
    for item in annotations.items:
        found = detector.detect(cv2.imread(str(item.image_path)))
        counts, _ = match_boxes(item.xyxy, found.xyxy, iou_threshold=0.5, gt_ignore=item.ignore)
        expected = counts if expected is None else expected + counts
    got = report.detection
    assert (got.true_positives, got.false_positives, got.false_negatives) == (expected.true_positives, expected.false_positives, expected.false_negatives)
