"""``--start``/``--end`` in segment-parallel runs (``faceanon_video.segments``): only the span is cut,
and the output is the single run's: frame count, timestamps, the span's audio packets, tags, no
leaked face-frame, the same tracks; for plain runs, two-phase runs (--save-plan then --plan) and --vault."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from faceanon_video import segments
from faceanon_video.config import RunConfig
from faceanon_video.io.decode import VideoReader
from faceanon_video.pipeline import process_file
from faceanon_video.plan import Plan
from faceanon_video.testing.recall import score_leaks
from faceanon_video.testing.synthetic import render_clip, score_tracks
from faceanon_video.track.tracks_io import read_tracks
from faceanon_video.vault import VaultReader
from tests.test_segments import GOP, N_FRAMES, _probe, _write_clip

START_S, END_S = 0.5, 4.0  # frames 13..100 of the 120-frame 25 fps clip (both ends kept, as --end is)
FIRST, LAST = 13, 100


@pytest.fixture
def short_segments(monkeypatch):
    monkeypatch.setattr(segments, "MAX_SEGMENT_S", 1.2)
    monkeypatch.setattr(segments, "OVERLAP_S", 1.0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segments_range")
    clip = render_clip(n_frames=N_FRAMES, seed=0)
    source = tmp / "clip.mp4"
    _write_clip(clip.frames, source)
    key = tmp / "key"
    key.write_bytes(b"k" * 32)
    return clip, source, key


def _span_clip(clip):
    """The ground truth of the span's frames only (the output's frame 0 is the clip's FIRST)."""
    span = slice(FIRST, LAST + 1)
    return replace(clip, frames=clip.frames[span], gt={**clip.gt, "frames": clip.gt["frames"][span]}, visible_ids=clip.visible_ids[span])


def _audio_packets(path) -> list[tuple[int, bytes]]:
    import av

    with av.open(str(path)) as container:
        return [(p.pts, bytes(p)) for p in container.demux(container.streams.audio[0]) if p.size]


def test_plan_cuts_only_the_span(clip, short_segments):
    _, source, _ = clip
    plan = segments.plan_segments(source, 2, start_s=START_S, end_s=END_S)
    assert plan.frames == LAST - FIRST + 1
    # Cuts at the keyframes inside the span (every GOP frames: 30, 60, 90), indices from the span's first frame.
    assert [(s.start_index, s.end_index) for s in plan.segments] == [(0, 60 - FIRST), (60 - FIRST, 90 - FIRST), (90 - FIRST, LAST + 1 - FIRST)]
    first, later = plan.segments[0], plan.segments[1]
    assert first.warm_pts == first.start_pts == plan.first_pts  # no warm-up before the span
    assert first.seek_index == -FIRST  # decoded from the keyframe of frame 0, frames before the span dropped
    assert later.warm_pts == later.start_pts - round(1.0 / plan.time_base)  # warm-up inside the span
    assert all(s.stop_pts == plan.segments[-1].end_pts is not None for s in plan.segments)
    assert plan.segments[-1].end_index - plan.segments[-1].start_index == LAST + 1 - 90  # shorter than a tail: the tail stops at --end
    assert GOP == 30


