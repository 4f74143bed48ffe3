"""``faceanon-video review``: check a video's plan in a local web page, edit it, then render it.

    faceanon-video review INPUT [--plan PLAN.json] [-o OUT] [--report FILE] [--host H] [--port N] [--no-browser]

Loads PLAN.json (default: INPUT's STEM.plan.json next to it) when it exists, or analyses INPUT
(``planning.analyse``: what ``--save-plan`` does) when it does not; then serves the review page on
127.0.0.1 at a random free port with a per-run token in the URL, prints the URL and opens a browser
where there is one. "Save" writes the plan to PLAN.json; "Render" writes OUT (default
NAME_anonymized.EXT) and the report (default OUT's STEM.report.html), as ``faceanon-video INPUT
--plan PLAN.json -o OUT`` does. Every path comes from this command line; the page cannot name one.
Takes the main command's run options (--mode, --mask-scale, --key-file, --config...).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from faceanon_video.errors import ConfigError, InputError
from faceanon_video.options import add_run_options, config_from_args

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="the video to review")
    parser.add_argument("-o", "--output", help="where Render writes the anonymized video (default: NAME_anonymized.EXT next to INPUT)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on; anything but 127.0.0.1 lets other machines reach the page, which shows the original faces (a warning is printed)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a random free one)")
    parser.add_argument("--no-browser", dest="browser", action="store_false", help="only print the URL")
    parser.add_argument("--config", metavar="FILE", help="load settings from a JSON run file (command-line options override it)")
    add_run_options(parser)  # --plan (the plan file to load and save), --mode, --report, --overwrite, ...
    # The main command's --plan renders a plan; here it names the plan being reviewed.
    parser._option_string_actions["--plan"].help = (
        "the plan to review: loaded when it exists, else made by analysing INPUT; Save writes it (default: STEM.plan.json next to INPUT)"
    )


def main(args: argparse.Namespace) -> int:
    try:
        from faceanon_video.review.server import LOOPBACK, check_address, run
    except ImportError as exc:
        raise ConfigError(f"review needs the 'review' extra (pip install 'faceanon-video[review]'): {exc}") from exc
    from faceanon_video.review.session import ReviewSession

    check_address(args.host, args.port)  # before an analysis that can take minutes
    config = config_from_args(args, progress=False)
    if config.save_plan:
        raise ConfigError("review saves the plan to --plan (no --save-plan)")
    if config.spare or config.only:  # its render does exactly what the plan says
        raise ConfigError(f"{'--spare' if config.spare else '--only'}: mark persons spare in the page instead")
    if config.start_s is not None or config.end_s is not None:
        raise ConfigError("review works on whole videos (cut the video first, without --start/--end)")
    source = Path(args.input)
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    from faceanon_video.inputs import is_image

    if is_image(source):
        raise InputError(f"{source}: an image; review works on videos (plans are made for videos)")
    plan_path, output, reports = _paths(source, args.output, config)
    plan = _load_or_analyse(source, plan_path, config)
    if args.host != LOOPBACK:
        sys.stderr.write(
            f"faceanon-video: warning: --host {args.host}: the review page shows the original faces and can change "
            "and render the plan; anyone who can reach this address and has the URL's token can use it\n"
        )
    session = ReviewSession(source, plan, plan_path, output, dataclasses.replace(config, plan=None), reports)
    if session.frames.frame_count != plan.input.frame_count:
        session.close()
        raise InputError(f"{source}: has {session.frames.frame_count} frames, the plan was made for {plan.input.frame_count}")
    try:
        run(session, host=args.host, port=args.port, browser=args.browser)
    except KeyboardInterrupt:
        pass
    if not session.saved:
        sys.stderr.write(f"faceanon-video: review stopped; the plan's unsaved changes were not written to {plan_path}\n")
    return 0


def _paths(source: Path, output: str | None, config) -> tuple[Path, Path, list[Path]]:
    """The plan, output and report paths, all checked now (before the analysis or the server starts)."""
    from faceanon_video.inputs import output_path_for
    from faceanon_video.io.outputs import refuse_existing
    from faceanon_video.pipeline import check_output_kind
    from faceanon_video.planning import plan_path_for
    from faceanon_video.report import check_report_targets

    plan_path = plan_path_for(config.plan, source) if config.plan else source.with_name(f"{source.stem}.plan.json")
    if not plan_path.parent.is_dir():
        raise InputError(f"{plan_path}: folder does not exist")
    destination = output_path_for(source, output, False)
    check_output_kind(source, destination)
    refuse_existing(destination, config.overwrite)
    if destination.resolve() == source.resolve():
        raise InputError(f"{destination}: refusing to overwrite the input")
    reports = config.report or [str(destination.with_name(f"{destination.stem}.report.html"))]
    return plan_path, destination, check_report_targets(reports, source, config.overwrite)


def _load_or_analyse(source: Path, plan_path: Path, config):
    from faceanon_video.plan import Plan
    from faceanon_video.planning import analyse

    if plan_path.exists():
        plan = Plan.load(plan_path)
        plan.check_source(source)
        if plan.input.start_s is not None or plan.input.end_s is not None:
            raise ConfigError(f"{plan_path}: made for a cut of the video (--start/--end); review works on whole videos")
        return plan
    sys.stderr.write(f"{plan_path} does not exist: analysing {source.name} (Save writes it)\n")

    def progress(done: int, total: int) -> None:
        if done % 25 == 0 or done == total:
            sys.stderr.write(f"\ranalysed {done}/{total or '?'} frames")
            sys.stderr.flush()

    plan = analyse(source, dataclasses.replace(config, plan=None, report=[]), progress=progress)
    sys.stderr.write("\n")
    return plan
