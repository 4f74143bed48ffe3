"""faceanon-video against deface 1.5.0 on the same clips, in the same run.

    python benchmarks/compare_deface.py --deface /path/to/venv/bin/deface [--repeat 2] [--json-out FILE]

Speed: both command-line tools anonymize the same clip (tests/data/short_hamilton_clip.mp4 by
default) with blur, from process start to finished file, alternating runs so load changes hit both
alike; the result is a ratio of median wall times (absolute times depend on the machine). deface
runs CenterFace; faceanon-video is run with its default YuNet and with ``--detector centerface``
(same model as deface), so the ratio separates the detector from the rest of the pipeline.

Quality: both tools anonymize a synthetic clip with exact ground truth (``testing.synthetic``), and
``faceanon_video.eval`` scores both outputs the same way: leaked faces, background damage,
re-identification.

deface pins opencv-python, which would replace this environment's opencv-python-headless, so
install it in its own venv and point ``--deface`` at it::

    python -m venv /tmp/deface-venv && /tmp/deface-venv/bin/pip install deface==1.5.0 onnxruntime
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clips import HAMILTON  # noqa: E402

from faceanon_video.errors import ConfigError  # noqa: E402
from faceanon_video.eval.annotations import load_annotations  # noqa: E402
from faceanon_video.eval.evaluate import EvalSettings, evaluate_outputs  # noqa: E402
from faceanon_video.testing.synthetic import make_synthetic_clip  # noqa: E402

log = logging.getLogger("compare_deface")

#: imageio pads frames to a multiple of 16 px unless told not to; that would rescale deface's output.
DEFACE_FFMPEG = json.dumps({"codec": "libx264", "macro_block_size": 1})


def deface_command(deface: str, source: Path, output: Path) -> list[str]:
    # deface defaults: CenterFace, --thresh 0.2, --mask-scale 1.3, ellipse, blur.
    return [deface, str(source), "-o", str(output), "--ffmpeg-config", DEFACE_FFMPEG]


def ours_command(source: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "faceanon_video.cli", str(source), "-o", str(output), "--mode", "blur", "--overwrite", "-q", *extra]


def deface_version(deface: str) -> str:
    return subprocess.run([deface, "--version"], capture_output=True, text=True).stdout.strip()


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])}... failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def compare_speed(deface: str, clip: Path, work: Path, repeat: int) -> dict:
    outputs = {name: work / f"{name}.mp4" for name in ("deface", "faceanon_yunet", "faceanon_centerface")}
    commands = {
        "deface": deface_command(deface, clip, outputs["deface"]),
        "faceanon_yunet": ours_command(clip, outputs["faceanon_yunet"]),
        "faceanon_centerface": ours_command(clip, outputs["faceanon_centerface"], "--detector", "centerface"),
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(repeat):
        for name, command in commands.items():
            seconds[name].append(timed(command))
            log.info("run %d %s: %.1f s", i + 1, name, seconds[name][-1])
    median = {name: statistics.median(v) for name, v in seconds.items()}
    frames = {name: frame_count(path) for name, path in outputs.items()}
    from faceanon_video.io.decode import VideoReader

    with VideoReader(clip) as reader:
        size = f"{reader.info.width}x{reader.info.height}"
    return {
        "clip": str(clip),
        "size": size,
        "source_frames": frame_count(clip),
        "output_frames": frames,
        "seconds": seconds,
        "median_s": median,
        # > 1: faceanon-video finishes the clip that many times sooner than deface.
        "speedup_yunet": median["deface"] / median["faceanon_yunet"],
        "speedup_centerface": median["deface"] / median["faceanon_centerface"],
    }


def compare_quality(deface: str, work: Path, n_frames: int, identity: tuple[str, ...]) -> dict:
    video, gt = make_synthetic_clip(work / "synthetic", seed=0, n_frames=n_frames)
    annotations = load_annotations(gt)
    settings = EvalSettings(identity_models=identity, identity_every=3)
    cache: dict = {}
    outputs = {
        "deface": (deface_command(deface, video, work / "synthetic_deface.mp4"), work / "synthetic_deface.mp4"),
        "faceanon": (ours_command(video, work / "synthetic_ours.mp4"), work / "synthetic_ours.mp4"),
    }
    reports = {}
    for name, (command, output) in outputs.items():
        timed(command)
        report = evaluate_outputs(annotations, output, settings, source_name=str(gt), anonymizer_name=name, embedding_cache=cache)
        reports[name] = report.to_dict()
        log.info("%s: %s leaked", name, f"{report.leaked}/{report.faces}")
    return {"clip": f"synthetic seed 0, {n_frames} frames, 640x272", "reports": reports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deface", default=shutil.which("deface"), help="the deface executable (default: deface on PATH)")
    parser.add_argument("--clip", type=Path, default=HAMILTON, help="clip for the speed comparison")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each tool (median reported)")
    parser.add_argument("--quality-frames", type=int, default=90, help="frames of the synthetic clip for the quality comparison (0: skip)")
    parser.add_argument("--identity", default="sface,dlib", help="identity models for re-identification ('none' to skip)")
    parser.add_argument("--json-out", type=Path, help="also write every number as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if not args.deface or not Path(args.deface).exists():
        raise ConfigError("deface not found: install it in its own venv (see this script's docstring) and pass --deface PATH")
    version = deface_version(args.deface)
    identity = () if args.identity == "none" else tuple(args.identity.split(","))
    with tempfile.TemporaryDirectory(prefix="faceanon-vs-deface-") as tmp:
        work = Path(tmp)
        results = {"deface_version": version, "speed": compare_speed(args.deface, args.clip, work, args.repeat)}
        if args.quality_frames:
            results["quality"] = compare_quality(args.deface, work, args.quality_frames, identity)
    speed = results["speed"]
    print(f"{version} vs faceanon-video on {Path(speed['clip']).name} ({speed['source_frames']} frames), median of {args.repeat}:")
    for name, seconds in speed["median_s"].items():
        print(f"  {name:<20} {seconds:6.1f} s  ({speed['output_frames'][name]} frames written)")
    print(f"  faceanon-video is {speed['speedup_yunet']:.1f}x faster (YuNet), {speed['speedup_centerface']:.1f}x (same CenterFace model)")
    for name, report in results.get("quality", {}).get("reports", {}).items():
        reid = ", ".join(f"{m} {_pct(r['rate'])}" for m, r in report["reidentification"].items())
        print(f"  {name:<9} leaked {report['leaked']}/{report['faces']} ({_pct(report['leak_rate'])}), "
              f"background damage {_pct(report['background_damaged_fraction'])}, re-identified: {reid or 'n/a'}")  # fmt: skip
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
