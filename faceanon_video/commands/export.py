"""``faceanon-video export``: the diffusion models as ONNX graphs, and TensorRT engines on a GPU host.

    faceanon-video export --model-dir DIR --out engines/NAME [--fp16] [--max-faces F]

Writes ``engines/NAME/{clip_vision,vae_encoder,refnet_source,refnet_conditioning,unet,vae_decoder}.onnx``
and ``manifest.json``; then, when TensorRT and a CUDA GPU are present (or ``--tensorrt yes``), builds
and caches an engine per graph. Run it again after changing the model: up-to-date graphs and
engines are reused. Use the result with ``--engine-dir engines/NAME --backend onnx|tensorrt|auto``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from faceanon_video.errors import ConfigError

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        default=os.environ.get("FACEANON_MODEL_DIR"),
        help="the PyTorch model folder (unet/, referencenet/, ...; env FACEANON_MODEL_DIR)",
    )
    parser.add_argument("--out", required=True, type=Path, help="engine folder to write, e.g. engines/face-anon-fp16")
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="float16 inside the graphs: half the size, ~2x faster on a GPU, small drift; GPU only",
    )
    parser.add_argument(
        "--max-faces",
        type=int,
        default=4,
        help="faces per model call the TensorRT profiles cover (2x that under guidance); set it to the "
        "anonymizer's batch. More faces still run, in chunks",
    )
    parser.add_argument("--opset", type=int, choices=(17, 18), default=17, help="ONNX opset")
    parser.add_argument(
        "--tensorrt",
        choices=("auto", "yes", "no"),
        default="auto",
        help="build TensorRT engines: auto = when TensorRT and a CUDA GPU are present",
    )
    parser.add_argument(
        "--workspace-gb", type=float, default=4.0, help="TensorRT scratch memory while building"
    )
    parser.add_argument("--device", default=None, help="where to trace: cpu or cuda (None: cuda when present)")
    parser.add_argument("--force", action="store_true", help="re-export and rebuild even when up to date")


def main(args: argparse.Namespace) -> int:
    from faceanon_video.anonymize.diffusion.export import export_models
    from faceanon_video.engines import tensorrt

    if args.model_dir is None:
        raise ConfigError("export needs --model-dir DIR (or FACEANON_MODEL_DIR)")
    if args.tensorrt == "yes" and not tensorrt.is_available():
        raise ConfigError("--tensorrt yes needs the tensorrt package and a CUDA GPU")
    manifest = export_models(
        args.model_dir,
        args.out,
        fp16=args.fp16,
        max_faces=args.max_faces,
        opset=args.opset,
        device=args.device,
        force=args.force,
    )
    size_mb = sum(f.stat().st_size for f in Path(args.out).glob("*.onnx*")) / 1e6
    print(f"{args.out}: {len(manifest.graphs)} ONNX graphs, {manifest.precision}, opset {manifest.opset}, {size_mb:.0f} MB")
    if args.tensorrt == "yes" or (args.tensorrt == "auto" and tensorrt.is_available()):
        target = tensorrt.build_engines(args.out, workspace_bytes=int(args.workspace_gb * (1 << 30)), force=args.force)
        print(f"{target}: TensorRT engines for faces 1..{manifest.max_faces}")
    else:
        logger.info("no TensorRT engines built (TensorRT or a CUDA GPU missing); the onnx backend can run these graphs")
    return 0
