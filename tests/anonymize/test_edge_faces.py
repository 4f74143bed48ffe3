"""Faces cut by the frame edge (entering or leaving) are covered with margin, not just barely."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceanon_video.anonymize.filters import Blur
from faceanon_video.eval.annotations import read_imglab_xml
from faceanon_video.eval.metrics import face_altered_fraction
from faceanon_video.types import Detections, Frame

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("visible", [0.5, 0.6])
def test_a_face_half_out_of_the_left_edge_is_blurred_with_margin(visible):
    # The 18 annotated real faces, each moved so only `visible` of its width is in the frame, blurred
    # with the box the detector would give (clipped at the edge). With the ellipse centred on that
    # clipped box, its rim sat on the face's visible side: one face scored 0.898 altered (leaked).
    fractions = []
    for item in read_imglab_xml(DATA / "images" / "annotated" / "training.xml"):
        image = cv2.imread(str(item.image_path))
        for x0, y0, x1, y1 in item.xyxy:
            cut = int(x0 + (x1 - x0) * (1 - visible))
            frame = np.ascontiguousarray(image[:, cut:])
            box = np.array([[0, y0, x1 - cut, y1]], np.float32)
            out = Blur().apply(Frame(bgr=frame.copy(), index=0), Detections(xyxy=box, score=np.ones(1))).bgr
            fractions.append(face_altered_fraction(frame, out, box)[0])
            far = frame.shape[1] // 2 + int(x1 - cut)  # well right of the face: untouched
            assert np.array_equal(out[:, far:], frame[:, far:])
    assert len(fractions) == 18
    assert min(fractions) >= 0.95, sorted(fractions)[:3]
