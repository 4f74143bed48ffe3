"""Command line: argparse -> RunConfig -> pipeline. Nothing else lives here.

    faceanon-video INPUT... [-o OUTPUT] [--mode blur|mosaic|solid|image|none|diffusion] ...
    faceanon-video bench|eval|export|download-models ...   (see ``faceanon-video SUBCOMMAND --help``)
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from faceanon_video import __version__
from faceanon_video.config import BACKENDS, MODES, RunConfig
from faceanon_video.detect import DETECTORS
from faceanon_video.errors import EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OBSCURED, EXIT_OK, ConfigError, FaceanonError
from faceanon_video.io.outputs import refuse_existing, write_atomic
from faceanon_video.memory import keep_freed_memory

log = logging.getLogger("faceanon_video")

#: ``faceanon-video NAME ...`` runs ``faceanon_video.commands.NAME`` (``add_arguments`` + ``main``).
SUBCOMMANDS = {
    "bench": "throughput and latency of each stage on a clip",
    "eval": "measure leaks, background damage, recall and re-identification on annotated data",
    "export": "export the diffusion models to ONNX (and TensorRT engines on a GPU host)",
    "download-models": "fetch the diffusion weights into a local folder (needs internet; opt-in)",
    "restore": "put the original faces back into an anonymized video from its --vault (needs the key)",
    "verify": "check whether the person in a photo appears in an anonymized video, using its --vault and key",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceanon-video",
        description="Anonymize every face in videos and images: detect, track, then blur/mosaic/fill or replace "
        "with natural fake faces. Subcommands: " + "; ".join(f"{k}: {v}" for k, v in SUBCOMMANDS.items()) + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="video files, images, or folders of them")
    parser.add_argument("-o", "--output", help="output file, or folder for several inputs (default: NAME_anonymized.EXT next to each input)")
    parser.add_argument("--version", action="version", version=f"faceanon-video {__version__}")
    parser.add_argument("--config", metavar="FILE", help="load settings from a JSON run file (command-line options override it)")
    parser.add_argument("--save-config", metavar="FILE", help="write the effective settings as a JSON run file")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--strict", action="store_true", help="fail on a damaged input frame instead of obscuring it (exit 2)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="process the files as tasks on a Ray cluster: alone, a local Ray on this machine; 'auto' or HOST:PORT, an existing cluster (paths must be shared by all nodes; needs the 'distributed' extra)")

    anon = parser.add_argument_group("anonymization")
    anon.add_argument("--mode", choices=MODES, default="blur", help="how faces are replaced")
    anon.add_argument("--mask", choices=("ellipse", "box"), default="ellipse", help="shape of the replaced area")
    anon.add_argument("--mask-scale", type=float, default=1.3, help="grow each face box by this factor (covers hair line, ears, chin)")
    anon.add_argument("--replace-image", metavar="FILE", help="image pasted over faces with --mode image")

    det = parser.add_argument_group("detection")
    det.add_argument("--detector", choices=DETECTORS, default="yunet", help="yunet: fast, small faces; centerface: higher recall, ~2.5x slower")
    det.add_argument("--thresh", type=float, default=None, help="detection score threshold (default: YuNet 0.5, CenterFace 0.3); lower catches more hard faces and more false positives")
    det.add_argument("--min-face", type=float, default=24, dest="min_face_px", help="smallest face width in pixels that must be found; larger is faster")
    det.add_argument("--workers", type=int, default=2, help="detection threads")

    trk = parser.add_argument_group("tracking (carries faces through detector misses; see faceanon_video.track)")
    trk.add_argument("--no-track", dest="track", action="store_false", default=argparse.SUPPRESS, help="anonymize only where the detector fires in that frame: faster by <1 ms/frame, but a face leaks on every frame the detector misses (blur, dim light, turned heads)")
    trk.add_argument("--detect-every", type=int, default=argparse.SUPPRESS, metavar="N", help="run the full-frame detector every N-th frame (default: 2 for files, 1 for live streams). Files: the frames between are held back until the next full pass, faces get boxes interpolated between passes, and a face first found there is followed back over the skipped frames, so none is left visible (0 leaks measured up to N=5 on the synthetic clips). Live streams cannot wait: known faces are re-detected around their tracks, and a NEW face can stay visible for up to N-1 frames")
    trk.add_argument("--lost-track-buffer", type=int, default=15, metavar="FRAMES", help="frames a face keeps being anonymized on its predicted position after the detector loses it: longer covers longer occlusions and misses, but leaves a drifting blur behind faces that left")
    trk.add_argument("--key-file", metavar="FILE", help="secret key (>= 16 bytes; e.g. 'openssl rand -hex 32 > key') from which each face's random seed is derived: same video + same key = same replacement faces; without it, a random key per run")
    trk.add_argument("--vault", metavar="FILE", help="also write the original faces, encrypted with --key-file (AES-256-GCM), to FILE so that 'faceanon-video restore' can undo the anonymization and 'verify' can check who is in the video; anyone with the key and FILE can (a folder: one NAME.favault per input)")
    trk.add_argument("--save-tracks", metavar="FILE.jsonl", help="write per-frame track ids, boxes, landmarks, scores and detected/predicted flags as JSON lines (a folder: one NAME.tracks.jsonl per input)")

    diff = parser.add_argument_group("diffusion (--mode diffusion; needs the 'diffusion' extra and local weights)")
    diff.add_argument("--model-dir", default=os.environ.get("FACEANON_MODEL_DIR"), help="folder with unet/, referencenet/, conditioning_referencenet/, vae/, scheduler/, image_encoder/ (env FACEANON_MODEL_DIR)")
    diff.add_argument("--engine-dir", help="folder of exported ONNX graphs / TensorRT engines (from 'faceanon-video export')")
    diff.add_argument("--backend", choices=BACKENDS, default="auto", help="where the diffusion models run; auto takes the fastest available")
    diff.add_argument("--steps", type=int, default=4, help="sampling steps (more: finer texture, slower)")
    diff.add_argument("--scheduler", default="dpmsolver++", help="ddim, dpmsolver++, unipc or lcm")
    diff.add_argument("--degree", type=float, default=None, help="anonymization degree: 0 keeps the identity, 1 removes it, >1 pushes away from it (default: 1.25; 0 with --swap-source)")
    diff.add_argument("--guidance-scale", type=float, default=4.0, help="classifier-free guidance")
    diff.add_argument("--swap-source", metavar="IMAGE", help="face-swap mode: give every face this donor identity")

    enc = parser.add_argument_group("encoding")
    enc.add_argument("--crf", type=int, default=20, help="quality (lower is better and bigger; 18 is visually lossless)")
    enc.add_argument("--preset", default="ultrafast", help="x264 preset (ultrafast..veryslow): slower is smaller at equal quality. ultrafast keeps a 720p encode at ~8 ms per frame on one core; veryfast halves the file size for ~4x the encoding time")
    enc.add_argument("--codec", default=None, help="video codec (default: libx264, libvpx-vp9 for .webm)")
    enc.add_argument("--no-audio", action="store_true", help="drop audio and other streams instead of copying them")
    enc.add_argument("--start", type=float, dest="start_s", help="start time in seconds")
    enc.add_argument("--end", type=float, dest="end_s", help="end time in seconds")

    live = parser.add_argument_group("live (a stream URL as INPUT, or --camera; see faceanon_video/live)")
    live.add_argument("--camera", type=int, metavar="N", help="read webcam N (/dev/videoN on Linux) instead of INPUT")
    live.add_argument("--output-url", metavar="URL", help="push the anonymized stream: udp://HOST:PORT (MPEG-TS), rtmp://..., rtsp://..., srt://...")
    live.add_argument("--preview", action="store_true", help="show the anonymized output: a window where a display exists, else an MJPEG page on http://127.0.0.1:PORT/")
    live.add_argument("--preview-port", type=int, default=8090, help="port of the MJPEG preview (localhost only; 0 picks a free one)")
    live.add_argument("--deadline-ms", type=float, default=200.0, help="a frame whose detection has not finished this long after capture is blacked out, never sent raw; lower bounds latency tighter but blacks out more frames on a busy CPU")
    live.add_argument("--segment-seconds", type=float, dest="segment_s", help="with -o, start a new file (STEM_YYYYmmdd-HHMMSS.EXT) about this often")
    live.add_argument("--open-timeout", type=float, default=10.0, dest="open_timeout_s", help="seconds a (re)connection may take")
    live.add_argument("--read-timeout", type=float, default=3.0, dest="read_timeout_s", help="seconds without data before the source counts as lost and is reconnected")
    live.add_argument("--reconnect-max", type=float, default=10.0, dest="reconnect_max_s", help="longest wait in seconds between reconnection attempts (backoff doubles from 0.5 s)")
    live.add_argument("--give-up-after", type=float, dest="give_up_s", help="exit (code 4) after the source has been down this many seconds; unset: retry forever")
    live.add_argument("--duration", type=float, dest="duration_s", help="stop after this many seconds; unset: run until Ctrl-C or SIGTERM")
    live.add_argument("--input-option", action="append", type=_key_value, metavar="KEY=VALUE", help="FFmpeg input option, repeatable, e.g. video_size=1280x720, framerate=30, input_format=mjpeg, rtsp_flags=listen")
    live.add_argument("--stats", dest="stats_file", metavar="FILE.json", help="write live statistics (latency, drops, gaps) to this file every 10 s and at the end")
    return parser


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


#: argparse dest -> RunConfig field, where the names differ.
RENAMED = {"no_audio": ("keep_audio", lambda v: not v), "quiet": ("progress", lambda v: not v), "input_option": ("input_options", lambda v: dict(v or []))}
NOT_CONFIG = {"inputs", "output", "config", "save_config", "debug", "ray"}


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RunConfig:
    base = RunConfig.from_file(args.config) if args.config else RunConfig()
    values = vars(base)
    for dest, value in vars(args).items():
        if dest in NOT_CONFIG:
            continue
        # A run file's values hold unless the option was given on the command line.
        if args.config and value == parser.get_default(dest):
            continue
        name, convert = RENAMED.get(dest, (dest, lambda v: v))
        if name in values:
            values[name] = convert(value)
    return RunConfig(**{k: v for k, v in values.items()})


def setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="faceanon-video: %(levelname)s: %(message)s")
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")


def run_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from faceanon_video.pipeline import FrameProcessor, check_output_kind, expand_inputs, output_path_for, process_file

    if not args.inputs and args.camera is None:
        parser.error("give at least one INPUT (a video, an image or a folder)")
    config = config_from_args(args, parser)
    if args.save_config:
        write_atomic(args.save_config, config.to_json(), overwrite=config.overwrite)
    if config.camera is not None or any("://" in name for name in args.inputs):
        from faceanon_video.live.command import run_command

        return run_command(config, args.inputs, args.output, quiet=args.quiet)
    sources = expand_inputs(args.inputs)
    several = len(sources) > 1
    if several and config.vault and not Path(config.vault).is_dir():
        raise ConfigError("with several inputs, --vault must be an existing folder (one NAME.favault per input)")
    if args.ray is not None:
        return _run_on_ray(sources, args, config, several)
    destinations = [output_path_for(source, args.output, several) for source in sources]
    for source, destination in zip(sources, destinations):
        # Every output is checked before any model loads or any file is written.
        check_output_kind(source, destination)
        refuse_existing(destination, config.overwrite)
    processor = None
    failures = obscured = 0
    for source, destination in zip(sources, destinations):
        try:
            if processor is not None:
                processor.reset()
            processor = processor or FrameProcessor(config)  # models load once for all inputs
            summary = process_file(source, destination, config, processor=_fresh_counters(processor))
        except FaceanonError as exc:
            if not several:
                raise
            failures += 1
            sys.stderr.write(f"faceanon-video: error: {exc}\n")
            continue
        obscured += summary.obscured_frames
        if not args.quiet:
            note = f", {summary.obscured_frames} frames obscured after a failure" if summary.obscured_frames else ""
            sys.stdout.write(
                f"{source} -> {destination}: {summary.frames} frames, {summary.faces} faces, "
                f"{summary.fps:.1f} fps{note}\n"
            )
    return EXIT_FAILED if failures else EXIT_OBSCURED if obscured else EXIT_OK


def _run_on_ray(sources, args, config: RunConfig, several: bool) -> int:
    from faceanon_video.distributed import run_distributed, summary_line
    from faceanon_video.pipeline import output_path_for

    jobs = [(source, output_path_for(source, args.output, several)) for source in sources]
    results = run_distributed(jobs, config, address=None if args.ray == "local" else args.ray)
    for result in results:
        (sys.stderr if "error" in result else sys.stdout).write(summary_line(result) + "\n")
    return 1 if any("error" in r for r in results) else 0


def _fresh_counters(processor):
    processor.frames = processor.faces = processor.obscured_frames = 0
    processor.timings.clear()
    return processor


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    setup_logging(debug)
    keep_freed_memory()  # this process is ours: trade a higher resident peak for fewer page faults
    # SIGTERM (kill, systemd, docker stop) ends a file run like Ctrl-C: the KeyboardInterrupt unwinds
    # through every writer, which removes its temporary file. Live runs install their own handler.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        if argv and argv[0] in SUBCOMMANDS:
            name = argv[0]
            argv = [a for a in argv if a != "--debug"]  # handled here for every subcommand
            module = importlib.import_module(f"faceanon_video.commands.{name.replace('-', '_')}")
            sub = argparse.ArgumentParser(prog=f"faceanon-video {name}", description=SUBCOMMANDS[name], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
            module.add_arguments(sub)
            return int(module.main(sub.parse_args(argv[1:])) or 0)
        parser = build_parser()
        return run_main(parser.parse_args(argv), parser)
    except FaceanonError as exc:
        sys.stderr.write(f"faceanon-video: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("faceanon-video: interrupted; unfinished outputs were removed\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug: one line for users, the traceback with --debug
        if debug:
            raise
        sys.stderr.write(f"faceanon-video: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)\n")
        return EXIT_INTERNAL
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)


if __name__ == "__main__":
    sys.exit(main())