def test_start_end_in_segments_gives_the_single_runs_output(clip, tmp_path, short_segments):
    gt, source, _ = clip
    out = {}
    for jobs in (1, 2):
        config = RunConfig(jobs=jobs, start_s=START_S, end_s=END_S, progress=False, save_tracks=str(tmp_path / f"t{jobs}.jsonl"), report=[str(tmp_path / f"r{jobs}.json")])
        summary = process_file(source, tmp_path / f"out{jobs}.mp4", config)
        out[jobs] = {"summary": summary, "probe": _probe(tmp_path / f"out{jobs}.mp4"), "tracks": read_tracks(tmp_path / f"t{jobs}.jsonl"), "report": json.loads((tmp_path / f"r{jobs}.json").read_text())}
    one, two = out[1]["probe"], out[2]["probe"]
    assert len(two["frames"]) == len(one["frames"]) == LAST - FIRST + 1
    assert two["pts_s"] == one["pts_s"] and two["pts_s"][0] == pytest.approx(FIRST / 25, abs=0.03)
    assert two["audio_streams"] == one["audio_streams"] == 1
    assert _audio_packets(tmp_path / "out2.mp4") == _audio_packets(tmp_path / "out1.mp4")  # the span's audio, packet for packet
    assert two["format_tags"] == one["format_tags"] and "title" not in two["format_tags"]
    assert two["audio_tags"] == one["audio_tags"]
    span = _span_clip(gt)
    leaks = {jobs: score_leaks(span, out[jobs]["probe"]["frames"]) for jobs in (1, 2)}
    assert len(leaks[2].scored) == len(leaks[1].scored) > 300
    # The single run's leaked face-frames, no more: a profile face already in view at --start is not
    # covered on the span's first frames (a single run's tracker starts cold at --start too; the whole
    # clip's run, which followed it from before, covers it: tests/test_segments.py).
    assert [(r["frame"], r["id"]) for r in leaks[2].leaked] == [(r["frame"], r["id"]) for r in leaks[1].leaked]
    assert {r["frame"] for r in leaks[2].leaked} <= {0, 1, 2, 3}
    # Tracks: frame numbers from the span's first frame, the single run's id switches and spans.
    assert [r.frame_index for r in out[2]["tracks"]] == [r.frame_index for r in out[1]["tracks"]] == list(range(LAST - FIRST + 1))
    switches = [len(score_tracks(span, [r.faces for r in out[j]["tracks"]]).id_switches) for j in (1, 2)]
    assert switches[1] == switches[0]
    r1, r2 = out[1]["report"], out[2]["report"]
    assert r2["frames"] == r1["frames"] and r2["time_span_s"] == r1["time_span_s"] and r2["faces"]["tracks"] == r1["faces"]["tracks"]
    assert r2["segments"]["count"] == 3
    assert out[2]["summary"].frames == out[1]["summary"].frames


def test_plan_of_a_span_in_segments(clip, tmp_path, short_segments):
    """--save-plan with --start/--end in segments is the single run's plan, and its --plan render in
    segments (the span taken from the plan) gives the single render's frames and timestamps."""
    _, source, _ = clip
    plans = {}
    for jobs in (1, 2):
        path = tmp_path / f"plan{jobs}.json"
        process_file(source, path, RunConfig(jobs=jobs, start_s=START_S, end_s=END_S, save_plan=str(path), progress=False))
        plans[jobs] = Plan.load(path)
    assert plans[2].input.frame_count == plans[1].input.frame_count == LAST - FIRST + 1
    assert (plans[2].input.start_s, plans[2].input.end_s) == (START_S, END_S)

    def rows(plan):
        return sorted((int(t.first_frame), int(t.last_frame), len(t)) for t in plan.tracks.values())

    assert rows(plans[2]) == rows(plans[1])
    for jobs in (1, 2):
        process_file(source, tmp_path / f"render{jobs}.mp4", RunConfig(jobs=jobs, plan=str(tmp_path / "plan1.json"), progress=False))
    one, two = _probe(tmp_path / "render1.mp4"), _probe(tmp_path / "render2.mp4")
    assert len(two["frames"]) == len(one["frames"]) == LAST - FIRST + 1 and two["pts_s"] == one["pts_s"]
    assert _audio_packets(tmp_path / "render2.mp4") == _audio_packets(tmp_path / "render1.mp4")


def test_vault_of_a_span_in_segments(clip, tmp_path, short_segments):
    _, source, key = clip
    vaults = {}
    for jobs in (1, 2):
        vault = tmp_path / f"v{jobs}.favault"
        process_file(source, tmp_path / f"out{jobs}.mp4", RunConfig(jobs=jobs, start_s=START_S, end_s=END_S, vault=str(vault), key_file=str(key), progress=False))
        with VaultReader(vault, key.read_bytes()) as reader:
            vaults[jobs] = (reader.frames, reader.info.get("start_s"), reader.info.get("end_s"), [i for i, _ in reader.plaintexts()])
    assert vaults[2] == vaults[1]
    assert vaults[2][:3] == (LAST - FIRST + 1, START_S, END_S)
    with VideoReader(tmp_path / "out2.mp4") as reader:
        assert sum(1 for _ in reader) == LAST - FIRST + 1
