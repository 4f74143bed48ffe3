"""Segment-parallel runs (``--jobs``): fps and CPU per frame against a plain PyAV loop, 720p and 1080p.

    python benchmarks/segments.py [--seconds 20] [--repeats 3] [--kind blur] [--deface PATH] [--json-out FILE]

Input: tests/data/short_hamilton_clip.mp4 (several real faces) scaled to each height, looped to
``--seconds`` and re-encoded with a keyframe every 2 s (so it can be cut) and its audio. Each
repetition runs, back to back on the same file: the plain PyAV decode -> encode loop
(``eval.bench.plain_pyav_fps``: the I/O ceiling), ``--jobs 1`` (the stage-threaded single process) and
``--jobs 2`` (two segment workers) and, with ``--sequential``, one segment on one worker process (the
frame loop without threads, overlap or tail), all blur with defaults, and, with ``--deface PATH``,
deface 1.5.0 on the same clip (its defaults; a CLI timed from process start, as
``compare_deface.py`` runs it: its ~1 s of start-up is counted, ours in-process is not). Ratios are taken within one repetition
(the machine may be shared); min/median/max over repetitions. CPU seconds are this process's plus
its finished children's (``resource.getrusage``), so the workers are counted.

``--kind``: ``blur`` (the default run), ``people`` (``--people``: one phase, people linked by the
driver), ``save-plan`` (phase 1 of a planned run: analysis only) or ``render`` (phase 2: ``--plan`` of
a plan made once before the repetitions); a seeded mode (diffusion) runs both phases.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_deface import deface_command, deface_version, timed  # noqa: E402

from faceanon_video.config import RunConfig
from faceanon_video.eval.bench import machine_description, plain_pyav_fps
from faceanon_video.memory import keep_freed_memory
from faceanon_video.pipeline import process_file
from faceanon_video.segments import process_segmented

HAMILTON = Path(__file__).resolve().parents[1] / "tests" / "data" / "short_hamilton_clip.mp4"
HEIGHTS = {"720p": 720, "1080p": 1080}
log = logging.getLogger("segments-bench")


def looped_clip(path: Path, height: int, seconds: float) -> Path:
    """HAMILTON scaled to ``height``, looped to ``seconds``, keyframe every 2 s, audio kept."""
    with av.open(str(HAMILTON)) as src:
        frames = [f.to_ndarray(format="bgr24") for f in src.decode(video=0)]
        rate = src.streams.video[0].average_rate
    width = round(frames[0].shape[1] * height / frames[0].shape[0] / 2) * 2
    total = int(seconds * rate)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        gop = int(round(2 * rate))
        video.options = {"crf": "20", "preset": "veryfast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i in range(total):
            frame = av.VideoFrame.from_ndarray(cv2.resize(frames[i % len(frames)], (width, height), interpolation=cv2.INTER_CUBIC), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1) / rate
            out.mux(video.encode(frame))
        out.mux(video.encode())
    return path


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _config(kind: str, work: Path, out: Path, **settings) -> RunConfig:
    if kind == "people":
        key = work / "key"
        key.write_bytes(b"k" * 32)
        return RunConfig(people=str(work / "clip.people"), key_file=str(key), **settings)
    if kind == "save-plan":
        return RunConfig(save_plan=str(out), **settings)
    if kind == "render":
        return RunConfig(plan=str(work / "clip.plan.json"), **settings)
    return RunConfig(**settings)


def measure(clip: Path, work: Path, repeats: int, sequential: bool = False, kind: str = "blur", deface: str | None = None) -> dict:
    rows = []
    if kind == "render":
        process_file(clip, work / "clip.plan.json", RunConfig(jobs=1, save_plan=str(work / "clip.plan.json"), progress=False, overwrite=True))
    with av.open(str(clip)) as c:
        frames = c.streams.video[0].frames
    for r in range(repeats):
        row = {"load_avg_1min_start": os.getloadavg()[0]}
        cpu, start = _cpu_s(), time.perf_counter()
        row["plain_fps"] = plain_pyav_fps(clip, RunConfig(), frames)
        row["plain_cpu_ms"] = (_cpu_s() - cpu) / frames * 1000
        for jobs in (1, 2):
            out = work / (f"out{jobs}.plan.json" if kind == "save-plan" else f"out{jobs}.mp4")
            cpu, start = _cpu_s(), time.perf_counter()
            summary = process_file(clip, out, _config(kind, work, out, jobs=jobs, progress=False, overwrite=True))
            wall = time.perf_counter() - start
            row[f"jobs{jobs}_fps"] = summary.frames / wall
            row[f"jobs{jobs}_cpu_ms"] = (_cpu_s() - cpu) / summary.frames * 1000
            row[f"jobs{jobs}_ratio"] = row[f"jobs{jobs}_fps"] / row["plain_fps"]
            if jobs == 2:
                row["plan_s"] = summary.stage_seconds.get("plan", 0.0)
                row["join_s"] = summary.stage_seconds.get("join", 0.0)
        row["speedup"] = row["jobs2_fps"] / row["jobs1_fps"]
        if sequential:
            # One segment on one worker: the sequential frame loop without threads, overlap or tail.
            cpu, start = _cpu_s(), time.perf_counter()
            summary = process_segmented(clip, work / "seq.mp4", RunConfig(progress=False, overwrite=True), jobs=1)
            row["seq1_fps"] = summary.frames / (time.perf_counter() - start)
            row["seq1_cpu_ms"] = (_cpu_s() - cpu) / summary.frames * 1000
        if deface:
            cpu = _cpu_s()  # deface's process is a finished child: counted in RUSAGE_CHILDREN
            row["deface_fps"] = frames / timed(deface_command(deface, clip, work / "deface.mp4"))
            row["deface_cpu_ms"] = (_cpu_s() - cpu) / frames * 1000
            row["deface_ratio"] = row["deface_fps"] / row["plain_fps"]
            row["jobs1_x_deface"] = row["jobs1_fps"] / row["deface_fps"]
            row["jobs2_x_deface"] = row["jobs2_fps"] / row["deface_fps"]
        row["load_avg_1min"] = os.getloadavg()[0]
        log.info("%s repeat %d: %s", clip.name, r + 1, {k: round(v, 3) for k, v in row.items()})
        rows.append(row)
    return {"frames": frames, "runs": rows, "summary": {k: [round(f(row[k] for row in rows), 3) for f in (min, statistics.median, max)] for k in rows[0]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--heights", default="720p,1080p")
    parser.add_argument("--sequential", action="store_true", help="also time one segment on one worker process (no threads)")
    parser.add_argument("--kind", default="blur", choices=("blur", "people", "save-plan", "render"))
    parser.add_argument("--deface", help="also time deface (its executable, in its own venv: see compare_deface.py)")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    keep_freed_memory()  # as the CLI does
    results = {"machine": machine_description(), "seconds": args.seconds, "kind": args.kind, "note": "shared 2-core machine: noisy; compare ratios within a repetition"}
    if args.deface:
        results["deface_version"] = deface_version(args.deface)
    with tempfile.TemporaryDirectory(prefix="faceanon-segments-") as tmp:
        work = Path(tmp)
        for label in args.heights.split(","):
            clip = looped_clip(work / f"clip_{label}.mp4", HEIGHTS[label], args.seconds)
            results[label] = measure(clip, work, args.repeats, args.sequential, args.kind, args.deface)
            print(label, json.dumps(results[label]["summary"]), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
