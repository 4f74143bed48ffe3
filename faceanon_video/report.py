"""The redaction report: what a newsroom or a data-protection officer files with a published video.

``--report FILE.json`` (machine-readable) and/or ``--report FILE.html`` / ``FILE.md`` (for people), one
per output: the tool version and model hashes, every setting, sha256 of the input and the output,
frames in and out, faces and tracks found, frames obscured after a failure and why, the time span
processed, the metadata keys and streams removed or kept, and the coverage guarantee the run was made
under (smallest face searched for, detection schedule).

It never holds a face image, a box, a landmark or an embedding, nor the values of the tags it
removed (a removed GPS position must not reappear in the report): counts, keys and digests only.
Reports are written atomically (temporary name, renamed when complete) and refused if present
without ``--overwrite``. Hashing streams the files in 1 MiB blocks, so memory stays flat.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from faceanon_video import __version__
from faceanon_video.errors import ConfigError, InputError
from faceanon_video.io.outputs import OutputSet, refuse_unwritable, write_atomic
from faceanon_video.io.metadata import MetadataPolicy, output_tags

log = logging.getLogger(__name__)

FORMATS = (".json", ".html", ".md")
FORMAT_VERSION = 1


def report_paths_for(reports: list[str], source: str | Path) -> list[Path]:
    """One input's reports: each ``--report`` as given, ``STEM.report.json`` inside it when it is a
    folder (several inputs), or with ``{stem}`` replaced by the input's name."""
    stem = Path(str(source)).stem or "stream"
    paths = []
    for report in reports:
        target = Path(report)
        paths.append(target / f"{stem}.report.json" if target.is_dir() else target.with_name(target.name.replace("{stem}", stem)))
    return paths


def check_report_targets(reports: list[str], source: str | Path, overwrite: bool, several: bool = False) -> list[Path]:
    """The report paths for ``source``, refusing (before any work) unknown formats, missing folders,
    one file for several inputs and existing reports without ``--overwrite``."""
    paths = report_paths_for(reports, source)
    for report, path in zip(reports, paths):
        if several and not Path(report).is_dir() and "{stem}" not in report:
            raise ConfigError(f"{report}: with several inputs, --report must be a folder or contain {{stem}}")
        if path.suffix.lower() not in FORMATS:
            raise ConfigError(f"{path}: --report must end in {', '.join(FORMATS)}")
        if not path.parent.is_dir():
            raise InputError(f"{path}: report folder does not exist")
        if path.exists() and not overwrite:
            raise InputError(f"{path}: already exists (use --overwrite to replace it)")
        refuse_unwritable(path)  # a folder that takes no files fails now, not after the video is written
    return paths


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _file_entry(path: str | Path, written: str | Path | None = None) -> dict:
    """``written``: where the bytes of ``path`` are now (a temporary name until the run's outputs are committed)."""
    written = Path(written or path)
    return {"path": str(path), "bytes": written.stat().st_size, "sha256": sha256_file(written)}


def coverage(config, detect_every: int) -> dict:
    """The guarantee the run was made under, in numbers and in one sentence."""
    held = config.track and detect_every > 1
    sentence = (
        f"Every face at least {config.min_face_px:g} px wide was searched for on every "
        + ("frame" if detect_every == 1 else f"one frame in {detect_every}; the frames between were settled from the passes on both sides (held frames)")
        + (f"; a face the detector lost stayed covered on its predicted position for {config.lost_track_buffer} frames" if config.track else "; no tracking: a face the detector missed on a frame was not covered on it")
        + ". A frame whose detection or anonymization failed was obscured whole."
    )
    return {
        "min_face_px": config.min_face_px,
        "detect_every": detect_every,
        "tracking": config.track,
        "held_frames": held,
        "lost_track_buffer": config.lost_track_buffer,
        "detector": config.detector,
        "threshold": config.thresh,
        "mask_scale": config.mask_scale,
        "statement": sentence,
    }


#: Settings whose values are reference photos of people: a file name may name the person (alice.jpg).
PEOPLE_SETTINGS = ("spare", "only")


def settings(config) -> dict:
    """Every setting of the run, with the ``--spare``/``--only`` photos replaced by how many there are."""
    values = asdict(config)
    for name in PEOPLE_SETTINGS:
        if values.get(name):
            count = len(values[name])
            values[name] = f"{count} reference photo{'s' if count != 1 else ''} (one per person; a photo or a folder of photos)"
    return values


