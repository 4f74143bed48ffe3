"""Segment-parallel runs (``faceanon_video.segments``): one file on several processes gives the single
run's output: frames, timestamps, audio once, metadata policy, covered faces, stitched track ids."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from faceanon_video import segments
from faceanon_video.config import RunConfig
from faceanon_video.errors import ConfigError, FaceanonError
from faceanon_video.io.decode import video_sha256
from faceanon_video.pipeline import process_file
from faceanon_video.testing.recall import score_leaks
from faceanon_video.testing.synthetic import FPS, anonymized_mask, render_clip, score_tracks
from faceanon_video.track.tracks_io import read_tracks
from faceanon_video.types import Detections

N_FRAMES = 120
GOP = 30  # keyframes every 1.2 s: the 4.8 s clip is cut into 4 segments (MAX_SEGMENT_S patched to 2 s)
SAMPLE_RATE = 48000


def _write_clip(frames: list[np.ndarray], path: Path) -> None:
    """H.264 with a keyframe every GOP frames, an AAC tone and identifying tags (which must not survive)."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        container.metadata.update({"title": "Officer 4711", "comment": "serial 123"})
        video = container.add_stream("libx264", rate=Fraction(FPS))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "16", "preset": "veryfast", "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0"}
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        audio.metadata["language"] = "eng"
        t = np.arange(int(SAMPLE_RATE * len(frames) / FPS)) / SAMPLE_RATE
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
            container.mux(audio.encode(chunk))
        container.mux(audio.encode())
        for bgr in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))
        container.mux(video.encode())


def _probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio
        out = {"format_tags": dict(container.metadata), "audio_streams": len(audio), "video_tb": video.time_base}
        out["audio_tags"] = dict(audio[0].metadata) if audio else {}
        pts = sorted(p.pts for p in container.demux(video) if p.size)
        out["pts_s"] = [float(p * video.time_base) for p in pts]
    if audio:
        with av.open(str(path)) as container:
            a = container.streams.audio[0]
            packets = [p for p in container.demux(a) if p.size]
            out["audio_end_s"] = float((packets[-1].pts + packets[-1].duration) * a.time_base)
            out["audio_packets"] = len(packets)
    with av.open(str(path)) as container:
        out["frames"] = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    return out


