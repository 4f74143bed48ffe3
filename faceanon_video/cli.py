"""Command line: argparse -> RunConfig -> pipeline. Nothing else lives here.

    faceanon-video INPUT... [-o OUTPUT] [--mode blur|mosaic|solid|image|none|diffusion] ...
    faceanon-video bench|eval|export|download-models|review ...   (see ``faceanon-video SUBCOMMAND --help``)
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

# Before numpy loads: our matrices are 8x8 Kalman states, too small for BLAS threads, whose idle
# spinning only takes CPU from the decoder, detector and encoder (2-core machines; start-up too).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from faceanon_video import __version__
from faceanon_video.config import RunConfig
from faceanon_video.errors import EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OBSCURED, EXIT_OK, ConfigError, FaceanonError
from faceanon_video.inputs import expand_inputs, file_url_path, is_image, is_stream_input, output_path_for
from faceanon_video.io.outputs import refuse_clashes, refuse_existing, write_atomic
from faceanon_video.memory import keep_freed_memory
from faceanon_video.options import add_run_options, config_from_args
from faceanon_video.pipeline import FrameProcessor, check_output_kind, outputs_of, process_file

log = logging.getLogger("faceanon_video")

#: ``faceanon-video NAME ...`` runs ``faceanon_video.commands.NAME`` (``add_arguments`` + ``main``).
SUBCOMMANDS = {
    "bench": "throughput and latency of each stage on a clip",
    "eval": "measure leaks, background damage, recall and re-identification on annotated data",
    "export": "export the diffusion models to ONNX (and TensorRT engines on a GPU host)",
    "download-models": "fetch the diffusion weights into a local folder (needs internet; opt-in)",
    "restore": "put the original faces back into an anonymized video from its --vault (needs the key)",
    "verify": "check whether the person in a photo appears in an anonymized video, using its --vault and key",
    "review": "check and edit a video's plan in a local web page (persons, possible misses, manual boxes), then render it",
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
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="process the files as tasks on a Ray cluster: alone, a local Ray on this machine; 'auto' or HOST:PORT, an existing cluster (paths must be shared by all nodes; needs the 'distributed' extra)")

    add_run_options(parser)  # every option that sets a RunConfig field (faceanon_video.options)
    return parser


def setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="faceanon-video: %(levelname)s: %(message)s")
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")


def run_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    config = config_from_args(args)
    if not args.inputs and config.camera is None:
        parser.error("give at least one INPUT (a video, an image or a folder)")
    quiet = getattr(args, "progress", True) is False  # -q on this command line
    live = config.camera is not None or any(is_stream_input(name) for name in args.inputs)
    if live and config.jobs is not None and config.jobs > 1:
        # Refused, not ignored: a live stream has no end to cut into segments, and a user who asked for
        # N processes would otherwise believe they run (a --config file meant for files may set it too).
        raise ConfigError("--jobs works on files (a live stream is processed as it arrives, in one process); leave it out")
    if config.report and live:
        raise ConfigError("--report works on files; live runs have --stats")
    if (config.save_plan or config.plan) and live:
        raise ConfigError("--save-plan and --plan work on files (a live stream has no end to review)")
    if (config.people or config.gallery) and live:
        raise ConfigError("--people and --gallery work on files (live streams have no end to link the tracks at)")
    if config.save_plan and args.output:
        raise ConfigError("--save-plan encodes nothing: give -o to the render (--plan)")
    if args.save_config:
        # Written before the run: never over a file it reads or the file it writes (even with --overwrite).
        read = [("INPUT", file_url_path(name) or Path(name)) for name in args.inputs if not is_stream_input(name)]
        read += [(option, Path(value)) for option, value in (("--config", args.config), ("--key-file", config.key_file), ("--plan", config.plan), ("--gallery", config.gallery), ("-o", args.output)) if value]
        refuse_clashes([("--save-config", Path(args.save_config))], read)
        write_atomic(args.save_config, config.to_json(), overwrite=config.overwrite)
    if live:
        from faceanon_video.live.command import run_command  # here: a file run needs none of live's servers

        return run_command(config, args.inputs, args.output, quiet=quiet)
    sources = expand_inputs(args.inputs)
    several = len(sources) > 1
    if several and config.vault and not Path(config.vault).is_dir():
        raise ConfigError("with several inputs, --vault must be an existing folder (one NAME.favault per input)")
    if several and config.people and not Path(config.people).is_dir() and "{stem}" not in config.people:
        raise ConfigError("with several inputs, --people must be an existing folder (one NAME.people per input) or a {stem} name")
    processor = None
    if config.spare or config.only:
        # The reference photos are embedded now: a missing one or one without a face fails before any work.
        processor = FrameProcessor(config)
    if args.ray is not None:
        if config.save_plan:
            raise ConfigError("--save-plan runs here, not on Ray (render the plans with --plan --ray)")
        return _run_on_ray(sources, args, config, several)
    if config.report and several:
        from faceanon_video.report import check_report_targets

        for source in sources:  # before any work: a missing folder or an existing report fails now
            check_report_targets(config.report, source, config.overwrite, several)
    if config.save_plan:  # an analysis: its output is the plan
        from faceanon_video.planning import plan_path_for

        if several and not Path(config.save_plan).is_dir() and "{stem}" not in config.save_plan:
            raise ConfigError("with several inputs, --save-plan must be an existing folder (one NAME.plan.json per input) or a {stem} name")
        destinations = [plan_path_for(config.save_plan, source) for source in sources]
    else:
        destinations = [output_path_for(source, args.output, several) for source in sources]
    for source, destination in zip(sources, destinations):
        # Every output is checked before any model loads or any file is written.
        if not config.save_plan:
            check_output_kind(source, destination)
        refuse_existing(destination, config.overwrite)
    if several:  # two inputs of one stem (a.mp4, a.mkv) share a.favault...: the second would replace the first's
        refuse_clashes(
            [(f"{option} of {source}", path) for source, destination in zip(sources, destinations) for option, path in outputs_of(source, destination, config)],
            [(f"INPUT {source}", source) for source in sources],
        )
    failures = obscured = 0
    for source, destination in zip(sources, destinations):
        try:
            if processor is not None:
                processor.reset()
            if not config.save_plan:  # an analysis builds its own processor, with no anonymizer
                processor = (processor or FrameProcessor(config)).reset_counters()  # models load once for all inputs
            summary = process_file(source, destination, config, processor=processor)
        except FaceanonError as exc:
            if not several:
                raise
            failures += 1
            sys.stderr.write(f"faceanon-video: error: {exc}\n")
            continue
        obscured += summary.obscured_frames
        if not quiet:
            note = f", {summary.obscured_frames} frames obscured after a failure" if summary.obscured_frames else ""
            sys.stdout.write(
                f"{source} -> {destination}: {summary.frames} frames, {summary.faces} faces, "
                f"{summary.fps:.1f} fps{note}\n"
            )
            if summary.redaction:
                sys.stdout.write(f"  {summary.redaction}\n")
    return EXIT_FAILED if failures else EXIT_OBSCURED if obscured else EXIT_OK


def _run_on_ray(sources, args, config: RunConfig, several: bool) -> int:
    from faceanon_video.distributed import run_distributed, summary_line

    jobs = [(source, output_path_for(source, args.output, several)) for source in sources]
    if not several and not is_image(sources[0]):
        # One video: its segments are the cluster's tasks (faceanon_video.segments).
        summary = process_file(*jobs[0], config, ray_address=args.ray)
        sys.stdout.write(summary_line(summary.as_dict()) + "\n")
        return EXIT_OBSCURED if summary.obscured_frames else EXIT_OK
    results = run_distributed(jobs, config, address=None if args.ray == "local" else args.ray)
    for result in results:
        (sys.stderr if "error" in result else sys.stdout).write(summary_line(result) + "\n")
    return 1 if any("error" in r for r in results) else 0


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


def console_main() -> int:
    """The ``faceanon-video`` command: ``main``, then an exit that skips the interpreter's final
    garbage collection over every object the run created (~50-80 ms of a short clip's run; nothing
    is left to clean: every output is closed and every temporary file removed by ``main``)."""
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(console_main())
