"""GPU benchmark for a GPU owner: fps per face count, per-stage split, per-graph latency, fp16 error.

    python benchmarks/engines_gpu.py --model-dir DIR --engine-dir engines/NAME \
        [--backends tensorrt,onnx,torch] [--faces 1,2,4] [--steps 4] [--json results.json]

For each backend: the anonymizer's generate() on ``F`` random face crops (``--steps`` steps,
guidance as configured) timed whole -> frames/s and faces/s, split by backend method
(CLIP, VAE encode, ReferenceNets, UNet, VAE decode); per-graph latency at the batch each graph
sees; and, with ``--model-dir``, each graph's largest error relative to PyTorch float32 (the
number to check for fp16 engines). Needs a CUDA GPU; without one it stops and measures nothing.
Build the engines first (``faceanon-video export ... --fp16``), or the first run includes the
TensorRT build.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from faceanon_video.engines.measure import (
    StageTimer,
    graph_latency_ms,
    graph_outputs,
    markdown_table,
    relative_errors,
    time_frames,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="PyTorch models: the torch backend and the fp32 reference")
    parser.add_argument("--engine-dir", type=Path, help="a `faceanon-video export` folder (onnx, tensorrt)")
    parser.add_argument("--backends", default="tensorrt,onnx,torch", help="comma-separated, of tensorrt,onnx,torch")
    parser.add_argument("--faces", default="1,2,4", help="faces per frame to time, comma-separated")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--guidance-scale", type=float, default=4.0, help="> 1 doubles the UNet batch")
    parser.add_argument("--scheduler", default="dpmsolver++")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO)
    if not torch.cuda.is_available():
        print("engines_gpu.py needs a CUDA GPU and torch sees none; nothing was measured.", file=sys.stderr)
        return 2
    from faceanon_video.anonymize.diffusion.config import DiffusionSettings
    from faceanon_video.engines.backends import load_backend
    from faceanon_video.engines.export import probe_specs

    faces_list = [int(f) for f in args.faces.split(",")]
    settings = DiffusionSettings(steps=args.steps, guidance_scale=args.guidance_scale, scheduler=args.scheduler)
    results = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "settings": {"steps": args.steps, "guidance_scale": args.guidance_scale, "scheduler": args.scheduler},
        "backends": {},
    }
    reference_outputs = None
    if args.model_dir:  # PyTorch fp32 outputs, computed first so the fp32 models leave the GPU before timing
        reference = load_backend("torch", model_dir=args.model_dir, device="cuda", dtype=torch.float32)
        reference_specs = probe_specs(reference)
        reference_outputs = graph_outputs(reference, reference_specs)
        del reference
        torch.cuda.empty_cache()
    for name in args.backends.split(","):
        kwargs = {"model_dir": args.model_dir} if name == "torch" else {"engine_dir": args.engine_dir}
        backend = load_backend(name, **kwargs)
        graph_specs = backend.manifest.graphs if hasattr(backend, "manifest") else None
        graph_specs = {k: g.spec for k, g in graph_specs.items()} if graph_specs else probe_specs(backend)
        entry = results["backends"][name] = {"repr": repr(backend), "frames": {}, "graphs_ms": {}}

        # 1. Whole frames: fps per face count and the per-stage split.
        entry["frames"] = {faces: time_frames(backend, settings, faces, args.repeats, warmup=2) for faces in faces_list}

        # 2. Each graph at the batch it sees for the largest face count.
        top = max(faces_list)
        for graph, spec in graph_specs.items():
            guided = entry["frames"][top]["unet_batch"] > top
            batch = top * (2 if spec.guidance_batch and guided else 1)
            entry["graphs_ms"][f"{graph}@{batch}"] = graph_latency_ms(backend, spec, batch, args.repeats)

        # 3. Accuracy against PyTorch float32.
        if reference_outputs is not None:
            outputs = graph_outputs(backend, reference_specs)
            entry["relative_error_vs_torch_fp32"] = relative_errors(outputs, reference_outputs)
        del backend
        torch.cuda.empty_cache()
        report(name, entry)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(name: str, entry: dict) -> None:
    print(f"\n## {name}: {entry['repr']}\n")
    rows = [
        [faces, f["frame_ms"], f["fps"], f["faces_per_s"], *(f["stages_ms"][m] for m in StageTimer.METHODS)]
        for faces, f in entry["frames"].items()
    ]
    print(markdown_table(["faces", "frame ms", "fps", "faces/s", *StageTimer.METHODS], rows))
    print()
    print(markdown_table(["graph@batch", "ms"], list(entry["graphs_ms"].items())))
    if "relative_error_vs_torch_fp32" in entry:
        print()
        print(markdown_table(["graph", "max |error| / max |output|"], list(entry["relative_error_vs_torch_fp32"].items())))


if __name__ == "__main__":
    raise SystemExit(main())