def build_report(config, source, destination, summary, reader, writer, processor, run_seconds: float) -> dict:
    """The report of one finished file run (``pipeline.process_video``); see the module docstring."""
    from faceanon_video.weights import LOADED

    time_base = writer.time_base
    first_s = float(writer.first_pts * time_base) if writer.first_pts is not None else None
    last_s = float(writer._last_pts * time_base) if writer._last_pts is not None else None
    policy: MetadataPolicy = writer.policy
    # The video is still under its temporary name (renamed with the report: io.outputs.OutputSet).
    written = writer.output.temp if writer.output is not None else destination
    return {
        "report_format": FORMAT_VERSION,
        "tool": {"name": "faceanon-video", "version": __version__},
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": {**_file_entry(source), "container": reader.info.format_name, "video_codec": reader.info.codec,
                  "width": reader.info.width, "height": reader.info.height, "duration_s": reader.info.duration_s},
        "output": _file_entry(destination, written),
        "models": {"bundled_sha256": dict(sorted(LOADED.items())),
                   "diffusion_model_dir": config.model_dir if config.mode == "diffusion" else None},
        "settings": settings(config),
        "frames": {"in": reader.frames_decoded, "out": writer.frames_written},
        "faces": {"detections": processor.faces, "tracks": len(processor.track_ids)},
        "obscured_frames": {"count": processor.obscured_frames, "reasons": dict(processor.obscure_reasons)},
        "time_span_s": {"requested_start": config.start_s, "requested_end": config.end_s, "first_frame": first_s, "last_frame": last_s},
        "coverage": coverage(config, processor.detect_every),
        "metadata": {
            "policy": {"keep_metadata": list(policy.keep_keys), "keep_streams": list(policy.keep_streams), "keep_audio": policy.keep_audio},
            **writer.scrub.as_dict(),
            "in_output": output_tags(written),
            "not_touched": "audio (voices), burned-in text and logos, and anything else visible in the picture other than faces",
        },
        "run_seconds": round(run_seconds, 3),
        # A --plan render (faceanon_video.planning): what the reviewed plan decided.
        **({"plan": processor.report_entry()} if hasattr(processor, "report_entry") else {}),
    }


def write_reports(report: dict, paths: list[Path], outputs: OutputSet | None = None) -> float:
    """Write ``report`` to each path (format from its extension), atomically (with ``outputs``: renamed
    with the run's other outputs). Returns seconds spent."""
    start = time.perf_counter()
    for path in dict.fromkeys(paths):  # the same file given twice is written once
        write_atomic(path, {".json": to_json, ".html": to_html, ".md": to_markdown}[path.suffix.lower()](report), outputs=outputs)
    return time.perf_counter() - start


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"


def _rows(report: dict) -> list[tuple[str, str]]:
    """The human-readable summary, as (label, text) rows shared by the Markdown and HTML forms."""
    meta = report["metadata"]
    removed_tags = ", ".join(f"{where}: {', '.join(keys)}" for where, keys in meta["tags_removed"].items()) or "none"
    kept_tags = ", ".join(f"{where}: {', '.join(keys)}" for where, keys in meta["tags_kept"].items()) or "none"

    def streams(items: list[dict]) -> str:
        return "; ".join(f"#{s['index']} {s['kind']} ({s['codec']}): {s['reason']}" for s in items) or "none"

    obscured = report["obscured_frames"]
    reasons = "; ".join(f"{n} x {why}" for why, n in obscured["reasons"].items())
    span = report["time_span_s"]
    return [
        ("Tool", f"faceanon-video {report['tool']['version']} (report format {report['report_format']}), {report['created_utc']}"),
        ("Input", f"{report['input']['path']} ({report['input']['bytes']} bytes), sha256 {report['input']['sha256']}"),
        ("Output", f"{report['output']['path']} ({report['output']['bytes']} bytes), sha256 {report['output']['sha256']}"),
        ("Models", ", ".join(f"{name} sha256 {digest}" for name, digest in report["models"]["bundled_sha256"].items()) or "none"),
        ("Mode", f"{report['settings']['mode']} (mask {report['settings']['mask']}, scale {report['settings']['mask_scale']})"),
        ("Frames", f"{report['frames']['in']} in, {report['frames']['out']} out; time span {span['first_frame']} s to {span['last_frame']} s"),
        ("Faces", f"{report['faces']['detections']} face detections in {report['faces']['tracks']} tracks"),
        ("Frames obscured after a failure", f"{obscured['count']}" + (f" ({reasons})" if reasons else "")),
        ("Coverage guarantee", report["coverage"]["statement"]),
        *([("Plan", report["plan"]["statement"])] if "plan" in report else []),
        ("Metadata removed", removed_tags + (f"; {meta['chapters_removed']} chapters" if meta["chapters_removed"] else "")),
        ("Metadata kept", kept_tags + (f"; {meta['chapters_kept']} chapters" if meta["chapters_kept"] else "")),
        ("Streams removed", streams(meta["streams_removed"])),
        ("Streams kept", streams(meta["streams_kept"])),
        ("Not touched", meta["not_touched"]),
    ]


def to_markdown(report: dict) -> str:
    lines = ["# Redaction report", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {text.replace('|', '/')} |" for label, text in _rows(report)]
    lines += ["", "Every setting, and the tags found in the output, are in the JSON form (`--report FILE.json`).", ""]
    return "\n".join(lines)


def to_html(report: dict) -> str:
    rows = "\n".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(text)}</td></tr>" for label, text in _rows(report))
    settings = html.escape(json.dumps(report["settings"], indent=2, default=str))
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Redaction report</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}th{text-align:left;vertical-align:top;padding-right:1em}"
        "td{word-break:break-all}</style></head><body><h1>Redaction report</h1>\n"
        f"<table>\n{rows}\n</table>\n<h2>Settings</h2><pre>{settings}</pre></body></html>\n"
    )
