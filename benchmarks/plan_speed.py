"""Speed of the plan path against a normal run, on the same clip, interleaved in each round.

    python benchmarks/plan_speed.py [--runs 3] [--height 720] [--mode blur]

Per round, on tests/data/short_hamilton_clip.mp4 scaled to ``--height`` (all 275 frames): a normal
run, ``--save-plan`` (analysis: decode, detect, track, embed a few faces per track, link people, hash
the input), and a ``--plan`` render of that plan (decode, anonymize, encode; no detection). Prints
min / median / max fps of each and the ratios analysis/normal and render/normal measured within each
round (the machine is shared: ratios within a round say more than fps across rounds).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clips  # noqa: E402

from faceanon_video.config import RunConfig  # noqa: E402
from faceanon_video.pipeline import process_file  # noqa: E402
from faceanon_video.plan import Plan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--mode", default="blur")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, list[float]] = {"normal": [], "analysis": [], "render": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = clips.resolution_clip(tmp, args.height)
        base = dict(mode=args.mode, progress=False, overwrite=True)
        for _ in range(args.runs):
            frames = {}
            for name, config, destination in (
                ("normal", RunConfig(**base), tmp / "normal.mp4"),
                ("analysis", RunConfig(**base, save_plan=str(tmp / "p.json")), tmp / "p.json"),
                ("render", RunConfig(**base, plan=str(tmp / "p.json")), tmp / "render.mp4"),
            ):
                start = time.perf_counter()
                summary = process_file(clip, destination, config)  # models load inside: counted, as a user waits for them
                seconds = time.perf_counter() - start
                frames[name] = summary.frames
                results[name].append(summary.frames / seconds)
            assert frames["normal"] == frames["analysis"] == frames["render"] == Plan.load(tmp / "p.json").input.frame_count
    for name, fps in results.items():
        print(f"{name:9s} fps min/median/max {np.min(fps):6.1f} {np.median(fps):6.1f} {np.max(fps):6.1f}")
    for name in ("analysis", "render"):
        ratio = np.array(results[name]) / np.array(results["normal"])
        print(f"{name}/normal ratio min/median/max {ratio.min():.2f} {np.median(ratio):.2f} {ratio.max():.2f}")


if __name__ == "__main__":
    main()
