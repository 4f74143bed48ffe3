"""Tracking benchmark: leaked face-frames, id switches and throughput with tracking off / on /
detect-every-N, on synthetic multi-face clips (exact ground truth) and on real clips (pseudo ground
truth), plus the cost of one tracker update with 10 faces.

    python benchmarks/tracking.py                      # 3 synthetic seeds + bikes.mp4, ~2-3 min on 2 cores
    python benchmarks/tracking.py --seeds 0 --real     # quicker
    python benchmarks/tracking.py --real tests/data/short_hamilton_clip.mp4 --json out.json

What is measured
----------------
* Timing: all configurations run interleaved, frame by frame, so they share whatever load other
  processes put on the machine (``run_configs``); ``--repeat`` passes are summed. CPU ms/frame is
  this process's CPU time (all threads) per frame; on a VM it also counts time stolen by other
  guests, so compare configurations within one run, not across runs.
* Frames go through ``pipeline.FrameProcessor.finish_held`` (the real detect -> track -> backfill code
  of the file pipeline) one at a time with ``--mode none``, so fps is detection + tracking compute per frame on one thread,
  without decode/encode/anonymize (identical across configurations) and without the pipeline's
  detection thread pool (which overlaps frames and would blur the comparison).
* Leaks: a ground-truth face whose visible oval is less than 90 % inside the area the anonymizer
  would paint (``testing.synthetic.score_tracks``, ellipse masks at the default mask scale 1.3).
  Synthetic: faces of at least 24 px are the target; smaller ones are reported separately.
  Real clips have no hand-made boxes, so their ground truth is every face CenterFace (a second,
  independent, ~10x slower detector) finds at score >= 0.5 on every frame: a leak there is a
  face CenterFace sees that the configuration did not cover. No ids, so no id switches.
* Id switches: CLEAR-MOT (see ``score_tracks``); re-entering the frame counts as a switch.

Results (2-core VM shared with other jobs, YuNet on onnxruntime, ``--seeds 0 1 2 --repeat 1``)
----------------------------------------------------------------------------------------------
Compute-only fps (detect + track + backfill, one thread, no decode/encode/blur), all configurations
interleaved frame by frame:

==========================  =========================  ===========  ==========  ==============  ================
configuration               synthetic, 3 x 90 frames   id switches  synth fps   bikes fps       boxes off faces
                            leaked face-frames >=24px  (synthetic)              (leaked / 57)   (synthetic)
==========================  =========================  ===========  ==========  ==============  ================
no tracking                 108 / 1330 (8.1 %)         n/a          94.0        96.4 (2)        0
tracking, detect every 1    0 / 1330                   6            86.7        90.2 (1)        62
tracking, detect every 2    0 / 1330                   6            152.2       155.6 (1)       73
tracking, detect every 3    0 / 1330                   8            202.9       203.1 (1)       101
tracking, detect every 5    0 / 1330                   12           257.4       264.6 (2)       248
==========================  =========================  ===========  ==========  ==============  ================

* Small faces (20-23 px) on the synthetic clips: 11 / 132 leaked without tracking, 0 with it.
* Id switches with tracking: per clip, one for the face that leaves and re-enters the frame (a new
  face to the tracker) and one for the face that sprints while motion-blurred; none at the crossing.
* With ``--detect-every`` > 1, the frames between full passes are held back and settled by
  ``track.backfill`` (interpolation between passes, faces found late followed backwards), so no face
  that comes into view between two passes is left uncovered; the cost is more background painted
  around predicted boxes. The one bikes.mp4 leak at every N is a defocused face no detector here finds.
* ``ByteTracker.update`` with 10 faces: 0.5-0.9 ms CPU median (varies with the machine's load).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceanon_video.config import RunConfig  # noqa: E402
from faceanon_video.pipeline import FrameProcessor  # noqa: E402
from faceanon_video.testing.synthetic import SyntheticClip, render_clip, score_tracks  # noqa: E402
from faceanon_video.track.bytetrack import ByteTracker  # noqa: E402
from faceanon_video.types import Detections, Frame  # noqa: E402

log = logging.getLogger("benchmarks.tracking")

CONFIGS = {
    "no tracking": dict(track=False),
    "tracking, detect every 1": dict(track=True, detect_every=1),
    "tracking, detect every 2": dict(track=True, detect_every=2),
    "tracking, detect every 3": dict(track=True, detect_every=3),
    "tracking, detect every 5": dict(track=True, detect_every=5),
}


class Recorder:
    """Stands in for the ``--save-tracks`` writer to keep every frame's tracker output."""

    def __init__(self) -> None:
        self.outputs: list[Detections] = []

    def write(self, frame_index: int, pts_s: float | None, faces: Detections) -> None:
        self.outputs.append(faces)

    def close(self) -> None:
        pass


