"""Per-graph latency on the CPU: PyTorch (eager, the reference) vs ONNX Runtime, same graphs.

    python benchmarks/engines_cpu.py                       # the tiny test model (exported on the fly)
    python benchmarks/engines_cpu.py --model-dir DIR --engine-dir engines/NAME   # a real fp32 export

Prints a markdown table of median milliseconds per call for each graph at each batch, both
backends using the same number of threads, and a whole-frame time (the anonymizer's generate for
``--faces`` faces at ``--steps`` steps, with guidance). Use ``--json FILE`` to keep the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
from pathlib import Path

import torch

from faceanon_video.anonymize.diffusion.bench import STAGES, graph_latency_ms, time_frames
from faceanon_video.engines.measure import markdown_table


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="PyTorch models (default: the tiny test model)")
    parser.add_argument("--engine-dir", type=Path, help="an fp32 export of --model-dir (default: export now)")
    parser.add_argument("--batches", default="1,4", help="batch sizes to time, comma-separated")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for both backends")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--faces", type=int, default=2, help="faces in the whole-frame timing")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps in the whole-frame timing")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    from faceanon_video.anonymize.diffusion.backend import TorchBackend
    from faceanon_video.anonymize.diffusion.config import DiffusionSettings
    from faceanon_video.anonymize.diffusion.models import build_tiny_models, load_models, save_models
    from faceanon_video.anonymize.diffusion.backends import OnnxBackend
    from faceanon_video.anonymize.diffusion.export import export_models

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or save_models(build_tiny_models(), Path(tmp) / "tiny")
        engine_dir = args.engine_dir
        if engine_dir is None:
            engine_dir = Path(tmp) / "engines"
            export_models(model_dir, engine_dir, device="cpu")
        backends = {
            "torch": TorchBackend(load_models(model_dir)),
            "onnxruntime": OnnxBackend(engine_dir, providers=["cpu"], threads=args.threads),
        }
        manifest = backends["onnxruntime"].manifest
        batches = [int(b) for b in args.batches.split(",")]
        results = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} threads", "graphs": {}}
        rows = []
        for name, graph in manifest.graphs.items():
            for batch in batches:
                times = {k: graph_latency_ms(b, graph.spec, batch, args.repeats) for k, b in backends.items()}
                results["graphs"][f"{name}@{batch}"] = times
                rows.append([name, batch, times["torch"], times["onnxruntime"], times["torch"] / times["onnxruntime"]])
        print(markdown_table(["graph", "batch", "torch ms", "onnxruntime ms", "speed-up"], rows))
        settings = DiffusionSettings(steps=args.steps, scheduler="ddim")
        repeats = max(3, args.repeats // 4)
        results["frame"] = {k: time_frames(b, settings, args.faces, repeats) for k, b in backends.items()}
        print()
        print(f"whole frame, {args.faces} faces, {args.steps} steps, guidance on (ms per frame and per-stage split):")
        header = ["backend", "frame ms", *STAGES]
        print(markdown_table(header, [[k, v["frame_ms"], *(v["stages_ms"][m] for m in STAGES)] for k, v in results["frame"].items()]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
