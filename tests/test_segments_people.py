"""Planned and identity runs in segments (``faceanon_video.segments``, two phases): --save-plan,
--plan, seeded modes and --people give the single run's tracks, person ids and per-person seeds
across the cuts, on the re-entry and shot-cut clips."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from faceanon_video import segments
from faceanon_video.config import RunConfig
from faceanon_video.pipeline import process_file
from faceanon_video.plan import Plan
from faceanon_video.testing.synthetic import FPS
from faceanon_video.track.tracks_io import read_tracks

from tests.test_planning import SeedRecorder, _gt_person_of_tracks, _synthetic

GOP = 15  # 0.6 s: the 3.6 s clips are cut into two segments at 1.8 s (MAX_SEGMENT_S patched)


def _with_keyframes(source: Path, path: Path) -> Path:
    """Re-encode near-lossless with a keyframe every GOP frames (the cut needs keyframes)."""
    with av.open(str(source)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "16", "preset": "veryfast", "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0"}
        for bgr in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))
        container.mux(stream.encode())
    return path


@pytest.fixture
def short_segments(monkeypatch):
    monkeypatch.setattr(segments, "MAX_SEGMENT_S", 2.0)
    monkeypatch.setattr(segments, "OVERLAP_S", 1.0)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("key") / "key"
    path.write_bytes(b"k" * 32)
    return path


def _persons(plan: Plan) -> list[list[tuple[int, int, int]]]:
    """Each person as its tracks' (first frame, last frame, rows): comparable across track numberings."""
    return sorted(sorted((t.first_frame, t.last_frame, len(t)) for t in plan.tracks.values() if t.person_id == p) for p in plan.persons)


def _in_process(monkeypatch) -> None:
    """Segments run here, one after the other (a test double can stand in for the anonymizer)."""

    def run_local(tasks, jobs, worker, done):
        failed: list = []
        for task in tasks:
            segments._settle(task, worker(task), failed, done)
        return failed

    monkeypatch.setattr(segments, "_run_local", run_local)
    monkeypatch.setattr(segments, "_worker_processor", None)  # models a worker process would keep
    monkeypatch.setattr(segments, "_worker_anonymizer", None)


@pytest.mark.parametrize("which", ["reentry", pytest.param("cut", marks=pytest.mark.slow)])
def test_save_plan_in_segments_is_the_single_runs_plan(tmp_path, short_segments, which):
    source, clip = _synthetic(tmp_path, which)
    video = _with_keyframes(source, tmp_path / f"{which}-gop.mp4")
    assert len(segments.plan_segments(video, 2).segments) == 2
    plans = {}
    for jobs in (1, 2):
        path = tmp_path / f"plan{jobs}.json"
        summary = process_file(video, path, RunConfig(jobs=jobs, progress=False, save_plan=str(path)))
        plans[jobs] = Plan.load(path)
        assert summary.frames == plans[jobs].input.frame_count == len(clip.frames)
    one, two = plans[1], plans[2]
    assert two.input == one.input and two.obscured == one.obscured == []
    assert _persons(two) == _persons(one)  # same tracks, same grouping into people
    # Person ids are given in order of first appearance: the same in both.
    assert sorted((t.first_frame, len(t), t.person_id) for t in two.tracks.values()) == sorted((t.first_frame, len(t), t.person_id) for t in one.tracks.values())
    # The boxes are the single run's: exactly in the first segment (no rounding to the track files'
    # 0.01 px), within a fraction of a pixel after the cut (the Kalman state warmed up in the overlap).
    cut = segments.plan_segments(video, 2).segments[1].start_index
    for t2 in two.tracks.values():
        same = [t for t in one.tracks.values() if (t.first_frame, t.last_frame, len(t)) == (t2.first_frame, t2.last_frame, len(t2))]
        t1 = min(same, key=lambda t: float(np.abs(t.xyxy - t2.xyxy).max()))
        before = t2.frames < cut
        np.testing.assert_array_equal(t2.xyxy[before], t1.xyxy[before])
        np.testing.assert_allclose(t2.xyxy, t1.xyxy, rtol=0, atol=1.0)
    gt = _gt_person_of_tracks(two, clip)
    for actor in ([4] if which == "reentry" else [1, 2, 3]):  # tracks of one actor across an exit or a shot cut
        assert len({two.tracks[t].person_id for t, a in gt.items() if a == actor}) == 1
    assert not list(tmp_path.glob(".plan2.segments-*"))


