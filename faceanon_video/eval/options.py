"""The pipeline options ``faceanon-video eval`` and ``bench`` share: which run to measure.

Every option defaults to "not given" so that a ``--config`` run file, then ``RunConfig``'s own
defaults, decide what the option leaves open: the measured run is exactly the run a user would get.
"""

from __future__ import annotations

import argparse
import functools
import os

from faceanon_video.config import BACKENDS, MODES, RunConfig
from faceanon_video.detect import DETECTORS

#: RunConfig fields these options set (each option's dest is the field's name).
_FIELDS = ("mode", "detector", "thresh", "min_face_px", "mask", "mask_scale", "replace_image", "track", "detect_every",
           "workers", "backend", "model_dir", "engine_dir", "steps", "key_file")  # fmt: skip


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the run being measured (defaults: --config FILE, else faceanon-video's defaults)")
    # SUPPRESS: an option not given is absent from args, so the run file or RunConfig decides.
    add = functools.partial(group.add_argument, default=argparse.SUPPRESS)
    add("--config", metavar="FILE", help="a JSON run file (from faceanon-video --save-config)")
    add("--mode", choices=MODES, help="anonymization mode (default: blur)")
    add("--detector", choices=DETECTORS, help="face detector (default: yunet)")
    add("--thresh", type=float, help="detection score threshold (default: the detector's)")
    add("--min-face", type=float, dest="min_face_px", help="smallest face width to find, px (default: 24)")
    add("--mask", choices=("ellipse", "box"), help="shape of the replaced area (default: ellipse)")
    add("--mask-scale", type=float, help="grow each face box by this factor (default: 1.3)")
    add("--replace-image", metavar="FILE", help="image pasted over faces with --mode image")
    add("--no-track", dest="track", action="store_const", const=False, help="disable tracking")
    add("--detect-every", type=int, metavar="N", help="full-frame detection every N frames (default: 2, as for files)")
    add("--workers", type=int, help="detection threads (default: 2)")
    add("--backend", choices=BACKENDS, help="where the diffusion models run (default: auto)")
    group.add_argument("--model-dir", default=os.environ.get("FACEANON_MODEL_DIR"), help="diffusion weights folder (env FACEANON_MODEL_DIR)")
    add("--engine-dir", help="exported ONNX graphs / TensorRT engines folder")
    add("--steps", type=int, help="diffusion sampling steps (default: 4)")
    add("--key-file", metavar="FILE", help="secret key for per-face seeds (default: a random key per run)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """``--config`` (or the defaults), with every option that was given laid over it."""
    base = RunConfig.from_file(args.config) if getattr(args, "config", None) else RunConfig()
    values = dict(vars(base))
    for name in _FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    values["progress"] = False
    return RunConfig(**values)
