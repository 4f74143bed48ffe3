"""``faceanon-video bench``: how fast a run is on this machine, stage by stage.

    faceanon-video bench [INPUT] [--frames N] [--mode ...] [--detector ...] [--json] [--plot latency.png]

Runs the real threaded pipeline on INPUT (default: the sample clip in tests/data) into a temporary
file and prints per-stage time per frame (decode, detect, track, anonymize, encode), end-to-end fps,
latency percentiles, peak memory and the CPU/GPU. See ``faceanon_video.eval.bench``.
"""

from __future__ import annotations

import argparse
import json
import sys

from faceanon_video.errors import InputError
from faceanon_video.eval.bench import SAMPLE_CLIPS, plot_latency, run_bench, sample_clip
from faceanon_video.options import add_pipeline_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", metavar="INPUT", help="a video file (default: the bundled sample clip, 640x360, 275 frames)")
    parser.add_argument("--frames", type=int, metavar="N", default=argparse.SUPPRESS, help="measure only the first N frames (default: all)")
    parser.add_argument("--warmup", type=int, default=5, metavar="N", help="frames processed before measuring (first inferences are slow)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    parser.add_argument("--plot", metavar="PNG", default=argparse.SUPPRESS, help="also save a plot of per-frame latency (needs matplotlib)")
    add_pipeline_arguments(parser)


def main(args: argparse.Namespace) -> int:
    path = args.input or sample_clip()
    if path is None:
        raise InputError(f"no sample clip installed (looked for {SAMPLE_CLIPS[0].name}); give a video: faceanon-video bench INPUT")
    result = run_bench(path, config_from_args(args, progress=False), max_frames=getattr(args, "frames", None), warmup_frames=args.warmup)
    if getattr(args, "plot", None):
        plot_latency(result, args.plot)
    sys.stdout.write((json.dumps(result.to_dict(), indent=2) if args.json else result.table()) + "\n")
    return 0
