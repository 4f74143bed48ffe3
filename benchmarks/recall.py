"""Recall benchmark: leaked face-frames of small faces at 720p, 1080p and 4K, faceanon-video against
deface 1.5.0 on the same clips, with throughput of both measured in the same run.

    python benchmarks/recall.py --deface /tmp/deface_venv/bin/deface            # 720p + 1080p, 150 frames
    python benchmarks/recall.py --resolutions 720p 1080p 4k --frames 150 --repeat 3 --json-out r.json
    python benchmarks/recall.py --no-deface --ours "--min-face 12" --ours ""    # compare settings only

Clips: ``testing.recall.recall_clip`` (``synthetic.recall_scenario``): twelve people, faces
24-40 px (two larger), grey-scale, dim, tilted +-35 deg, turning to profile, a motion-blur burst,
entering and leaving through every edge, on bikes.mp4 frames scaled to the resolution, written as
near-lossless H.264. Both tools run as command-line programs from process start to finished file
(blur, defaults), alternating, ``--repeat`` times; fps is frames / median wall time, and the
spread (min/median/max) says how noisy the shared machine was. Leaks are scored on the decoded
outputs by ``testing.recall.score_leaks`` (the ``faceanon-video eval`` coverage test; faces >= 24
px and >= 50 % visible), per size bucket and per kind.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import pytest  # noqa: F401  (only so `pytest benchmarks/` would see the slow marker below)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_deface import DEFACE_FFMPEG, timed  # noqa: E402

from faceanon_video.io.decode import VideoReader
from faceanon_video.testing.recall import recall_clip, score_leaks
from faceanon_video.testing.synthetic import write_clip

log = logging.getLogger("recall")
pytestmark = pytest.mark.slow



def commands(source: Path, work: Path, deface: str | None, ours: list[str]) -> dict[str, tuple[list[str], Path]]:
    out = {}
    for k, extra in enumerate(ours):
        name = f"ours {extra}".strip()
        path = work / f"ours_{k}.mp4"
        out[name] = ([sys.executable, "-m", "faceanon_video.cli", str(source), "-o", str(path), "--mode", "blur", "--overwrite", "-q", *shlex.split(extra)], path)
    if deface:
        path = work / "deface.mp4"
        # deface defaults: CenterFace on the full-resolution frame, --thresh 0.2, --mask-scale 1.3, ellipse, blur.
        out["deface 1.5.0"] = ([deface, str(source), "-o", str(path), "--ffmpeg-config", DEFACE_FFMPEG], path)
    return out


def decoded(path: Path) -> list:
    with VideoReader(path) as reader:
        return [frame.bgr for frame in reader]


def run_resolution(resolution: str, n_frames: int, repeat: int, deface: str | None, ours: list[str], work: Path) -> dict:
    clip = recall_clip(resolution, n_frames)
    source, gt = work / f"recall_{resolution}.mp4", work / f"recall_{resolution}.json"
    write_clip(clip, source, gt)
    originals = decoded(source)  # score against what the tools read, not the pre-encoding frames
    clip.frames = originals
    runs = commands(source, work, deface, ours)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeat):
        for name, (command, _) in runs.items():
            seconds[name].append(timed(command))
            log.info("%s run %d %s: %.1f s", resolution, i + 1, name, seconds[name][-1])
    result = {"resolution": resolution, "size": list(originals[0].shape[1::-1]), "frames": n_frames, "tools": {}}
    for name, (_, path) in runs.items():
        table = score_leaks(clip, decoded(path))
        s = seconds[name]
        result["tools"][name] = {
            "seconds": s,
            "fps_min_median_max": [n_frames / max(s), n_frames / statistics.median(s), n_frames / min(s)],
            **table.summary(),
        }
    if deface:
        base = statistics.median(seconds["deface 1.5.0"])
        for name in runs:
            # Ratio of each repeat (same round, so the same load), then min/median/max of those.
            per_round = [d / o for d, o in zip(seconds["deface 1.5.0"], seconds[name])]
            result["tools"][name]["speed_vs_deface_min_median_max"] = [min(per_round), statistics.median(per_round), max(per_round)]
            result["tools"][name]["speed_vs_deface_of_medians"] = base / statistics.median(seconds[name])
    return result


def print_result(result: dict) -> None:
    print(f"\n{result['resolution']} ({result['size'][0]}x{result['size'][1]}, {result['frames']} frames)")
    for name, r in result["tools"].items():
        fps = "/".join(f"{v:.1f}" for v in r["fps_min_median_max"])
        ratio = r.get("speed_vs_deface_min_median_max")
        ratio_s = f"  x deface {'/'.join(f'{v:.1f}' for v in ratio)}" if ratio else ""
        sizes = " ".join(f"{k}:{a}/{b}" for k, (a, b) in r["by_size"].items())
        kinds = " ".join(f"{k}:{a}/{b}" for k, (a, b) in r["by_kind"].items())
        print(f"  {name:<28} fps {fps}{ratio_s}  leaked {r['leaked']}/{r['face_frames']} (run {r['longest_run']})  [{sizes}]  [{kinds}]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deface", default=shutil.which("deface"), help="the deface executable (in its own venv: it pins opencv-python)")
    parser.add_argument("--no-deface", action="store_true", help="only our settings")
    parser.add_argument("--resolutions", nargs="+", default=["720p", "1080p"], help="720p, 1080p, 4k, 480p")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ours", action="append", help="extra faceanon-video options, one configuration each (default: the defaults)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    deface = None if args.no_deface else args.deface
    if not args.no_deface and (not deface or not Path(deface).exists()):
        parser.error("deface not found: pip install deface==1.5.0 onnxruntime in a venv and pass --deface PATH (or --no-deface)")
    results = []
    with tempfile.TemporaryDirectory(prefix="faceanon-recall-") as tmp:
        for resolution in args.resolutions:
            results.append(run_resolution(resolution, args.frames, args.repeat, deface, args.ours or [""], Path(tmp)))
            print_result(results[-1])
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