def clip_file(tmp: Path):
    """The ground-truth clip of these tests (N_FRAMES, seed 0) written to ``tmp``/clip.mp4."""
    clip = render_clip(n_frames=N_FRAMES, seed=0)
    source = tmp / "clip.mp4"
    _write_clip(clip.frames, source)
    return clip, source


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The clip, run once in one process and once as 4 segments on 2 processes."""
    tmp = tmp_path_factory.mktemp("segments")
    clip, source = clip_file(tmp)
    mp = pytest.MonkeyPatch()
    mp.setattr(segments, "MAX_SEGMENT_S", 2.0)
    mp.setattr(segments, "OVERLAP_S", 1.0)
    out = {"clip": clip, "source": source, "tmp": tmp}
    try:
        for jobs in (1, 2):
            config = RunConfig(jobs=jobs, progress=False, save_tracks=str(tmp / f"tracks{jobs}.jsonl"), report=[str(tmp / f"report{jobs}.json")])
            out[jobs] = {"summary": process_file(source, tmp / f"out{jobs}.mp4", config), "probe": _probe(tmp / f"out{jobs}.mp4")}
            out[jobs]["tracks"] = read_tracks(tmp / f"tracks{jobs}.jsonl")
            out[jobs]["report"] = json.loads((tmp / f"report{jobs}.json").read_text())
        out["plan"] = segments.plan_segments(source, 2)
    finally:
        mp.undo()
    return out


def test_plan_cuts_at_keyframes_and_partitions_the_frames(runs):
    plan = runs["plan"]
    assert len(plan.segments) == 4 and plan.frames == N_FRAMES
    assert [(s.start_index, s.end_index) for s in plan.segments] == [(0, 30), (30, 60), (60, 90), (90, 120)]
    with av.open(str(runs["source"])) as container:
        keyframes = {p.pts for p in container.demux(container.streams.video[0]) if p.is_keyframe}
    assert all(s.start_pts in keyframes for s in plan.segments[1:])
    # Segment 2 (frame 60) warms up from frame 35 (1 s before): decoding starts at the keyframe of frame 30.
    assert plan.segments[2].seek_index == 30 and plan.segments[2].seek_pts in keyframes


def test_same_frames_timestamps_audio_and_tags_as_one_process(runs):
    one, two = runs[1]["probe"], runs[2]["probe"]
    assert len(two["frames"]) == len(one["frames"]) == N_FRAMES
    assert two["pts_s"] == one["pts_s"]
    assert two["video_tb"] == one["video_tb"]
    # The audio is copied once, whole: one stream, same packets, same end.
    assert two["audio_streams"] == one["audio_streams"] == 1
    assert two["audio_packets"] == one["audio_packets"] and two["audio_end_s"] == pytest.approx(one["audio_end_s"])
    assert two["audio_end_s"] == pytest.approx(N_FRAMES / FPS, abs=0.05)
    # Metadata policy applied once: identifying tags gone, the audio language kept.
    assert two["format_tags"] == one["format_tags"]
    assert "title" not in two["format_tags"] and "comment" not in two["format_tags"]
    assert two["audio_tags"].get("language") == "eng"


def _background_error(clip, source: list[np.ndarray], output: list[np.ndarray]) -> list[float]:
    """Per frame, mean absolute difference to the input outside the (generously grown) face boxes."""
    errors = []
    for index, (a, b) in enumerate(zip(source, output)):
        gt, _ = clip.boxes(index, include_ignored=True)
        faces = anonymized_mask(Detections(xyxy=gt, score=np.ones(len(gt))), a.shape, mask_scale=2.0, mask="box")
        errors.append(float(np.abs(a.astype(np.int16) - b.astype(np.int16))[~faces].mean()))
    return errors


def test_faces_covered_and_background_untouched_on_every_frame(runs):
    clip, two, one = runs["clip"], runs[2]["probe"], runs[1]["probe"]
    leaks = score_leaks(clip, two["frames"])
    assert leaks.scored and not leaks.leaked
    assert len(score_leaks(clip, one["frames"]).leaked) == 0
    with av.open(str(runs["source"])) as container:
        source = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    # Outside faces the output is the input up to the encoder's rounding, as in the single run (each
    # segment starts with a keyframe of its own, so the two encodes differ by a level or two).
    single, split = _background_error(clip, source, one["frames"]), _background_error(clip, source, two["frames"])
    assert all(b <= a + 0.5 for a, b in zip(single, split)), [(i, a, b) for i, (a, b) in enumerate(zip(single, split)) if b > a + 0.5]
    assert np.median(split) < 3.0


def test_frames_at_each_join_match_the_single_run(runs):
    """No jump at a join: the frames on both sides are as close to the single run's as anywhere."""
    one, two = runs[1]["probe"]["frames"], runs[2]["probe"]["frames"]
    first = runs["plan"].segments[1].start_index
    assert all(np.array_equal(one[i], two[i]) for i in range(first))  # the first segment is the single run's, bit for bit

    def change(frames, i) -> float:
        return float(np.abs(frames[i].astype(np.int16) - frames[i - 1].astype(np.int16)).mean())

    for segment in runs["plan"].segments[1:]:
        i = segment.start_index
        assert np.abs(one[i].astype(np.int16) - two[i].astype(np.int16)).mean() < 3.0, i
        assert change(two, i) <= change(one, i) + 1.0, i  # the step into the new segment is no bigger


def test_tracks_stitched_into_one_file_with_the_same_ids_and_report(runs):
    clip = runs["clip"]
    one, two = runs[1]["tracks"], runs[2]["tracks"]
    assert [r.frame_index for r in two] == list(range(N_FRAMES))
    switches = {jobs: len(score_tracks(clip, [r.faces for r in runs[jobs]["tracks"]]).id_switches) for jobs in (1, 2)}
    assert switches[2] == switches[1]

    def spans(records) -> list[tuple[int, int]]:
        seen: dict[int, list[int]] = {}
        for r in records:
            for track_id in r.faces.track_id.tolist():
                seen.setdefault(track_id, []).append(r.frame_index)
        return sorted((min(f), max(f)) for f in seen.values())

    assert spans(two) == spans(one)
    assert any(a < 30 and b >= 90 for a, b in spans(two))  # a face tracked across all three joins keeps its id
    r1, r2 = runs[1]["report"], runs[2]["report"]
    assert r2["frames"] == r1["frames"] == {"in": N_FRAMES, "out": N_FRAMES}
    assert r2["faces"] == r1["faces"]
    assert r2["time_span_s"] == r1["time_span_s"]
    assert r2["segments"]["count"] == 4
    assert runs[2]["summary"].frames == N_FRAMES and runs[2]["summary"].faces == runs[1]["summary"].faces
    assert not list(runs["tmp"].glob(".out2.segments-*"))  # the work folder is gone after success


