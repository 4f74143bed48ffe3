import json

import numpy as np
import pytest

from faceanon_video.errors import InputError
from faceanon_video.track.tracks_io import TrackWriter, read_tracks, tracks_path_for
from faceanon_video.types import Detections


def test_round_trip_keeps_ids_boxes_landmarks_scores_and_flags(tmp_path):
    lms = np.arange(10, dtype=np.float32).reshape(1, 5, 2) + 100
    faces = Detections(
        xyxy=[[10.123, 20, 50, 70], [0, 0, 5, 5]],
        score=[0.91, 0.4],
        landmarks=np.concatenate([lms, np.full((1, 5, 2), np.nan, np.float32)]),
        track_id=[3, 7],
        predicted=[False, True],
        seed=[1, 2],
    )
    path = tmp_path / "t.jsonl"
    with TrackWriter(path) as writer:
        writer.write(0, 0.0, faces)
        writer.write(1, 0.04, Detections.empty())
        writer.write(2, None, faces[np.array([True, False])])
    records = read_tracks(path)
    assert [r.frame_index for r in records] == [0, 1, 2]
    assert [r.pts_s for r in records] == [0.0, 0.04, None]
    first = records[0].faces
    assert first.track_id.tolist() == [3, 7]
    assert first.predicted.tolist() == [False, True]
    np.testing.assert_allclose(first.xyxy, [[10.12, 20, 50, 70], [0, 0, 5, 5]], atol=1e-4)
    np.testing.assert_allclose(first.landmarks[0], lms[0])
    assert np.isnan(first.landmarks[1]).all()
    assert len(records[1].faces) == 0
    line = json.loads(path.read_text().splitlines()[0])
    assert set(line["tracks"][0]) == {"id", "xyxy", "landmarks", "score", "detected"}  # no seeds in a shareable file


def test_unwritable_path_is_input_error(tmp_path):
    with pytest.raises(InputError, match="output folder does not exist"):
        TrackWriter(tmp_path / "no" / "such" / "dir" / "t.jsonl")


def test_garbage_line_is_input_error(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"frame": 0, "tracks": []}\nnot json\n')
    with pytest.raises(InputError, match=":2:"):
        read_tracks(path)


def test_tracks_path_for(tmp_path):
    assert tracks_path_for(tmp_path, "/videos/a.mp4") == tmp_path / "a.tracks.jsonl"
    assert tracks_path_for(tmp_path / "{stem}-t.jsonl", "b.mov") == tmp_path / "b-t.jsonl"
    assert tracks_path_for(tmp_path / "x.jsonl", "b.mov") == tmp_path / "x.jsonl"