@dataclass
class Result:
    clip: str
    config: str
    frames: int
    fps: float
    cpu_ms: float
    track_ms: float
    score: dict

    def row(self) -> str:
        s = self.score
        small = f"{s['small_leaked']}/{s['small_face_frames']}" if s["small_face_frames"] else "-"
        switches = s["id_switches"] if s["id_switches"] is not None else "-"
        return (
            f"| {self.clip} | {self.config} | {s['leaked']}/{s['face_frames']} ({100 * s['leak_rate']:.1f} %) | {small} "
            f"| {switches} | {s['false_positive_boxes']} | {self.fps:.1f} | {self.cpu_ms:.1f} | {self.track_ms:.2f} |"
        )


def run_configs(frames: list[np.ndarray], configs: dict[str, dict], key_file: Path, passes: int) -> dict[str, tuple]:
    """Run every configuration over the clip, interleaved frame by frame (rotating the order), so
    that all of them see the same load from other processes; a sequential A-then-B run on a shared
    machine mostly measures the neighbours. Returns, per configuration: tracker outputs per frame,
    frames/s, CPU ms/frame (all threads of this process) and mean tracker ms/frame."""
    processors = {}
    for name, overrides in configs.items():
        processors[name] = FrameProcessor(RunConfig(mode="none", progress=False, key_file=str(key_file), **overrides))
    wall = dict.fromkeys(configs, 0.0)
    cpu = dict.fromkeys(configs, 0.0)
    outputs = {}
    names = list(configs)
    for _ in range(max(1, passes)):
        for processor in processors.values():
            processor.reset()
            processor.track_writer = Recorder()
        for i, bgr in enumerate(frames):
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                start, cpu_start = time.perf_counter(), time.process_time()
                frame = Frame(bgr=bgr, index=i)
                processors[name].finish_held(frame, processors[name].detect(frame))  # as files are processed
                wall[name] += time.perf_counter() - start
                cpu[name] += time.process_time() - cpu_start
        for processor in processors.values():
            processor.flush()
        outputs = {name: p.track_writer.outputs for name, p in processors.items()}  # same in every pass
    n = len(frames) * max(1, passes)
    return {
        name: (outputs[name], n / wall[name], 1000 * cpu[name] / n, 1000 * float(np.mean(p.timings["track"])))
        for name, p in processors.items()
    }


def real_clip(path: Path, max_frames: int | None, scale: float = 1.0) -> SyntheticClip:
    """A real clip with CenterFace's faces (score >= 0.5, found at the native size) as pseudo ground
    truth; ``scale`` > 1 upscales frames and boxes to stand in for higher-resolution footage."""
    import cv2

    from faceanon_video.detect.centerface import CenterFaceDetector

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    frames = frames[:max_frames] if max_frames else frames
    reference = CenterFaceDetector(threshold=0.5, min_face_px=0)
    gt_frames = []
    for i, bgr in enumerate(frames):
        found = reference.detect(bgr)
        faces = [
            {"id": f"{i}.{j}", "xyxy": (scale * xyxy).tolist(), "size_px": float(scale * (xyxy[3] - xyxy[1])), "conditions": [], "ignore": False}
            for j, xyxy in enumerate(found.xyxy)
        ]
        gt_frames.append({"index": i, "faces": faces})
    if scale != 1.0:
        frames = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) for f in frames]
    return SyntheticClip(frames=frames, gt={"frames": gt_frames})


