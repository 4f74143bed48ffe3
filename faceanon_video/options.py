"""The command-line options that set ``RunConfig`` fields: one table for the main command, ``bench`` and ``eval``.

Precedence: an option given on the command line > the ``--config`` run file > ``RunConfig``'s
defaults. Every option is added with ``default=argparse.SUPPRESS``, so an option not given is absent
from the parsed arguments and "given" is known exactly (a value equal to the default given on the
command line still wins over the run file). The defaults shown by ``--help`` are ``RunConfig``'s own.

To add an option: add a ``RunConfig`` field (``config.py``), then one ``_option(...)`` line below with
``dest`` = that field. ``shared=True`` also puts it on ``bench`` and ``eval`` (options that change
what the measured run does); ``shared=False`` keeps it on the main command only (inputs, outputs,
live streams, encoding).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields

from faceanon_video.config import BACKENDS, MASK_SHAPES, MODES, RunConfig
from faceanon_video.detect import DETECTORS

__all__ = ["OPTIONS", "Option", "add_pipeline_arguments", "add_run_options", "config_from_args"]

#: Where ``--model-dir`` is taken from when neither the command line nor the run file sets it.
MODEL_DIR_ENV = "FACEANON_MODEL_DIR"


def _same(value):
    return value


@dataclass(frozen=True)
class Option:
    """One command-line option and the ``RunConfig`` field (``dest``) it sets."""

    flags: tuple[str, ...]
    dest: str
    help: str
    group: str
    shared: bool
    kwargs: dict = field(default_factory=dict)
    #: argparse's value -> the field's value.
    convert: Callable = _same


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _flatten(lists) -> list[str]:
    return [item for items in lists or [] for item in items]


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


ANON = "anonymization"
DET = "detection"
TRK = "tracking (carries faces through detector misses; see faceanon_video.track)"
DIFF = "diffusion (--mode diffusion; needs the 'diffusion' extra and local weights)"
ENC = "encoding"
LIVE = "live (a stream URL as INPUT, or --camera; see faceanon_video/live)"
RUN = "run"

OPTIONS: list[Option] = []


def _option(group: str, shared: bool, *flags: str, dest: str, help: str, convert: Callable | None = None, **kwargs) -> None:
    OPTIONS.append(Option(flags, dest, help, group, shared, kwargs, *([convert] if convert else [])))


# fmt: off
_option(RUN, False, "--overwrite", dest="overwrite", action="store_true", help="replace existing output files")
_option(RUN, False, "-q", "--quiet", dest="progress", action="store_false", help="no progress bar or summary")

_option(ANON, True, "--mode", dest="mode", choices=MODES, help="how faces are replaced")
_option(ANON, True, "--mask", dest="mask", choices=MASK_SHAPES, help="shape of the replaced area")
_option(ANON, True, "--mask-scale", dest="mask_scale", type=float, help="grow each face box by this factor (covers hair line, ears, chin)")
_option(ANON, True, "--spare", dest="spare", action="append", nargs="+", metavar="PHOTO_OR_FOLDER", convert=_flatten, help="keep these people visible and anonymize everyone else (each argument is one person: a photo, or a folder of photos of them; repeatable). A face is shown only inside a streak of its track that matched a photo on 3 good frames in a row (files: decided 10 frames late, so from the streak's start), kept while it does not clearly stop matching, and hidden again on the first good frame that clearly does not: never-confirmed faces stay anonymized. Videos only (a single image anonymizes every face)")
_option(ANON, True, "--only", dest="only", action="append", nargs="+", metavar="PHOTO_OR_FOLDER", convert=_flatten, help="anonymize only these people (photos or folders, one per person): a face is left visible only after 3 good frames that are clearly someone else, and anonymized for good once its track resembles a listed person")
_option(ANON, True, "--replace-image", dest="replace_image", metavar="FILE", help="image pasted over faces with --mode image")

_option(DET, True, "--detector", dest="detector", choices=DETECTORS, help="yunet: fast, small faces; centerface: higher recall, ~2.5x slower")
_option(DET, True, "--thresh", dest="thresh", type=float, help="detection score threshold (default: YuNet 0.5, CenterFace 0.3); lower catches more hard faces and more false positives")
_option(DET, True, "--min-face", dest="min_face_px", type=float, help="smallest face (px) that must be found: a face of MIN_FACE px or more in view for 7 x --detect-every frames (14 at --detect-every 2) is covered on every frame it is in view, if YuNet finds it at 36 px (README: Recall). Each frame is detected shrunk (large faces) plus one tile enlarged so a MIN_FACE face is 36 px (every area every 7 passes, ~2x the detection cost of the shrunk pass alone); held frames cover a face back to where it appeared. Larger is faster")
_option(DET, True, "--workers", dest="workers", type=int, help="detection threads")

_option(TRK, True, "--no-track", dest="track", action="store_false", help="anonymize only where the detector fires in that frame: faster by <1 ms/frame, but a face leaks on every frame the detector misses (blur, dim light, turned heads)")
_option(TRK, True, "--detect-every", dest="detect_every", type=int, metavar="N", help="run the full-frame detector every N-th frame (default: 2 for files, 1 for live streams). Files: the frames between are held back until the next full pass, faces get boxes interpolated between passes, and a face first found there is followed back over the skipped frames, so none is left visible (0 leaks measured up to N=5 on the synthetic clips). Live streams cannot wait: known faces are re-detected around their tracks, and a NEW face can stay visible for up to N-1 frames")
_option(TRK, True, "--lost-track-buffer", dest="lost_track_buffer", type=int, metavar="FRAMES", help="frames a face keeps being anonymized on its predicted position after the detector loses it: longer covers longer occlusions and misses, but leaves a drifting blur behind faces that left")
_option(TRK, True, "--key-file", dest="key_file", metavar="FILE", help="secret key (>= 16 bytes; e.g. 'openssl rand -hex 32 > key') from which each face's random seed is derived: same video + same key = same replacement faces; without it, a random key per run")
_option(TRK, False, "--vault", dest="vault", metavar="FILE", help="also write the original faces, encrypted with --key-file (AES-256-GCM), to FILE so that 'faceanon-video restore' can undo the anonymization and 'verify' can check who is in the video; anyone with the key and FILE can (a folder: one NAME.favault per input)")
_option(TRK, False, "--vault-quality", dest="vault_quality", choices=("high", "exact"), help="how the vault keeps the faces: 'high' (each frame's face regions as one H.264 picture stream at CRF 16: visually lossless, ~50 dB inside the faces, about 2x the anonymized video with a few faces) or 'exact' (lossless: bit-exact restore, larger)")
_option(TRK, False, "--people", dest="people", metavar="FILE", help="link the video's tracks into people at the end of the run and write their SFace embeddings, encrypted with --key-file (AES-256-GCM; never a face image), to FILE for 'verify --people' (a folder: one NAME.people per input). --save-tracks then ends with the person of each track")
_option(TRK, False, "--gallery", dest="gallery", metavar="FILE", help="identity gallery across videos, encrypted with --key-file: the video's people are matched to the stored ones (same person, same gallery id) and new ones added; created if missing, refused if the key is wrong or the file was changed")
_option(TRK, False, "--save-tracks", dest="save_tracks", metavar="FILE.jsonl", help="write per-frame track ids, boxes, landmarks, scores and detected/predicted flags as JSON lines (a folder: one NAME.tracks.jsonl per input)")
_option(TRK, False, "--save-plan", dest="save_plan", metavar="PLAN.json", help="analyse only: detect, track and link people, write a plan (README: Plan files) to check or edit, and encode nothing (a folder: one NAME.plan.json per input)")
_option(TRK, False, "--second-detector", dest="second_detector", action=argparse.BooleanOptionalAction, help="with --save-plan and review: also run CenterFace on every 8th frame and list the faces it finds where the plan has none as 'second detector disagrees' (possible misses to check; ~20 %% more analysis time)")
_option(TRK, False, "--plan", dest="plan", metavar="PLAN.json", help="render exactly what a plan says, with no detection: its tracks (persons marked spare left visible), manual regions and blackouts; refused for any other video than the one it was made for (a folder: NAME.plan.json per input)")

_option(DIFF, True, "--model-dir", dest="model_dir", help=f"folder with unet/, referencenet/, conditioning_referencenet/, vae/, scheduler/, image_encoder/ (default: env {MODEL_DIR_ENV})")
_option(DIFF, True, "--engine-dir", dest="engine_dir", help="folder of exported ONNX graphs / TensorRT engines (from 'faceanon-video export')")
_option(DIFF, True, "--backend", dest="backend", choices=BACKENDS, help="where the diffusion models run; auto takes the fastest available")
_option(DIFF, True, "--steps", dest="steps", type=int, help="sampling steps (more: finer texture, slower)")
_option(DIFF, True, "--scheduler", dest="scheduler", help="ddim, dpmsolver++, unipc or lcm")
_option(DIFF, True, "--degree", dest="degree", type=float, help="anonymization degree: 0 keeps the identity, 1 removes it, >1 pushes away from it (default: 1.25; 0 with --swap-source)")
_option(DIFF, True, "--guidance-scale", dest="guidance_scale", type=float, help="classifier-free guidance")
_option(DIFF, True, "--swap-source", dest="swap_source", metavar="IMAGE", help="face-swap mode: give every face this donor identity")

_option(ENC, False, "--crf", dest="crf", type=int, help="quality (lower is better and bigger; 18 is visually lossless)")
_option(ENC, False, "--preset", dest="preset", help="x264 preset (ultrafast..veryslow): slower is smaller at equal quality. ultrafast keeps a 720p encode at ~8 ms per frame on one core; veryfast halves the file size for ~4x the encoding time")
_option(ENC, False, "--codec", dest="codec", help="video codec (default: libx264, libvpx-vp9 for .webm)")
_option(ENC, False, "--no-audio", dest="keep_audio", action="store_false", help="drop audio and other streams instead of copying them")
_option(ENC, False, "--keep-metadata", dest="keep_metadata", action="append", type=_comma_list, metavar="KEY[,KEY...]|all", convert=_flatten, help="copy these input tags too (repeatable; 'location' also keeps location-eng, 'make' com.apple.quicktime.make; 'chapters' the chapters; 'all' every tag and the chapters). Default: only the audio language; GPS, device, owner, dates and titles are removed")
_option(ENC, False, "--keep-streams", dest="keep_streams", action="append", type=_comma_list, metavar="subtitles,data,attachments", convert=_flatten, help="copy these input streams too (default: dropped, they can carry GPS telemetry, names or speech; cover pictures are never copied)")
_option(RUN, False, "--jobs", dest="jobs", type=int, metavar="N", help="split each long video at keyframes into segments processed by N processes (or Ray tasks with --ray) and joined into one output (default: one per core for videos of 60 s or more on machines or Ray clusters of 4+ cores, else 1; see README: Segment-parallel runs)")
_option(RUN, False, "--on-segment-failure", dest="on_segment_failure", choices=("fail", "black"), help="with --jobs: a segment that failed twice fails the run with nothing written (fail, the default), or is replaced by black frames of the same count and timestamps and listed in the log and --report (black)")
_option(RUN, False, "--resume", dest="resume", action="store_true", help="with --jobs: reuse the finished segments of an interrupted or failed run of the same input and settings")
_option(RUN, False, "--strict", dest="strict", action="store_true", help="fail on a damaged input frame instead of obscuring it (exit 2)")
_option(RUN, False, "--report", dest="report", action="append", metavar="FILE.json|FILE.html|FILE.md", convert=list, help="write a redaction report per output (repeatable: JSON for machines, HTML or Markdown for people; a folder or a {stem} name with several inputs): settings, model and file sha256s, frames, faces, tracks, failures, metadata and streams removed. No face images")
_option(ENC, False, "--start", dest="start_s", type=float, help="start time in seconds")
_option(ENC, False, "--end", dest="end_s", type=float, help="end time in seconds")

_option(LIVE, False, "--camera", dest="camera", type=int, metavar="N", help="read webcam N (/dev/videoN on Linux) instead of INPUT")
_option(LIVE, False, "--output-url", dest="output_url", metavar="URL", help="push the anonymized stream: udp://HOST:PORT (MPEG-TS), rtmp://..., rtsp://..., srt://...")
_option(LIVE, False, "--preview", dest="preview", action="store_true", help="show the anonymized output: a window where a display exists, else an MJPEG page on http://127.0.0.1:PORT/")
_option(LIVE, False, "--preview-port", dest="preview_port", type=int, help="port of the MJPEG preview (localhost only; 0 picks a free one)")
_option(LIVE, False, "--deadline-ms", dest="deadline_ms", type=float, help="a frame whose detection has not finished this long after capture is blacked out, never sent raw; lower bounds latency tighter but blacks out more frames on a busy CPU")
_option(LIVE, False, "--segment-seconds", dest="segment_s", type=float, help="with -o, start a new file (STEM_YYYYmmdd-HHMMSS.EXT) about this often")
_option(LIVE, False, "--open-timeout", dest="open_timeout_s", type=float, help="seconds a (re)connection may take")
_option(LIVE, False, "--read-timeout", dest="read_timeout_s", type=float, help="seconds without data before the source counts as lost and is reconnected")
_option(LIVE, False, "--reconnect-max", dest="reconnect_max_s", type=float, help="longest wait in seconds between reconnection attempts (backoff doubles from 0.5 s)")
_option(LIVE, False, "--give-up-after", dest="give_up_s", type=float, help="exit (code 4) after the source has been down this many seconds; unset: retry forever")
_option(LIVE, False, "--duration", dest="duration_s", type=float, help="stop after this many seconds; unset: run until Ctrl-C or SIGTERM")
_option(LIVE, False, "--input-option", dest="input_options", action="append", type=_key_value, metavar="KEY=VALUE", convert=dict, help="FFmpeg input option, repeatable, e.g. video_size=1280x720, framerate=30, input_format=mjpeg, rtsp_flags=listen")
_option(LIVE, False, "--stats", dest="stats_file", metavar="FILE.json", help="write live statistics (latency, drops, gaps) to this file every 10 s and at the end")
# fmt: on

_DEFAULTS = {f.name: None if f.default is MISSING else f.default for f in fields(RunConfig)}  # lists (default_factory): nothing to state
_FLAG_ACTIONS = ("store_true", "store_false")


def _help(option: Option) -> str:
    """The option's help with ``RunConfig``'s default appended, unless the help states it or there is
    none to state (flags, and settings left unset by default)."""
    default = _DEFAULTS[option.dest]
    if "default" in option.help or option.kwargs.get("action") in _FLAG_ACTIONS or default is None:
        return option.help
    return f"{option.help} (default: {default})"


def add_run_options(parser: argparse.ArgumentParser, shared_only: bool = False) -> None:
    """Add the table's options to ``parser``, by group; ``shared_only``: those ``bench`` and ``eval`` take."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in OPTIONS:
        if shared_only and not option.shared:
            continue
        title = "the run being measured (--config FILE, then faceanon-video's defaults, decide what is not given)" if shared_only else option.group
        if title not in groups:
            groups[title] = parser if title == RUN else parser.add_argument_group(title)
        group = groups[title]
        group.add_argument(*option.flags, dest=option.dest, default=argparse.SUPPRESS, help=_help(option), **option.kwargs)


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and the shared options: what ``bench`` and ``eval`` measure."""
    parser.add_argument("--config", metavar="FILE", help="a JSON run file (from faceanon-video --save-config)")
    add_run_options(parser, shared_only=True)


def config_from_args(args: argparse.Namespace, **fixed) -> RunConfig:
    """The ``RunConfig`` of parsed arguments: each table option given on the command line, over the
    ``--config`` run file (if any), over ``RunConfig``'s defaults; ``--model-dir`` falls back to
    ``$FACEANON_MODEL_DIR``. ``fixed``: fields the caller decides (e.g. ``progress=False``)."""
    path = getattr(args, "config", None)
    values = dict(vars(RunConfig.from_file(path) if path else RunConfig()))
    given = vars(args)
    for option in OPTIONS:
        if option.dest in given:
            values[option.dest] = option.convert(given[option.dest])
    if values["model_dir"] is None:
        values["model_dir"] = os.environ.get(MODEL_DIR_ENV)
    return RunConfig(**{**values, **fixed})
