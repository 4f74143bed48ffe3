import json
from pathlib import Path

import numpy as np
import pytest

from faceanon_video.errors import InputError
from faceanon_video.eval.annotations import load_annotations, read_gt_json, read_imglab_xml, read_voc_xml

DATA = Path(__file__).resolve().parents[1] / "data"
IMGLAB = DATA / "images" / "annotated" / "training.xml"


def test_imglab_reads_every_box_with_exclusive_edges():
    items = read_imglab_xml(IMGLAB)
    assert [item.key for item in items] == ["2007_007763.jpg", "2008_002079.jpg", "2008_001009.jpg", "2008_001322.jpg"]
    assert sum(len(item) for item in items) == 18
    # <box top='90' left='194' width='37' height='37'/> covers columns 194..230 -> x1 = 231
    np.testing.assert_array_equal(items[0].xyxy[0], [194, 90, 231, 127])
    assert items[0].image_path == IMGLAB.parent / "2007_007763.jpg"
    assert items[0].image_path.exists()
    assert not items[0].ignore.any()


def test_imglab_ignore_and_label(tmp_path):
    xml = tmp_path / "faces.xml"
    xml.write_text(
        "<dataset><images><image file='a.jpg'>"
        "<box top='10' left='20' width='30' height='40'><label>alice</label></box>"
        "<box top='0' left='0' width='5' height='5' ignore='1'/>"
        "</image></images></dataset>"
    )
    ann = load_annotations(xml)
    assert ann.format == "imglab" and not ann.is_video
    (item,) = ann.items
    np.testing.assert_array_equal(item.xyxy, [[20, 10, 50, 50], [0, 0, 5, 5]])
    assert item.ids == ["alice", None]
    assert item.ignore.tolist() == [False, True]


VOC = """<annotation>
  <folder>VOC</folder><filename>{name}</filename>
  <size><width>100</width><height>80</height><depth>3</depth></size>
  <object><name>face</name><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>11</ymin><xmax>10</xmax><ymax>30</ymax></bndbox></object>
  <object><name>person</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>90</xmax><ymax>79</ymax></bndbox></object>
  <object><name>Face</name><difficult>1</difficult>
    <bndbox><xmin>50.5</xmin><ymin>20</ymin><xmax>60</xmax><ymax>35</ymax></bndbox></object>
</annotation>"""


def test_voc_converts_one_based_inclusive_and_filters_labels(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "JPEGImages" / "x.jpg").write_bytes(b"")
    xml = tmp_path / "Annotations" / "x.xml"
    xml.write_text(VOC.format(name="x.jpg"))
    (item,) = read_voc_xml(xml)
    # xmin=1..xmax=10 (1-based, inclusive) is columns 0..9 -> [0, 10)
    np.testing.assert_allclose(item.xyxy, [[0, 10, 10, 30], [49.5, 19, 60, 35]])
    assert item.ignore.tolist() == [False, True]
    assert item.image_path == tmp_path / "JPEGImages" / "x.jpg"
    (everything,) = read_voc_xml(xml, labels=None)
    assert len(everything) == 3


def test_voc_folder_is_read_in_name_order(tmp_path):
    for name in ("b", "a"):
        (tmp_path / f"{name}.xml").write_text(VOC.format(name=f"{name}.jpg"))
    ann = load_annotations(tmp_path)
    assert ann.format == "voc"
    assert [item.key for item in ann.items] == ["a.jpg", "b.jpg"]
    assert ann.face_count == 4


def test_gt_json_round_trip(tmp_path):
    doc = {
        "video": "clip.mp4",
        "fps": 25,
        "frames": [
            {"index": 3, "faces": [{"id": 7, "xyxy": [1, 2, 11, 22], "visible": 0.3, "ignore": True}]},
            {"index": 0, "faces": [{"id": "a", "xyxy": [0, 0, 5, 5]}, {"id": 7, "xyxy": [10, 10, 20, 30]}]},
            {"index": 1, "faces": []},
        ],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(doc))
    ann = read_gt_json(path)
    assert ann.is_video and ann.video_path == tmp_path / "clip.mp4"
    assert [item.key for item in ann.items] == [0, 1, 3]
    assert ann.items[0].ids == ["a", "7"]
    assert ann.by_key()[3].ignore.tolist() == [True]
    assert ann.face_count == 3


@pytest.mark.parametrize(
    "name, text",
    [
        ("bad.xml", "<something/>"),
        ("broken.xml", "<dataset><images>"),
        ("bad.json", '{"no_frames": []}'),
        ("inverted.json", '{"frames": [{"index": 0, "faces": [{"id": 1, "xyxy": [10, 10, 5, 20]}]}]}'),
    ],
)
def test_bad_files_raise_input_error(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError):
        load_annotations(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_annotations(tmp_path / "nope.xml")