def tracker_cost(n_faces: int = 10, n_frames: int = 500, seed: int = 0) -> dict:
    """ms per ``ByteTracker.update`` with ``n_faces`` moving faces, 10 % random misses and scores
    spread over both association stages (literal arrays: no detector in the loop)."""
    rng = np.random.default_rng(seed)
    frame = Frame(bgr=np.zeros((720, 1280, 3), np.uint8), index=0)
    base = np.array([[60 + 120 * i, 150 + 150 * (i % 3), 120 + 120 * i, 225 + 150 * (i % 3)] for i in range(n_faces)], np.float32)
    detections = []
    for f in range(n_frames):
        xyxy = base + np.array([40, 20, 40, 20]) * np.sin(f / 25 + np.arange(n_faces))[:, None] + rng.normal(0, 1.5, (n_faces, 4))
        centre = (xyxy[:, None, :2] + xyxy[:, None, 2:]) / 2
        d = Detections(xyxy=xyxy, score=rng.uniform(0.3, 0.95, n_faces), landmarks=np.repeat(centre, 5, axis=1))
        detections.append(d[rng.random(n_faces) > 0.1])
    tracker = ByteTracker(high_thresh=0.5, low_thresh=0.25, key=b"benchmark-key-0123456789")
    wall, cpu = [], []
    for d in detections:
        start, cpu_start = time.perf_counter(), time.thread_time()
        out = tracker.update(d, frame)
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - cpu_start)  # this thread only: robust to a busy machine
    wall_ms, cpu_ms = 1000 * np.array(wall[20:]), 1000 * np.array(cpu[20:])  # skip warm-up
    return {
        "faces": n_faces,
        "live_tracks_at_end": len(out),
        "cpu_median_ms": round(float(np.median(cpu_ms)), 3),
        "wall_median_ms": round(float(np.median(wall_ms)), 3),
        "wall_p95_ms": round(float(np.percentile(wall_ms, 95)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="synthetic clips to render (one per seed)")
    parser.add_argument("--frames", type=int, default=90, help="frames per synthetic clip")
    parser.add_argument("--real", nargs="*", default=[str(ROOT / "tests" / "data" / "bikes.mp4")], help="real clips (pseudo ground truth from CenterFace)")
    parser.add_argument("--real-frames", type=int, default=None, help="only the first N frames of each real clip")
    parser.add_argument("--real-scale", type=float, nargs="*", default=[1.0], help="also run each real clip upscaled by these factors (2 = bikes at 1280x544), where re-detecting only around tracks saves more")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeat", type=int, default=2, help="passes over each clip (timings are summed over them)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    key_file = Path(tempfile.mkdtemp()) / "key"
    key_file.write_bytes(b"benchmark-key-0123456789")

    clips: list[tuple[str, SyntheticClip, bool]] = []
    for seed in args.seeds:
        clips.append((f"synthetic seed {seed}", render_clip(args.frames, seed=seed), True))
    for path in args.real or []:
        for scale in args.real_scale:
            name = Path(path).name + ("" if scale == 1.0 else f" x{scale:g}")
            clips.append((name, real_clip(Path(path), args.real_frames, scale), False))

    results: list[Result] = []
    for name, clip, synthetic in clips:
        runs = run_configs(clip.frames, {c: CONFIGS[c] for c in args.configs}, key_file, args.repeat)
        for config_name in args.configs:
            outputs, fps, cpu_ms, track_ms = runs[config_name]
            score = score_tracks(clip, outputs, min_face_px=24 if synthetic else 0).summary()
            if not synthetic or not CONFIGS[config_name]["track"]:
                score["id_switches"] = None  # no ground-truth ids / ids are per detection, not per face
            results.append(Result(name, config_name, len(clip.frames), fps, cpu_ms, track_ms, score))
            print(results[-1].row(), flush=True)

    print("\n| clip | configuration | leaked face-frames (>= 24 px) | leaked < 24 px | id switches | false-positive boxes | fps (wall) | CPU ms/frame | tracker ms/frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(r.row())
    # Totals over the synthetic clips, per configuration.
    for config_name in args.configs:
        rows = [r for r in results if r.config == config_name and r.clip.startswith("synthetic")]
        if rows:
            total = {k: sum(r.score[k] or 0 for r in rows) for k in ("leaked", "face_frames", "small_leaked", "small_face_frames", "id_switches", "false_positive_boxes")}
            print(f"synthetic total, {config_name}: leaked {total['leaked']}/{total['face_frames']}, small {total['small_leaked']}/{total['small_face_frames']}, "
                  f"id switches {total['id_switches']}, FP boxes {total['false_positive_boxes']}, "
                  f"{np.mean([r.fps for r in rows]):.1f} fps, {np.mean([r.cpu_ms for r in rows]):.1f} CPU ms/frame")
    cost = tracker_cost()
    print(
        f"\nByteTracker.update with {cost['faces']} faces: median {cost['cpu_median_ms']} ms CPU, "
        f"{cost['wall_median_ms']} ms wall (p95 {cost['wall_p95_ms']} ms; wall time includes other processes)"
    )
    if args.json:
        doc = {"results": [asdict(r) for r in results], "tracker_cost": cost}
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