def test_failed_segment_is_retried_then_fails_with_nothing_written_and_resume_reuses(runs, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(segments, "MAX_SEGMENT_S", 2.0)
    monkeypatch.setattr(segments, "OVERLAP_S", 1.0)
    destination = tmp_path / "out.mp4"
    config = RunConfig(jobs=2, progress=False, save_tracks=str(tmp_path / "t.jsonl"), report=[str(tmp_path / "r.json")])
    monkeypatch.setenv("FACEANON_FAULTS", "segment:frames=70-70")  # segment 2 (frames 60..89)
    with caplog.at_level(logging.WARNING, logger="faceanon_video.segments"), pytest.raises(FaceanonError, match="segment 2 failed twice"):
        process_file(runs["source"], destination, config)
    attempts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("segment 2 failed")]
    assert len(attempts) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []  # no video, tracks or report
    work = next(tmp_path.glob(".out.segments-*"))
    assert sorted(p.name for p in work.glob("*.json")) == ["segment-0000.json", "segment-0001.json", "segment-0003.json"]

    monkeypatch.delenv("FACEANON_FAULTS")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="faceanon_video.segments"):
        summary = process_file(runs["source"], destination, RunConfig(**{**vars(config), "resume": True}))
    assert any("3 of 4 segments already done" in r.getMessage() for r in caplog.records)
    assert summary.frames == N_FRAMES
    # x264 on one thread is deterministic: the resumed output is the uninterrupted one, packet for packet.
    assert video_sha256(destination) == video_sha256(runs["tmp"] / "out2.mp4")
    assert not work.exists()


def test_on_segment_failure_black_blacks_out_the_failed_segment_and_reports_it(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "MAX_SEGMENT_S", 2.0)
    monkeypatch.setattr(segments, "OVERLAP_S", 1.0)
    monkeypatch.setenv("FACEANON_FAULTS", "segment:frames=70-70")  # segment 2 (frames 60..89), on both attempts
    report = tmp_path / "r.json"
    config = RunConfig(jobs=2, progress=False, on_segment_failure="black", report=[str(report)])
    summary = process_file(runs["source"], tmp_path / "out.mp4", config)
    out, good = _probe(tmp_path / "out.mp4"), runs[2]["probe"]
    assert len(out["frames"]) == N_FRAMES and out["pts_s"] == good["pts_s"] and out["audio_packets"] == good["audio_packets"]
    black = [i for i, f in enumerate(out["frames"]) if f.max() <= 2]
    assert black == list(range(60, 90))
    assert all(np.array_equal(out["frames"][i], good["frames"][i]) for i in [*range(60), *range(90, N_FRAMES)])  # the others: the same packets
    entry = json.loads(report.read_text())
    assert entry["segments"]["blacked_out"] == [{"segment": 2, "start_frame": 60, "end_frame": 89, "error": "InjectedFault: injected segment fault (FACEANON_FAULTS)"}]
    assert entry["obscured_frames"]["count"] == summary.obscured_frames == 30
    with pytest.raises(ConfigError, match="--on-segment-failure"):
        RunConfig(on_segment_failure="skip")


def test_b_frames_join_with_the_single_runs_timestamps(runs, tmp_path, monkeypatch):
    """--preset medium encodes B-frames: packets are decoded before they are shown, and the join must
    keep every timestamp at each of the three cuts."""
    monkeypatch.setattr(segments, "MAX_SEGMENT_S", 2.0)
    monkeypatch.setattr(segments, "OVERLAP_S", 1.0)
    for jobs in (1, 2):
        process_file(runs["source"], tmp_path / f"out{jobs}.mp4", RunConfig(jobs=jobs, preset="medium", progress=False))
    one, two = _probe(tmp_path / "out1.mp4"), _probe(tmp_path / "out2.mp4")
    assert len(two["frames"]) == len(one["frames"]) == N_FRAMES
    assert two["pts_s"] == one["pts_s"] and two["audio_packets"] == one["audio_packets"]


def flaky_worker(task: dict) -> dict:
    """Fails the first time it sees a segment (a marker file remembers), then succeeds."""
    marker = Path(task["marker"]) / f"seen-{task['segment']['number']}"
    if not marker.exists():
        marker.touch()
        raise RuntimeError("flaky")
    return {"frames": 1}


