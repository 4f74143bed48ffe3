"""What ``--people`` and ``--spare`` cost at 720p blur, against the same run without them.

    python benchmarks/people_cost.py [--rounds 3] [--frames 120] [--code DIR ...] [--skip-spare]

Whole CLI runs on tests/data/short_hamilton_clip.mp4 scaled to 720p (``--frames`` frames), blur,
in ``--rounds`` interleaved rounds so every variant shares the machine's load; prints fps min /
median / max per variant and the slowdown of each median against "none" of the same code, twice:
over the whole command (start-up and model loading included, as a user sees it) and over the
video's own run (the report's ``run_seconds``: decode to the last byte written, people linked and
stored included; the throughput a long video gets), and per CPU second of the whole command (user +
system: what the variant costs on cores that are saturated anyway, and the least noisy of the three
on a shared machine). ``--code`` runs the variants with other checkouts too
(e.g. ``--code /work/main`` to compare before and after a change in one run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clips  # noqa: E402

MIRANDA = clips.DATA / "images" / "identities" / "lin-manuel-miranda.png"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--code", nargs="*", default=[], help="other checkouts to run as well")
    parser.add_argument("--skip-spare", action="store_true", help="run none and --people only (more rounds in the same time)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = clips.resolution_clip(work, 720, max_frames=args.frames)
        key = work / "key"
        key.write_text(secrets.token_hex(32))
        variants = {
            "none": [],
            "--people": ["--key-file", str(key), "--people", str(work / "out.people")],
            "--spare": ["--spare", str(MIRANDA)],
        }
        if args.skip_spare:
            variants.pop("--spare")
        codes = [str(HERE.parent)] + [str(Path(c).resolve()) for c in args.code]
        fps: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for code in codes:
                for name, extra in variants.items():
                    out = work / "out.mp4"
                    report = work / "report.json"
                    command = [sys.executable, "-m", "faceanon_video.cli", str(clip), "-o", str(out), "--mode", "blur", "--overwrite", "-q", "--report", str(report), *extra]
                    start, cpu_start = time.perf_counter(), _children_cpu_s()
                    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": code}, cwd=work)
                    seconds, cpu_s = time.perf_counter() - start, _children_cpu_s() - cpu_start
                    result = json.loads(report.read_text())
                    frames = result["frames"]["in"]  # the clip may be shorter than --frames
                    fps.setdefault((code, name, "command"), []).append(frames / seconds)
                    fps.setdefault((code, name, "run"), []).append(frames / result["run_seconds"])
                    fps.setdefault((code, name, "cpu"), []).append(frames / cpu_s)  # frames per CPU second
    print(f"720p blur, {frames} frames, {args.rounds} interleaved rounds, {os.cpu_count()} cores, load average {os.getloadavg()}; fps min / median / max")
    for span in ("command", "run", "cpu"):
        for code in codes:
            base = float(np.median(fps[(code, "none", span)]))
            for name in variants:
                values = fps[(code, name, span)]
                med = float(np.median(values))
                print(f"{span:8s} {code:30s} {name:9s} {min(values):5.1f} / {med:5.1f} / {max(values):5.1f}   {100 * (1 - med / base):+5.1f} % slower")


if __name__ == "__main__":
    main()
