"""How throughput scales with resolution, number of faces and detection threads.

    python benchmarks/scaling.py [--modes blur,mosaic,solid] [--frames 120] [--json-out FILE]

Three tables, each from ``faceanon_video.eval.bench.run_bench`` (the real threaded file pipeline,
encoding included, after model warm-up):

1. end-to-end fps per mode at 480p/720p/1080p (the test clip with several real faces, upscaled);
2. fps and per-stage ms/frame against the number of faces in view (synthetic 640x272 clips, blur);
3. fps against detection threads (``--workers``) at 720p, blur.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clips import HEIGHTS, faces_clip, resolution_clip  # noqa: E402

from faceanon_video.config import RunConfig  # noqa: E402
from faceanon_video.memory import keep_freed_memory  # noqa: E402
from faceanon_video.eval.bench import machine_description, run_bench  # noqa: E402

log = logging.getLogger("scaling")


def by_resolution(work_dir: Path, modes: list[str], frames: int, heights=HEIGHTS) -> list[dict]:
    rows = []
    for label, height in heights.items():
        clip = resolution_clip(work_dir, height, max_frames=frames)
        for mode in modes:
            result = run_bench(clip, RunConfig(mode=mode))
            rows.append({"resolution": label, "mode": mode, **_summary(result)})
            log.info("%s %s: %.1f fps", label, mode, result.fps)
    return rows


def by_faces(work_dir: Path, counts: list[int], frames: int, mode: str = "blur") -> list[dict]:
    rows = []
    for n in counts:
        video, _ = faces_clip(work_dir, n, n_frames=frames)
        result = run_bench(video, RunConfig(mode=mode))
        rows.append({"faces_in_view": n, "mode": mode, **_summary(result)})
        log.info("%d faces: %.1f fps", n, result.fps)
    return rows


def by_workers(work_dir: Path, workers: list[int], frames: int, height: int = 720, mode: str = "blur") -> list[dict]:
    clip = resolution_clip(work_dir, height, max_frames=frames)
    rows = []
    for n in workers:
        result = run_bench(clip, RunConfig(mode=mode, workers=n))
        rows.append({"workers": n, "resolution": f"{height}p", "mode": mode, **_summary(result)})
        log.info("%d workers: %.1f fps", n, result.fps)
    return rows


def _summary(result) -> dict:
    return {
        "size": f"{result.width}x{result.height}",
        "frames": result.frames,
        "fps": round(result.fps, 2),
        "io_ceiling_fps": round(result.io_ceiling_fps, 2) if result.io_ceiling_fps else None,
        "plain_pyav_fps": round(result.plain_pyav_fps, 2) if result.plain_pyav_fps else None,
        "latency_p50_ms": round(result.latency_ms["p50"], 1),
        "latency_p99_ms": round(result.latency_ms["p99"], 1),
        "peak_rss_mb": round(result.peak_rss_mb),
        "stage_ms": {name: round(stage.mean_ms, 2) for name, stage in result.stages.items()},
    }


def print_table(rows: list[dict], keys: list[str]) -> None:
    stages = ["decode", "detect", "track", "anonymize", "encode"]
    header = keys + ["fps", "p50 ms", "p99 ms", "MB"] + [f"{s} ms" for s in stages]
    print(" | ".join(header))
    for row in rows:
        cells = [str(row[k]) for k in keys] + [f"{row['fps']:.1f}", f"{row['latency_p50_ms']:.0f}", f"{row['latency_p99_ms']:.0f}", str(row["peak_rss_mb"])]
        cells += [f"{row['stage_ms'].get(s, float('nan')):.1f}" for s in stages]
        print(" | ".join(cells))
    print()


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # as the faceanon-video command does (faceanon_video.memory)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="blur,mosaic,solid", help="modes for the resolution table")
    parser.add_argument("--frames", type=int, default=120, help="frames per run")
    parser.add_argument("--faces", default="0,1,4,16", help="faces-in-view counts")
    parser.add_argument("--workers", default="1,2,3", help="detection thread counts")
    parser.add_argument("--json-out", type=Path, help="also write every number as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="faceanon-scaling-") as tmp:
        work = Path(tmp)
        results = {
            "machine": machine_description(),
            "resolution": by_resolution(work, args.modes.split(","), args.frames),
            "faces": by_faces(work, [int(n) for n in args.faces.split(",")], args.frames),
            "workers": by_workers(work, [int(n) for n in args.workers.split(",")], args.frames),
        }
    print(f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, GPU: {results['machine']['gpu'] or 'none'}\n")
    print_table(results["resolution"], ["resolution", "size", "mode"])
    print_table(results["faces"], ["faces_in_view", "mode"])
    print_table(results["workers"], ["workers", "resolution"])
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
