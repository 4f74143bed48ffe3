"""``faceanon-video --camera N ...`` and ``faceanon-video URL ...``: settings -> source, outputs -> runner.

Command-line glue only (the CLI calls ``run_command``); it writes the preview address, a status line
every ``STATUS_EVERY_S`` and the final summary to the terminal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from faceanon_video.config import RunConfig
from faceanon_video.errors import EXIT_OBSCURED, EXIT_OK, ConfigError
from faceanon_video.live.runner import LiveRunner, LiveSummary
from faceanon_video.live.sinks import FileSink, MjpegPreview, Sink, StreamSink, WindowPreview, window_available
from faceanon_video.live.sources import LiveSource, camera_input, is_live_input

STATUS_EVERY_S = 10.0


def build_source(config: RunConfig, inputs: list[str]) -> LiveSource:
    if config.camera is not None:
        if inputs:
            raise ConfigError("give either --camera or an INPUT URL, not both")
        url, av_format = camera_input(config.camera)
    elif len(inputs) == 1:
        url, av_format = inputs[0], None
    else:
        raise ConfigError("live mode takes one input: a stream URL or --camera N")
    return LiveSource(
        url,
        av_format=av_format,
        options=config.input_options,
        open_timeout_s=config.open_timeout_s,
        read_timeout_s=config.read_timeout_s,
        reconnect_max_s=config.reconnect_max_s,
        give_up_s=config.give_up_s,
    )


def build_sinks(config: RunConfig, output: str | None) -> list[Sink]:
    """The outputs asked for: ``-o`` (a file, or a URL to push to), ``--output-url``, ``--preview``."""
    urls = [u for u in (config.output_url, output if output and is_live_input(output) else None) if u]
    encoder = {"crf": config.crf, "preset": config.preset, "codec": config.codec}
    sinks: list[Sink] = []
    if output and not is_live_input(output):
        sinks.append(FileSink(output, segment_s=config.segment_s, overwrite=config.overwrite, **encoder))
    elif config.segment_s is not None:
        raise ConfigError("--segment-seconds needs a recording: -o FILE.mp4/.mkv/.ts")
    sinks += [StreamSink(url, reconnect_max_s=config.reconnect_max_s, **encoder) for url in urls]
    if config.preview:
        sinks.append(WindowPreview() if window_available() else MjpegPreview(port=config.preview_port))
    if not sinks:
        raise ConfigError("live mode needs an output: -o FILE (.mp4/.mkv/.ts), --output-url URL or --preview")
    return sinks


def run_command(config: RunConfig, inputs: list[str], output: str | None, quiet: bool = False) -> int:
    if config.vault or config.save_tracks:
        raise ConfigError("--vault and --save-tracks are for files; live streams do not write them")
    source = build_source(config, inputs)
    sinks = build_sinks(config, output)
    try:
        runner = LiveRunner(source, sinks, config)
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    for sink in sinks:
        if isinstance(sink, MjpegPreview) and not quiet:
            sys.stdout.write(f"preview: {sink.url}\n")
            sys.stdout.flush()

    def report(summary: LiveSummary) -> None:
        if config.stats_file:
            Path(config.stats_file).write_text(json.dumps(summary.as_dict(), indent=2))
        if not quiet:
            sys.stderr.write(status_line(summary) + "\n")

    summary = runner.run(on_status=report, status_every_s=STATUS_EVERY_S)
    if config.stats_file:
        Path(config.stats_file).write_text(json.dumps(summary.as_dict(), indent=2))
    if not quiet:
        sys.stdout.write(f"{source.url}: {status_line(summary)}\n")
    # Frames obscured because detection or anonymization raised (not deadline misses or outage fill,
    # which are part of running live) make the "obscured frames" status, like file runs.
    return EXIT_OBSCURED if summary.obscured_error else EXIT_OK


def status_line(summary: LiveSummary) -> str:
    latency = "; ".join(f"{name}: p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms" for name, s in summary.latency_ms.items() if s.get("n"))
    return (
        f"{summary.seconds:.0f} s, {summary.frames_processed} frames ({summary.fps:.1f} fps), "
        f"{summary.frames_dropped} dropped, {summary.obscured_deadline + summary.obscured_error} obscured, "
        f"{summary.filler_frames} black filler, {sum(not g['initial'] for g in summary.gaps)} outages, {summary.reconnects} reconnects"
        + (f"; latency {latency}" if latency else "")
    )
