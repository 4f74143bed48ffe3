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
from faceanon_video.testing.synthetic import score_tracks
from faceanon_video.track.tracks_io import read_tracks
from faceanon_video.vault import VaultReader
from tests.test_segments import GOP, _probe, clip_file

START_S, END_S = 0.5, 4.0  # frames 13..100 of the 120-frame 25 fps clip (both ends kept, as --end is)
FIRST, LAST = 13, 100


@pytest.fixture
def short_segments(monkeypatch):
    monkeypatch.setattr(segments, "MAX_SEGMENT_S", 1.2)
    monkeypatch.setattr(segments, "OVERLAP_S", 1.0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("segments_range")
    clip, source = clip_file(tmp)
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
    # Warmed up before the span as a single run is (WARM_UP_S = 2 s before --start: from frame 0 here).
    assert first.warm_pts == 0 < first.start_pts == plan.first_pts
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
    # The output is the span's, as before the warm-up: its frames' timestamps, and the source's audio
    # packets of the span, packet for packet.
    assert one["pts_s"] == pytest.approx([i / 25 for i in range(FIRST, LAST + 1)], abs=1e-3)
    with VideoReader(source, start_s=START_S, end_s=END_S) as reader:
        assert _audio_packets(tmp_path / "out1.mp4") == [(p.pts, bytes(p)) for p in reader.copied_packets()]
    span = _span_clip(gt)
    leaks = {jobs: score_leaks(span, out[jobs]["probe"]["frames"]) for jobs in (1, 2)}
    assert len(leaks[2].scored) == len(leaks[1].scored) > 300
    # No leaked face-frame: the profile face already in view at --start, which the detector alone does
    # not catch on the span's first frames, is tracked from the warm-up before it (processor.WARM_UP_S)
    # in the single run and in the first segment alike (before the warm-up: frames 0-3 leaked).
    assert leaks[1].leaked == leaks[2].leaked == []
    # Tracks: frame numbers from the span's first frame, the single run's id switches and spans.
    assert [r.frame_index for r in out[2]["tracks"]] == [r.frame_index for r in out[1]["tracks"]] == list(range(LAST - FIRST + 1))
    switches = [len(score_tracks(span, [r.faces for r in out[j]["tracks"]]).id_switches) for j in (1, 2)]
    assert switches[1] == switches[0]
    r1, r2 = out[1]["report"], out[2]["report"]
    assert r1["frames"] == {"in": LAST - FIRST + 1, "out": LAST - FIRST + 1}  # no warm-up frame counted
    assert r2["frames"] == r1["frames"] and r2["time_span_s"] == r1["time_span_s"] and r2["faces"]["tracks"] == r1["faces"]["tracks"]
    assert r2["segments"]["count"] == 3
    assert out[2]["summary"].frames == out[1]["summary"].frames == LAST - FIRST + 1


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


def test_reader_warm_up_before_start(clip):
    """``VideoReader(warm_up_s=)``: the frames before ``start_s`` come first, marked ``warm_up`` and
    numbered -n..-1 (the span's first frame is still 0), not counted as decoded; clamped at the
    video's start."""
    _, source, _ = clip
    for start_s, warm_first, first in ((3.0, 25, 75), (START_S, 0, FIRST)):
        with VideoReader(source, start_s=start_s, end_s=END_S, warm_up_s=2.0) as reader:
            frames = list(reader)
            assert [round(f.time_s * 25) for f in frames] == list(range(warm_first, LAST + 1))
            assert [f.index for f in frames] == list(range(warm_first - first, LAST + 1 - first))
            assert [f.warm_up for f in frames] == [f.index < 0 for f in frames]
            assert reader.frames_decoded == LAST + 1 - first


# Frames 30..60: face 4 leaves the clip at frame 27 and is back at 66, so it is seen in the warm-up only.
WARM_ONLY_SPAN_S = (1.2, 2.4)
WARM_ONLY_FRAMES = 31


def test_warm_up_frames_leave_nothing_behind(clip, tmp_path):
    """A single run with --start: the warm-up is tracked, but the track file, the people linked, the
    vault, the report and the summary hold the span's frames only, and no track seen only there."""
    _, source, key = clip
    start_s, end_s = WARM_ONLY_SPAN_S
    config = RunConfig(
        start_s=start_s, end_s=end_s, progress=False, save_tracks=str(tmp_path / "t.jsonl"), vault=str(tmp_path / "v.favault"),
        key_file=str(key), people=str(tmp_path / "p.people"), report=[str(tmp_path / "r.json")],
    )
    summary = process_file(source, tmp_path / "out.mp4", config)
    records = read_tracks(tmp_path / "t.jsonl")
    assert [r.frame_index for r in records] == list(range(WARM_ONLY_FRAMES))
    tracked = {t for r in records for t in r.faces.track_id.tolist()}
    assert 4 <= len(tracked) <= 6  # faces 1, 2, 3, 5, 6 (not 4)
    people = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[-1])["people"]
    assert {row["track"] for row in people} == tracked  # no person made of a warm-up-only track
    with VaultReader(tmp_path / "v.favault", key.read_bytes()) as reader:
        assert reader.frames == WARM_ONLY_FRAMES
        assert sorted({i for i, _ in reader.plaintexts()}) == [r.frame_index for r in records if len(r.faces)]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == {"in": WARM_ONLY_FRAMES, "out": WARM_ONLY_FRAMES}
    assert report["faces"]["tracks"] == len(tracked)
    assert summary.frames == WARM_ONLY_FRAMES and summary.faces == sum(len(r.faces) for r in records)
    assert len(_probe(tmp_path / "out.mp4")["frames"]) == WARM_ONLY_FRAMES


def test_plan_of_a_span_has_no_warm_up_track(clip, tmp_path):
    """--save-plan with --start (the analysis runs through process_video too): the span's frames only,
    and no track seen only in the warm-up (face 4)."""
    _, source, _ = clip
    start_s, end_s = WARM_ONLY_SPAN_S
    path = tmp_path / "plan.json"
    process_file(source, path, RunConfig(start_s=start_s, end_s=end_s, save_plan=str(path), progress=False))
    plan = Plan.load(path)
    assert plan.input.frame_count == WARM_ONLY_FRAMES
    assert 4 <= len(plan.tracks) <= 6
    assert all(0 <= int(t.first_frame) <= int(t.last_frame) < WARM_ONLY_FRAMES for t in plan.tracks.values())
    assert sorted(t for p in plan.persons.values() for t in p.track_ids) == sorted(plan.tracks)
    # The render of the plan: the span's frames, no warm-up (a plan's faces need no tracker).
    process_file(source, tmp_path / "render.mp4", RunConfig(plan=str(path), progress=False))
    assert len(_probe(tmp_path / "render.mp4")["frames"]) == WARM_ONLY_FRAMES