def test_a_segment_failing_once_is_retried_and_succeeds(tmp_path):
    tasks = [{"segment": {"number": n}, "marker": str(tmp_path)} for n in range(2)]
    done = []
    segments.run_segments(tasks, 2, lambda task, result: done.append(task["segment"]["number"]), worker=flaky_worker)
    assert sorted(done) == [0, 1]


def test_stitch_matches_tracks_by_iou_in_the_overlap():
    def record(xyxy, ids):
        return segments.TrackRecord(0, None, Detections(xyxy=np.array(xyxy, np.float32), score=np.ones(len(ids)), track_id=ids))

    before = {5: record([[0, 0, 10, 10], [50, 50, 70, 70]], [7, 8]), 6: record([[1, 0, 11, 10], [50, 51, 70, 71]], [7, 8])}
    after = {5: record([[50, 50, 70, 70], [0, 0, 10, 10], [200, 200, 220, 220]], [1, 2, 3]), 6: record([[50, 50, 70, 70], [1, 0, 11, 10]], [1, 2])}
    assert segments.stitch_track_ids(before, after) == {1: 8, 2: 7}  # 3 is new: it gets a fresh id


def test_unsupported_combinations_run_in_one_process(tmp_path, caplog):
    source = Path(__file__).parent / "data" / "short_hamilton_clip.mp4"
    assert segments.segment_jobs(source, RunConfig()) == 1  # auto: a 9 s clip is too short to split
    assert segments.segment_jobs(source, RunConfig(jobs=2)) == 2
    key = tmp_path / "key"
    key.write_text("0" * 64)
    for config in (RunConfig(jobs=2, spare=[str(tmp_path)]), RunConfig(jobs=2, only=[str(tmp_path)])):
        with caplog.at_level(logging.INFO, logger="faceanon_video.segments"):
            assert segments.segment_jobs(source, config) == 1
    assert sum("not split into segments" in r.getMessage() for r in caplog.records) == 2
    assert segments.segment_jobs(source, RunConfig(jobs=2, start_s=1.0, end_s=5.0)) == 2  # tests/test_segments_range.py
    # Planned, identity and vault runs are segmented (tests/test_segments_people.py, tests/test_segments_vault.py).
    vault = RunConfig(jobs=2, vault=str(tmp_path / "v"), key_file=str(key))
    for config in (RunConfig(jobs=2, mode="diffusion"), RunConfig(jobs=2, people=str(tmp_path / "p"), key_file=str(key)), RunConfig(jobs=2, save_plan=str(tmp_path / "plan.json")), vault):
        assert segments.segment_jobs(source, config) == 2


def test_jobs_is_validated():
    with pytest.raises(ConfigError, match="--jobs"):
        RunConfig(jobs=0)


def test_sigterm_stops_the_workers_and_leaves_no_output(runs, tmp_path):
    """SIGTERM (or Ctrl-C) mid-run: exit 130, nothing at the destination, workers gone, their partial
    segment files removed (the finished ones stay for --resume)."""
    psutil = pytest.importorskip("psutil")
    source = tmp_path / "long.mp4"
    _write_clip(runs["clip"].frames * 2, source)  # 9.6 s: each worker takes a few seconds
    destination = tmp_path / "out.mp4"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "faceanon_video.cli", str(source), "-o", str(destination), "--jobs", "2", "-q"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.segments-*/.segment-*partial*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = psutil.Process(process.pid).children(recursive=True)
    assert workers, "no worker process started"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    psutil.wait_procs(workers, timeout=10)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert not destination.exists()
    assert not list(tmp_path.glob("**/*partial*")) and not list(tmp_path.glob(".*partial*"))


