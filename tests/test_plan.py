"""The plan file's schema, validation and edits, on literal data (no video, no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faceanon_video.errors import InputError
from faceanon_video.people.seeds import PersonSeeder
from faceanon_video.plan import FORMAT, Plan, candidate_sources

SHA = "ab" * 32


def literal_plan() -> dict:
    """Two people: person 1 in tracks 1 (frames 0-2) and 3 (frames 5-6), person 2 in track 2."""

    def rows(frames, x0, detected=True):
        return [
            {"frame": f, "xyxy": [x0 + f, 10.5, x0 + f + 20, 40.25], "landmarks": [[x0 + 5, 20], [x0 + 15, 20], [x0 + 10, 25], [x0 + 6, 32], [x0 + 14, 32]],
             "score": 0.9, "detected": detected}
            for f in frames
        ]

    return {
        "format": FORMAT,
        "version": 1,
        "input": {"name": "clip.mp4", "sha256": SHA, "frame_count": 30, "width": 64, "height": 48, "fps": 25.0, "time_base": "1/12800"},
        "settings": {"detector": "yunet", "thresh": 0.5},
        "persons": [
            {"person_id": 1, "decision": "anonymize", "track_ids": [1, 3], "gallery_id": None},
            {"person_id": 2, "decision": "anonymize", "track_ids": [2]},
        ],
        "tracks": [
            {"track_id": 1, "person_id": 1, "frames": rows([0, 1, 2], 0)},
            {"track_id": 2, "person_id": 2, "frames": rows([1, 2], 30, detected=False)},
            {"track_id": 3, "person_id": 1, "frames": rows([5, 6], 0)},
        ],
        "regions": [],
        "blackouts": [{"start_frame": 8, "end_frame": 9}],
        "obscured": [{"start_frame": 12, "end_frame": 12, "reason": "RuntimeError: boom"}],
        "candidates": [{"frame": 4, "xyxy": [1, 2, 11, 12], "score": 0.3}],
    }


def test_round_trip_is_exact_and_faces_on_reads_the_rows(tmp_path):
    plan = Plan.from_dict(literal_plan())
    plan.tracks[1].xyxy[0] = [0.1, 1 / 3, 20.7, 40.123456]  # float32 values that print long in float64
    path = tmp_path / "p.json"
    plan.save(path)
    again = Plan.load(path)
    assert again.to_dict() == plan.to_dict()
    np.testing.assert_array_equal(again.tracks[1].xyxy, plan.tracks[1].xyxy)  # bit-exact float32
    faces = again.faces_on(1)
    assert faces.track_id.tolist() == [1, 2]
    assert faces.predicted.tolist() == [False, True]
    assert faces.data["person_id"].tolist() == [1, 2]
    assert faces.has_landmarks.tolist() == [True, True]
    assert len(again.faces_on(3)) == 0 and len(again.faces_on(29)) == 0
    assert again.candidates.data["frame"].tolist() == [4] and again.candidates.score.tolist() == pytest.approx([0.3])


def test_a_plan_without_candidate_sources_loads_them_as_low_score(tmp_path):
    """Plans written before ``candidates[].source`` existed (the literal plan has none) still load."""
    path = tmp_path / "old.json"
    path.write_text(json.dumps(literal_plan()))
    plan = Plan.load(path)
    assert plan.version == 1 and candidate_sources(plan.candidates) == ["low_score"]
    assert plan.to_dict()["candidates"] == [{"frame": 4, "xyxy": [1.0, 2.0, 11.0, 12.0], "score": 0.3, "source": "low_score"}]


def test_candidate_sources_round_trip(tmp_path):
    data = literal_plan()
    data["candidates"].append({"frame": 16, "xyxy": [20, 5, 44, 30], "score": 0.87, "source": "second_detector"})
    path = tmp_path / "p.json"
    Plan.from_dict(data).save(path)
    again = Plan.load(path)
    assert again.candidates.data["frame"].tolist() == [4, 16]
    assert candidate_sources(again.candidates) == ["low_score", "second_detector"]
    assert [c["source"] for c in json.loads(path.read_text())["candidates"]] == ["low_score", "second_detector"]
    assert candidate_sources(Plan.from_dict({**data, "candidates": []}).candidates) == []


def test_spans_and_obscured_frames():
    plan = Plan.from_dict(literal_plan())
    assert [f for f in range(15) if plan.is_blacked_out(f)] == [8, 9, 12]
    assert plan.obscure_reason(12) == "RuntimeError: boom" and plan.obscure_reason(8) is None


def test_person_seeds_are_shared_by_a_persons_tracks():
    plan = Plan.from_dict(literal_plan())
    seeder = PersonSeeder(b"k" * 32)
    s1, s2 = plan.faces_on(1, seeder).seed.tolist()
    (s3,) = plan.faces_on(5, seeder).seed.tolist()
    assert s1 == s3 == seeder.seed_for(1) and s2 == seeder.seed_for(2) != s1
    assert plan.faces_on(1, PersonSeeder(b"o" * 32)).seed.tolist()[0] != s1  # another key, other seeds
    plan.persons[2].gallery_id = "3f2a"
    assert plan.faces_on(1, seeder).seed.tolist()[1] == seeder.seed_for("3f2a")


def test_spare_merge_and_split():
    plan = Plan.from_dict(literal_plan())
    plan.set_decision(2, "spare")
    assert plan.faces_on(1).track_id.tolist() == [1]
    with pytest.raises(ValueError):
        plan.set_decision(2, "maybe")
    # A merge never un-anonymizes: spare + anonymize -> anonymize.
    assert plan.merge_persons(1, 2) == 1
    assert set(plan.persons) == {1} and plan.persons[1].track_ids == [1, 2, 3] and plan.persons[1].decision == "anonymize"
    assert plan.faces_on(1).track_id.tolist() == [1, 2]
    new = plan.split_track(1, 2)
    assert plan.tracks[1].frames.tolist() == [0, 1] and plan.tracks[new].frames.tolist() == [2]
    new_person = plan.tracks[new].person_id
    assert new_person != 1 and plan.persons[new_person].track_ids == [new] and plan.persons[new_person].decision == "anonymize"
    assert sorted(plan.faces_on(2).track_id.tolist()) == sorted([2, new])
    assert plan.validate() == []
    with pytest.raises(ValueError):
        plan.split_track(3, 5)  # nothing before frame 5


def test_regions_interpolate_and_hold():
    plan = Plan.from_dict(literal_plan())
    rid = plan.add_region([(20, [10, 10, 30, 30]), (10, [0, 0, 10, 10])])
    assert plan.regions[rid].keyframes[0].frame == 10  # sorted
    assert plan.faces_on(9).track_id.tolist() == []
    faces = plan.faces_on(15)
    assert faces.track_id.tolist() == [-rid] and faces.data["region_id"].tolist() == [rid]
    np.testing.assert_allclose(faces.xyxy[0], [5, 5, 20, 20])
    assert len(plan.faces_on(21)) == 0
    held = plan.add_region([(10, [0, 0, 10, 10]), (12, [2, 2, 12, 12])], mode="hold", end_frame=14)
    boxes = {f: plan.faces_on(f)[plan.faces_on(f).data["region_id"] == held].xyxy.tolist() for f in (10, 11, 12, 14, 15)}
    assert boxes == {10: [[0, 0, 10, 10]], 11: [[0, 0, 10, 10]], 12: [[2, 2, 12, 12]], 14: [[2, 2, 12, 12]], 15: []}
    assert plan.faces_on(15, PersonSeeder(b"k" * 32)).seed.tolist() == [PersonSeeder(b"k" * 32).seed_for_region(rid)]
    with pytest.raises(ValueError, match="outside the video"):
        plan.add_region([(40, [0, 0, 1, 1])])
    with pytest.raises(ValueError, match="x1 >= x0"):
        plan.add_region([(1, [5, 0, 1, 1])])
    assert set(plan.regions) == {rid, held}
    plan.remove_region(held)
    plan.add_blackout(20, 22)
    assert plan.is_blacked_out(21)
    with pytest.raises(ValueError):
        plan.add_blackout(5, 2)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="something else"), "not a plan file"),
        (lambda d: d.update(version=2), "newer than this faceanon-video reads"),
        (lambda d: d["input"].update(sha256="xyz"), "input.sha256"),
        (lambda d: d["input"].pop("width"), "input.width: missing"),
        (lambda d: d["input"].update(frame_count=0), "frame_count must be >= 1"),
        (lambda d: d["tracks"][0]["frames"][1].update(xyxy=[1, 2, 3]), r"tracks\[0\].frames\[1\].xyxy: must be a list of 4 numbers"),
        (lambda d: d["tracks"][0]["frames"][1].update(frame=0), "track 1: frames must be strictly increasing"),
        (lambda d: d["tracks"][0]["frames"][0].update(frame=-1), "outside the video"),
        (lambda d: d["tracks"][0]["frames"][0].update(detected="yes"), "must be true or false"),
        (lambda d: d["persons"][1].update(decision="maybe"), "person 2: decision must be one of"),
        (lambda d: d["persons"][1].update(track_ids=[]), "track 2: its person 2 does not list it"),
        (lambda d: d["tracks"][1].update(person_id=7), "lists track 2, which belongs to person 7 .and 1 more problem."),
        (lambda d: d["blackouts"].append({"start_frame": 5, "end_frame": 3}), "end_frame is before start_frame"),
        (lambda d: d["regions"].append({"region_id": 1, "keyframes": [{"frame": 3, "xyxy": [0, 0, 1, 1]}], "decision": "spare"}), "regions are always anonymized"),
        (lambda d: d["candidates"][0].update(source="a hunch"), r"candidates\[0\].source: one of low_score, second_detector"),
        # Hand edits that once escaped as internal errors (OverflowError, ValueError).
        (lambda d: d["tracks"][0]["frames"][2].update(frame=10**30), r"tracks\[0\].frames\[2\].frame: must be a whole number"),
        (lambda d: d["candidates"].append({"frame": 10**30, "xyxy": [0, 0, 1, 1], "score": 0.1}), r"candidates\[1\].frame: must be a whole number"),
        (lambda d: d["regions"].append({"region_id": 10**30, "keyframes": [{"frame": 3, "xyxy": [0, 0, 1, 1]}]}), r"regions\[0\].region_id: must be a whole number"),
        (lambda d: d["settings"].update(detect_every="x"), r"settings.detect_every: must be a whole number >= 1"),
        (lambda d: d["settings"].update(detect_every=0), r"settings.detect_every: must be a whole number >= 1"),
        (lambda d: d["input"].update(start_s=1e308), r"input: start_s and end_s must be between 0 and"),
        (lambda d: d["input"].update(end_s=-1), r"input: start_s and end_s must be between 0 and"),
        (lambda d: d["tracks"][0]["frames"][0].update(xyxy=[0, 0, 1e308, 1e308]), r"tracks\[0\].frames\[0\].xyxy: out of range"),
    ],
)
def test_each_problem_is_one_line(tmp_path, edit, message):
    data = literal_plan()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message) as info:
        Plan.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_or_binary_plan_is_one_line(tmp_path):
    path = tmp_path / "p.json"
    Plan.from_dict(literal_plan()).save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="invalid or truncated JSON"):
        Plan.load(path)
    Plan.from_dict(literal_plan()).save(path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # a BOM, as Windows Notepad saves UTF-8
    assert Plan.load(path).input.sha256 == SHA
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="not UTF-8"):
        Plan.load(path)


def test_save_is_atomic_and_refuses_an_invalid_plan(tmp_path):
    plan = Plan.from_dict(literal_plan())
    path = tmp_path / "p.json"
    plan.save(path)
    before = path.read_bytes()
    plan.persons[1].decision = "maybe"
    with pytest.raises(InputError, match="invalid plan"):
        plan.save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]