@pytest.mark.parametrize("which", ["reentry", pytest.param("cut", marks=pytest.mark.slow)])
def test_seeded_mode_in_segments_gives_each_person_the_single_runs_seed(tmp_path, key_file, short_segments, monkeypatch, which):
    """Diffusion in two phases: every track of a person has the person's one seed on both sides of
    the cut, and the seeds are the single run's (with a seed-recording stand-in for the model)."""
    from faceanon_video import processor as processor_module
    from faceanon_video.processor import FrameProcessor

    source, clip = _synthetic(tmp_path, which)
    video = _with_keyframes(source, tmp_path / f"{which}-gop.mp4")
    config = RunConfig(mode="diffusion", key_file=str(key_file), progress=False)
    single = SeedRecorder()
    process_file(video, tmp_path / "one.mp4", config, FrameProcessor(RunConfig(mode="none", key_file=str(key_file), progress=False), anonymizer=single))
    split = SeedRecorder()
    _in_process(monkeypatch)
    monkeypatch.setattr(processor_module, "build_anonymizer", lambda config: split)
    tracks = tmp_path / "tracks.jsonl"
    summary = process_file(video, tmp_path / "two.mp4", RunConfig(**{**vars(config), "jobs": 2, "save_tracks": str(tracks)}))
    assert summary.frames == len(clip.frames)
    with av.open(str(tmp_path / "two.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(clip.frames)
    person_of_track = {row["track"]: row["person"] for row in json.loads(tracks.read_text().splitlines()[-1])["people"]}
    seeds_of_person: dict[int, set[int]] = {}
    for track, seeds in split.seeds.items():
        seeds_of_person.setdefault(person_of_track[track], set()).update(seeds)
    assert all(len(s) == 1 for s in seeds_of_person.values())  # one seed per person, across the cut too
    assert {next(iter(s)) for s in seeds_of_person.values()} == set().union(*single.seeds.values())  # the single run's seeds


def test_render_of_a_plan_in_segments_matches_the_single_render(tmp_path, short_segments, key_file):
    source, clip = _synthetic(tmp_path, "reentry")
    video = _with_keyframes(source, tmp_path / "gop.mp4")
    plan = tmp_path / "plan.json"
    process_file(video, plan, RunConfig(jobs=1, progress=False, save_plan=str(plan)))
    frames = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}.mp4"
        config = RunConfig(jobs=jobs, plan=str(plan), crf=0, progress=False, report=[str(tmp_path / f"r{jobs}.json")])
        assert process_file(video, out, config).frames == len(clip.frames)
        with av.open(str(out)) as container:
            frames[jobs] = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    assert len(frames[2]) == len(frames[1]) == len(clip.frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames[1], frames[2]))  # lossless: the same pixels
    r1, r2 = (json.loads((tmp_path / f"r{jobs}.json").read_text()) for jobs in (1, 2))
    assert r2["faces"] == r1["faces"] and r2["plan"] == r1["plan"] and r2["segments"]["count"] == 2


def test_people_in_segments_links_the_single_runs_people(tmp_path, short_segments, key_file):
    source, clip = _synthetic(tmp_path, "reentry")
    video = _with_keyframes(source, tmp_path / "gop.mp4")
    people = {}
    for jobs in (1, 2):
        tracks = tmp_path / f"t{jobs}.jsonl"
        config = RunConfig(jobs=jobs, progress=False, key_file=str(key_file), people=str(tmp_path / f"p{jobs}.people"), save_tracks=str(tracks))
        process_file(video, tmp_path / f"out{jobs}.mp4", config)
        person_of_track = {row["track"]: row["person"] for row in json.loads(tracks.read_text().splitlines()[-1])["people"]}
        spans: dict[int, list[int]] = {}
        for record in read_tracks(tracks):
            for track in record.faces.track_id.tolist():
                spans.setdefault(track, []).append(record.frame_index)
        people[jobs] = sorted(sorted((min(spans[t]), max(spans[t])) for t in spans if person_of_track[t] == p) for p in set(person_of_track.values()))
        assert (tmp_path / f"p{jobs}.people").is_file()
    assert people[2] == people[1]


def test_kept_fragments_hold_no_plaintext_face_embeddings_and_resume_still_links(tmp_path, short_segments, key_file, monkeypatch):
    """A failed run keeps its finished segments for --resume: their fragments sit next to the output
    (and travel to Ray nodes), so the SFace embeddings in them are encrypted like the .people sidecar."""
    from faceanon_video.errors import FaceanonError

    _in_process(monkeypatch)
    source, _ = _synthetic(tmp_path, "reentry")
    video = _with_keyframes(source, tmp_path / "gop.mp4")
    config = RunConfig(jobs=2, progress=False, key_file=str(key_file), people=str(tmp_path / "p.people"))
    monkeypatch.setenv("FACEANON_FAULTS", "segment:frames=80-80")  # the second segment fails twice
    with pytest.raises(FaceanonError):
        process_file(video, tmp_path / "out.mp4", config)
    fragments = list(tmp_path.glob(".out.segments-*/*.fragment.json"))
    assert fragments, "the finished first segment is kept for --resume"
    for fragment in fragments:
        text = fragment.read_text()
        stored = json.loads(text)
        assert not stored["embeddings"], "embeddings in the clear"
        assert "sealed" in stored and len(stored["sealed"]) > 1000  # the first segment embedded faces
    monkeypatch.delenv("FACEANON_FAULTS")
    process_file(video, tmp_path / "out.mp4", RunConfig(**{**config.__dict__, "resume": True}))
    assert (tmp_path / "p.people").is_file() and (tmp_path / "out.mp4").is_file()
    assert not list(tmp_path.glob(".out.segments-*"))