@pytest.mark.slow  # 17-40 s here, most of it starting Ray
def test_ray_two_node_local_cluster_runs_the_segments(runs, tmp_path, monkeypatch):
    """The documented two-node layout on one machine: a head and a second node of one CPU each
    (``ray.cluster_utils.Cluster``), the segments spread over both; the output is packet for packet
    the one of local worker processes."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    monkeypatch.setattr(segments, "MAX_SEGMENT_S", 2.0)
    monkeypatch.setattr(segments, "OVERLAP_S", 1.0)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        assert len(ray.nodes()) == 2
        summary = process_file(runs["source"], tmp_path / "out.mp4", RunConfig(jobs=2, progress=False), ray_address="auto")
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert summary.frames == N_FRAMES
    assert video_sha256(tmp_path / "out.mp4") == video_sha256(runs["tmp"] / "out2.mp4")


def _sigint_disposition(_task: dict) -> dict:
    return {"sigint_ignored": signal.getsignal(signal.SIGINT) is signal.SIG_IGN}


def test_workers_leave_ctrl_c_to_the_driver():
    # Ctrl-C reaches the terminal's whole process group: a worker still importing (or idle) printed a
    # KeyboardInterrupt traceback. The driver handles it and stops its workers with SIGTERM.
    results = []
    before = signal.getsignal(signal.SIGINT)
    failed = segments._run_local([{}], 1, _sigint_disposition, lambda task, result: results.append(result))
    assert failed == [] and results == [{"sigint_ignored": True}]
    assert signal.getsignal(signal.SIGINT) is before


def test_interrupted_before_any_segment_finished_leaves_no_work_folder(tmp_path, monkeypatch):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(segments, "run_segments", interrupted)
    source = Path(__file__).parent / "data" / "short_hamilton_clip.mp4"
    with pytest.raises(KeyboardInterrupt):
        process_file(source, tmp_path / "out.mp4", RunConfig(jobs=2, progress=False))
    assert list(tmp_path.iterdir()) == []  # nothing was finished: no empty folder "kept for --resume"


def test_an_input_error_is_one_line_without_retry_warnings(monkeypatch, caplog):
    # --strict on a damaged frame: the run printed a "segment N failed (attempt 1 of 2)" warning per
    # segment before its one error line, though an input error is never retried.
    task = {"segment": {"number": 0}}
    calls = []

    def run_local(tasks, jobs, worker, done):
        calls.append(tasks)
        return [(task, {"error": "clip.mp4: damaged frame at 4.40 s", "input_error": True})]

    monkeypatch.setattr(segments, "_run_local", run_local)
    with caplog.at_level(logging.WARNING, logger="faceanon_video.segments"), pytest.raises(FaceanonError, match="damaged frame"):
        segments.run_segments([task], 2, lambda *_: None)
    assert len(calls) == 1 and not caplog.records


def _sleepy(task: dict) -> dict:
    time.sleep(task["sleep_s"])
    return {"frames": 0}


def test_an_interrupted_driver_stops_its_busy_workers_at_once():
    """The driver interrupted (SIGTERM, Ctrl-C) while workers run long segments and more wait in the
    queue: the workers are stopped, not left to finish every queued segment while the driver waits
    for them at exit (``ProcessPoolExecutor.shutdown`` forgets its processes: they were never signalled)."""
    import multiprocessing

    def interrupt(_task, _result):
        raise KeyboardInterrupt

    tasks = [{"sleep_s": 0.0}] + [{"sleep_s": 60.0}] * 4
    with pytest.raises(KeyboardInterrupt):
        segments._run_local(tasks, 2, _sleepy, interrupt)
    stopped = time.monotonic()
    while multiprocessing.active_children() and time.monotonic() - stopped < 15:
        time.sleep(0.1)
    assert not multiprocessing.active_children()
    assert time.monotonic() - stopped < 15


def test_resume_does_not_reuse_renders_of_another_key_at_the_same_path(tmp_path, monkeypatch):
    """The render segments' names bind the seed key: a key file rewritten in place (same path) must
    not let --resume join segments seeded with the old key to ones seeded with the new."""

    class _Slice:
        def save(self, path):
            Path(path).write_text("{}")

    monkeypatch.setattr(segments, "_plan_slice", lambda _plan, _segment: _Slice())
    video_plan = type("P", (), {"to_json": lambda self: "{}"})()
    plan = segments.SegmentPlan((segments.Segment(0, None, 0, None, None, None, 0, 10),), 10, 1.0, Fraction(1, 25), 0)
    key = tmp_path / "key"
    names = []
    for content in (b"a" * 32, b"b" * 32, b"a" * 32):
        key.write_bytes(content)
        config = RunConfig(mode="diffusion", key_file=str(key), jobs=2)
        names.append(segments._render_tasks(tmp_path / "in.mp4", config, plan, tmp_path, "libx264", video_plan)[0]["video"])
    assert names[0] != names[1] and names[0] == names[2]


def _warns(_task: dict) -> dict:
    logging.getLogger("faceanon_video.processor").warning("frame 3 obscured: boom")
    return {"frames": 0}


def test_worker_warnings_read_like_the_drivers(capfd):
    """A worker's warnings (frames obscured...) carry the CLI's 'faceanon-video: WARNING:' prefix,
    not bare lines among the driver's."""
    segments._run_local([{}], 1, _warns, lambda task, result: None)
    assert "faceanon-video: WARNING: frame 3 obscured: boom" in capfd.readouterr().err
