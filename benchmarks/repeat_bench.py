"""``faceanon-video bench`` repeated on the 720p clip, as the README's target table reports it.

    python benchmarks/repeat_bench.py [--runs 10] [--height 720] [--mode blur] [--json out.json]
    python benchmarks/repeat_bench.py --runs 5 --detect-every 2 3 4 8 --mode blur none

The development machine is shared (CPU steal varies from run to run), so one run says little: this
runs the real pipeline ``--runs`` times on tests/data/short_hamilton_clip.mp4 scaled to
``--height`` (all 275 frames) and prints the spread (min / median / max) of the end-to-end fps and
of its ratio to both I/O ceilings, each measured within the same run.

Several ``--detect-every`` values and ``--mode``s are run in turn within each round, so they share
the machine's load: the way to see how much of the gap to the I/O ceiling full-frame detection
explains (at a large N it costs almost nothing) and how much tracking and anonymization do.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clips  # noqa: E402

from faceanon_video.config import RunConfig  # noqa: E402
from faceanon_video.eval.bench import machine_description, run_bench  # noqa: E402
from faceanon_video.memory import keep_freed_memory  # noqa: E402


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), float(np.median(values)), max(values)))


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # as the faceanon-video command does (faceanon_video.memory)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--mode", nargs="+", default=["blur"], help="anonymization modes to run (default: blur)")
    parser.add_argument("--detect-every", type=int, nargs="+", default=[None], metavar="N", help="full-frame detection every N-th frame (default: the files default, 2)")
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    settings = [(mode, n) for mode in args.mode for n in args.detect_every]
    rows: dict[tuple, list[dict]] = {setting: [] for setting in settings}
    with tempfile.TemporaryDirectory(prefix="faceanon-repeat-") as tmp:
        clip = clips.resolution_clip(Path(tmp), args.height)
        for run in range(args.runs):
            for mode, every in settings:
                result = run_bench(clip, RunConfig(mode=mode, detect_every=every))
                rows[mode, every].append({
                    "fps": result.fps,
                    "io_ceiling_fps": result.io_ceiling_fps,
                    "plain_pyav_fps": result.plain_pyav_fps,
                    "frames": result.frames,
                    "cpu_ms_per_frame": result.cpu_ms_per_frame,
                    "cores_busy": result.cores_busy,
                })
                logging.info("run %d, --mode %s --detect-every %s: %.1f fps, I/O ceiling %.1f, plain PyAV %.1f", run + 1, mode, every or "default", result.fps, result.io_ceiling_fps, result.plain_pyav_fps)
    print(f"{args.runs} runs at {args.height}p; {machine_description().get('cpu')}")
    for (mode, every), runs in rows.items():
        fps = [r["fps"] for r in runs]
        print(f"--mode {mode} --detect-every {every or 'default (2)'}, {runs[0]['frames']} frames")
        print(f"  end-to-end fps        min / median / max: {spread(fps)}  ({sum(f >= 60 for f in fps)} of {len(fps)} runs >= 60)")
        print(f"  I/O ceiling fps       min / median / max: {spread([r['io_ceiling_fps'] for r in runs])}")
        print(f"    ours / it           min / median / max: {spread([r['fps'] / r['io_ceiling_fps'] * 100 for r in runs], '{:.0f} %')}")
        print(f"  plain PyAV loop fps   min / median / max: {spread([r['plain_pyav_fps'] for r in runs])}")
        print(f"    ours / it           min / median / max: {spread([r['fps'] / r['plain_pyav_fps'] * 100 for r in runs], '{:.0f} %')}")
        if all(r["cpu_ms_per_frame"] for r in runs):  # Linux: CPU per frame by thread (see faceanon_video.eval.bench)
            for group in runs[0]["cpu_ms_per_frame"]:
                print(f"  CPU ms/frame, {group:<9} min / median / max: {spread([r['cpu_ms_per_frame'][group] for r in runs], '{:.2f}')}")
            print(f"  cores busy            min / median / max: {spread([r['cores_busy'] for r in runs], '{:.2f}')}")
    if args.json:
        runs_json = [{"mode": mode, "detect_every": every, "runs": runs} for (mode, every), runs in rows.items()]
        args.json.write_text(json.dumps({"machine": machine_description(), "height": args.height, "settings": runs_json}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
