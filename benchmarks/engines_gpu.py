"""GPU benchmark of the diffusion anonymizer: fps per face count and steps, per-stage split, per backend.

Without weights (speed does not depend on weight values; nothing to download):

    python benchmarks/engines_gpu.py --random-weights [--work-dir DIR] [--json results.json]

builds the published architecture with random weights from configs in memory (SD 2.1 UNet and two
ReferenceNets, 865 M parameters each; SD VAE; CLIP ViT-L/14 vision), times PyTorch fp16, exports fp16
ONNX graphs, times ONNX Runtime CUDA, builds TensorRT engines (with a timing cache) and times them.
For each backend it prints frames/s and faces/s at 1/2/4/8 faces per frame for 1, 2 and 4 steps
(guidance 4, so the UNet batch is twice the faces) and one frame's split by stage, plus the time of
each phase (build, export, engine build), so a GPU owner sees where the minutes go. TensorRT engines
are built with ``--trt-opt-level 2`` by default (TensorRT's default 3 builds the three UNet-sized
engines several minutes slower for a few percent of speed) to stay within 8 minutes from a cold
start on one H100-class GPU; pass ``--trt-opt-level 3`` for the last few percent.

With real models (adds each graph's error relative to PyTorch fp32):

    python benchmarks/engines_gpu.py --model-dir DIR --engine-dir engines/NAME [--backends tensorrt,onnx,torch]

Without CUDA it stops with a message and exit code 2; nothing is measured or made up. The same code
runs on the CPU with a tiny config (``--random-weights --tiny --device cpu --backends torch,onnx``),
which is what the test suite runs, so on a GPU the only unknown is the GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

from faceanon_video.engines.measure import markdown_table

BACKENDS = ("torch", "onnx", "tensorrt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random-weights", action="store_true", help="SD 2.1-size models with random weights (no downloads)")
    parser.add_argument("--tiny", action="store_true", help="with --random-weights: the tiny test config instead of SD 2.1")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (only sensible with --tiny)")
    parser.add_argument("--model-dir", type=Path, help="PyTorch models: the torch backend and the fp32 reference")
    parser.add_argument("--engine-dir", type=Path, help="a `faceanon-video export` folder (onnx, tensorrt)")
    parser.add_argument("--work-dir", type=Path, help="with --random-weights: where the graphs and engines go (default: a temp dir)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, of torch,onnx,tensorrt")
    parser.add_argument("--faces", default="1,2,4,8", help="faces per frame to time, comma-separated")
    parser.add_argument("--steps", default="1,2,4", help="denoising steps to time, comma-separated")
    parser.add_argument("--guidance-scale", type=float, default=4.0, help="> 1 doubles the UNet batch")
    parser.add_argument("--scheduler", default="ddim")
    parser.add_argument("--repeats", type=int, default=5, help="timed frames per configuration (median)")
    parser.add_argument("--trt-opt-level", type=int, default=2, help="TensorRT builder optimization level (0-5)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    args.backends = args.backends.split(",")
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")
    args.faces = [int(f) for f in args.faces.split(",")]
    args.steps = [int(s) for s in args.steps.split(",")]
    if not args.random_weights and not (args.model_dir or args.engine_dir):
        parser.error("give --random-weights, or --model-dir and/or --engine-dir")
    return args


class Phases:
    """Wall time of each phase since the start, printed as it ends (where a cold start's minutes go)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._last = self.start

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now
        print(f"[{now - self.start:7.1f} s] {name} ({self.seconds[name]:.1f} s)", flush=True)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def random_weight_backends(args: argparse.Namespace, work_dir: Path, phases: Phases):
    """(name, backend) for each requested backend, built from random-weight models in memory. The
    models leave memory before the graph backends load (all three at once would not fit beside
    TensorRT's build on smaller GPUs)."""
    from faceanon_video.anonymize.diffusion.backend import TorchBackend
    from faceanon_video.anonymize.diffusion.backends import OnnxBackend, TensorRTBackend
    from faceanon_video.anonymize.diffusion.export import export_backend
    from faceanon_video.anonymize.diffusion.models import SD21, TINY, build_random_models

    device = torch.device(args.device)
    # fp16 on a GPU as deployed; fp32 on the CPU, whose ONNX Runtime kernels lack most of fp16.
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    configs = TINY if args.tiny else SD21
    models = build_random_models(configs, seed=0, device=device)
    backend = TorchBackend(models, device=device, dtype=dtype)
    phases.done(f"built random {'tiny' if args.tiny else 'SD 2.1'} models on {device} ({dtype})")
    if "torch" in args.backends:
        yield "torch", backend
    graph_backends = [b for b in args.backends if b != "torch"]
    if not graph_backends:
        return
    engine_dir = work_dir / "engines"
    # The export swaps SD 2.1's attention to the upcasting processor, so it comes after torch's timing.
    export_backend(backend, engine_dir, source_sha256=f"random-{'tiny' if args.tiny else 'sd21'}-seed0",
                   max_faces=max(args.faces))
    del backend, models
    _free(device)
    phases.done(f"exported {'fp16' if dtype == torch.float16 else 'fp32'} ONNX graphs to {engine_dir}")
    if "onnx" in graph_backends:
        providers = ["cuda", "cpu"] if device.type == "cuda" else ["cpu"]
        backend = OnnxBackend(engine_dir, providers=providers)
        phases.done(f"loaded ONNX Runtime sessions ({','.join(providers)})")
        yield "onnx", backend
        del backend
        _free(device)
    if "tensorrt" in graph_backends:
        backend = TensorRTBackend(engine_dir, optimization_level=args.trt_opt_level)
        phases.done(f"built TensorRT engines (optimization level {args.trt_opt_level}, timing cache)")
        yield "tensorrt", backend


def model_dir_backends(args: argparse.Namespace, phases: Phases):
    from faceanon_video.anonymize.diffusion.backends import load_backend

    for name in args.backends:
        kwargs = {"model_dir": args.model_dir, "device": args.device} if name == "torch" else {"engine_dir": args.engine_dir}
        backend = load_backend(name, **kwargs)
        phases.done(f"loaded {name}")
        yield name, backend


def measure_backend(name: str, backend, args: argparse.Namespace, reference_outputs) -> dict:
    """Whole frames for every (steps, faces), and the per-graph error against fp32 when given."""
    from faceanon_video.anonymize.diffusion.bench import graph_outputs, time_frames
    from faceanon_video.anonymize.diffusion.config import DiffusionSettings
    from faceanon_video.engines.measure import relative_errors

    entry: dict = {"repr": repr(backend), "frames": {}}
    for steps in args.steps:
        settings = DiffusionSettings(steps=steps, guidance_scale=args.guidance_scale, scheduler=args.scheduler)
        for faces in args.faces:
            entry["frames"][f"{steps}x{faces}"] = dict(
                steps=steps, faces=faces, **time_frames(backend, settings, faces, args.repeats, warmup=1)
            )
    if reference_outputs is not None:
        graph_specs, want = reference_outputs
        entry["relative_error_vs_torch_fp32"] = relative_errors(graph_outputs(backend, graph_specs), want)
    return entry


def report(name: str, entry: dict) -> None:
    from faceanon_video.anonymize.diffusion.bench import STAGES

    print(f"\n## {name}: {entry['repr']}\n")
    rows = [
        [f["steps"], f["faces"], f["frame_ms"], f["fps"], f["faces_per_s"], *(f["stages_ms"][m] for m in STAGES)]
        for f in entry["frames"].values()
    ]
    print(markdown_table(["steps", "faces", "frame ms", "frames/s", "faces/s", *(f"{m} ms" for m in STAGES)], rows))
    if "relative_error_vs_torch_fp32" in entry:
        print()
        print(markdown_table(["graph", "max |error| / max |output|"], list(entry["relative_error_vs_torch_fp32"].items())))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("engines_gpu.py: torch sees no CUDA GPU here; nothing was measured "
              "(the CPU rehearsal is --random-weights --tiny --device cpu --backends torch,onnx)", file=sys.stderr)
        return 2
    phases = Phases()
    results = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "settings": {"guidance_scale": args.guidance_scale, "scheduler": args.scheduler, "repeats": args.repeats},
        "models": ("random tiny" if args.tiny else "random SD 2.1") if args.random_weights else str(args.model_dir),
        "backends": {},
    }
    reference_outputs = None
    if args.model_dir and not args.random_weights:  # fp32 outputs first, so those models leave the GPU before timing
        from faceanon_video.anonymize.diffusion.backends import load_backend
        from faceanon_video.anonymize.diffusion.bench import graph_outputs
        from faceanon_video.anonymize.diffusion.graphs import probe_specs

        reference = load_backend("torch", model_dir=args.model_dir, device=args.device, dtype=torch.float32)
        graph_specs = probe_specs(reference)
        reference_outputs = (graph_specs, graph_outputs(reference, graph_specs))
        del reference
        _free(device)
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = args.work_dir or Path(tmp)
        if args.random_weights:
            backends = random_weight_backends(args, work_dir, phases)
        else:
            backends = model_dir_backends(args, phases)
        for name, backend in backends:
            entry = results["backends"][name] = measure_backend(name, backend, args, reference_outputs)
            del backend
            phases.done(f"timed {name}: {len(args.steps)} step counts x {len(args.faces)} face counts")
            report(name, entry)
    results["phases_s"] = phases.seconds
    results["total_s"] = time.perf_counter() - phases.start
    print(f"\ntotal {results['total_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
