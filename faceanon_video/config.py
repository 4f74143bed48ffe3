"""``RunConfig``: every setting of a run, shared by the CLI, the library API and saved run files."""

from __future__ import annotations

import json
import math
import os
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from faceanon_video.detect import DETECTORS
from faceanon_video.errors import ConfigError
from faceanon_video.io.metadata import OPTIONAL_STREAMS

MODES = ("blur", "mosaic", "solid", "image", "none", "diffusion")
#: Modes whose anonymizer draws from the per-face seeds: a file run in one of them links people
#: before encoding (analyse, then render the plan), so each person keeps one seed (faceanon_video.plan).
SEEDED_MODES = ("diffusion",)
MASK_SHAPES = ("ellipse", "box")  # painted by anonymize.regions
BACKENDS = ("auto", "torch", "onnx", "tensorrt")
#: x264/x265 speed presets, fastest first.
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
#: Largest --detect-every. Files hold every frame between two full passes (and the detection window
#: holds ~4 such spans), so memory grows with N: at 30, ~150 frames, 450 MB at 1080p. A second at
#: 30 fps is also the longest gap over which a face's box is still interpolated usefully (a person
#: crosses a 720p frame in ~2 s), and the longest a NEW face may stay uncovered in live mode.
MAX_DETECT_EVERY = 30
#: Where the option's name differs from the field's (``--start`` sets ``start_s``...).
OPTION_NAMES = {
    "start_s": "--start",
    "end_s": "--end",
    "min_face_px": "--min-face",
    "give_up_s": "--give-up-after",
    "segment_s": "--segment-seconds",
    "duration_s": "--duration",
    "open_timeout_s": "--open-timeout",
    "read_timeout_s": "--read-timeout",
    "reconnect_max_s": "--reconnect-max",
    "keep_audio": "--no-audio",
    "progress": "--quiet",
    "stats_file": "--stats",
    "input_options": "--input-option",
    "track": "--no-track",
}


def option_name(field_name: str) -> str:
    """The command-line option that sets a ``RunConfig`` field (named in error messages)."""
    return OPTION_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


def _type_error(name: str, value, hint) -> str | None:
    """Why ``value`` does not fit the field's type hint (None when it does). Run files are JSON, so
    any value can arrive here; a wrong type must be a one-line settings error, not a crash later."""
    if value is None:
        return None if type(None) in typing.get_args(hint) else "must be set"
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    kind = typing.get_origin(kinds[0]) or kinds[0]
    if kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be a whole number"
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        return None if math.isfinite(value) else "must be a finite number"
    if kind is str:
        return None if isinstance(value, (str, os.PathLike)) else "must be a string"
    if kind is dict:
        return None if isinstance(value, dict) else "must be a JSON object"
    return None


@dataclass
class RunConfig:
    # What to anonymize and how.
    mode: str = "blur"
    mask: str = "ellipse"
    mask_scale: float = 1.3
    replace_image: str | None = None  # for mode "image"
    # People left visible (--spare) or the only ones anonymized (--only): photos or folders, one per
    # person (see faceanon_video.people.spare). At most one of the two.
    spare: list = field(default_factory=list)
    only: list = field(default_factory=list)

    # Detection.
    detector: str = "yunet"
    thresh: float | None = None  # None: the detector's default (YuNet 0.5, CenterFace 0.3)
    min_face_px: float = 24
    workers: int = 2  # detection threads; frames are detected in parallel, tracked in order

    # Tracking (see faceanon_video.track).
    track: bool = True
    detect_every: int | None = None  # None: 2 for files (frames held back, see track.backfill), 1 for live streams
    lost_track_buffer: int = 15
    key_file: str | None = None
    save_tracks: str | None = None
    vault: str | None = None  # encrypted sidecar with the original faces (see faceanon_video.vault)
    vault_quality: str = "high"  # "high" (H.264 CRF 16, visually lossless) or "exact" (lossless)
    # The person layer (faceanon_video.people): tracks linked into people at the end of a file run.
    people: str | None = None  # encrypted person embeddings of the video, for `verify --people`
    gallery: str | None = None  # encrypted identity gallery shared across videos
    # Plan files (faceanon_video.plan): analyse only and write the plan, or render one without detecting.
    save_plan: str | None = None
    plan: str | None = None
    # The analysis also asks a second detector (CenterFace, every 8th frame) where a face may have
    # been missed: hints on the review timeline (plan candidates), never anonymized by themselves.
    second_detector: bool = True

    # Diffusion (see faceanon_video.anonymize.diffusion).
    model_dir: str | None = None
    engine_dir: str | None = None
    backend: str = "auto"
    steps: int = 4
    scheduler: str = "ddim"  # the published pipeline's (README: Fidelity)
    degree: float | None = None  # None: 1.25 to anonymize, 0 with swap_source
    guidance_scale: float = 4.0
    swap_source: str | None = None

    # Encoding.
    crf: int = 20
    preset: str = "ultrafast"
    codec: str | None = None  # None: H.264 (VP9 for .webm)
    keep_audio: bool = True
    # What else of the input an output carries (see faceanon_video.io.metadata): tag keys or ["all"],
    # and "subtitles"/"data"/"attachments". Default: only what playback needs.
    keep_metadata: list = field(default_factory=list)
    keep_streams: list = field(default_factory=list)
    report: list = field(default_factory=list)  # redaction reports: FILE.json / .html / .md, or folders

    # Input span (files).
    start_s: float | None = None
    end_s: float | None = None

    # Live: cameras and stream URLs (see faceanon_video.live).
    camera: int | None = None
    output_url: str | None = None  # push: udp://, rtmp://, rtsp://, srt://, tcp://
    preview: bool = False
    preview_port: int = 8090
    deadline_ms: float = 200.0  # a frame whose detection is not done this long after capture is obscured
    segment_s: float | None = None
    open_timeout_s: float = 10.0
    read_timeout_s: float = 3.0
    reconnect_max_s: float = 10.0
    give_up_s: float | None = None  # None: retry a lost source forever
    duration_s: float | None = None
    input_options: dict = field(default_factory=dict)  # FFmpeg options for the input, e.g. video_size
    stats_file: str | None = None

    # Segment-parallel runs of one long file (see faceanon_video.segments).
    jobs: int | None = None  # processes (or Ray tasks) per file; None: auto (one per core for long files)
    resume: bool = False  # reuse the finished segments of an interrupted run
    on_segment_failure: str = "fail"  # a segment that failed twice: "fail" the run, or "black" it out (reported)

    # Behaviour.
    strict: bool = False  # a damaged frame in the input fails the run instead of being obscured
    overwrite: bool = False
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(RunConfig)
        for f in fields(self):
            problem = _type_error(f.name, getattr(self, f.name), hints[f.name])
            if problem:
                raise ConfigError(f"{option_name(f.name)} {problem} (got {getattr(self, f.name)!r})")
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.mask not in MASK_SHAPES:
            raise ConfigError(f"unknown mask {self.mask!r}; choose from {', '.join(MASK_SHAPES)}")
        if self.detector not in DETECTORS:
            raise ConfigError(f"unknown detector {self.detector!r}; choose from {', '.join(DETECTORS)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        if self.mask_scale < 1.0:
            raise ConfigError("--mask-scale must be >= 1.0 (smaller masks leave face edges visible)")
        if self.mode == "image" and not self.replace_image:
            raise ConfigError("--mode image needs --replace-image FILE")
        if self.detect_every is not None and not 1 <= self.detect_every <= MAX_DETECT_EVERY:
            raise ConfigError(f"--detect-every must be between 1 and {MAX_DETECT_EVERY}")
        if (self.detect_every or 1) > 1 and not self.track:
            raise ConfigError("--detect-every needs tracking: without it, skipped frames would leak every face")
        if self.save_plan and self.plan:
            raise ConfigError("give either --save-plan (analyse) or --plan (render), not both")
        if self.plan and (self.people or self.gallery):
            raise ConfigError("--people and --gallery go with the analysis (--save-plan): a plan's people are already linked")
        if (self.plan or self.save_plan) and (self.spare or self.only):
            # A render does exactly what the plan says (--spare on it left faces visible that the plan
            # anonymizes); the analysis ignored it. The plan's person decisions are where sparing goes.
            name = "--spare" if self.spare else "--only"
            raise ConfigError(f"{name} does not go with --plan or --save-plan: mark persons spare in the plan (faceanon-video review)")
        if self.save_plan and (self.vault or self.report):
            raise ConfigError("--save-plan encodes nothing: give --vault and --report to the render (--plan)")
        if self.spare and self.only:
            raise ConfigError("give either --spare or --only, not both")
        for name in ("people", "gallery"):
            if getattr(self, name) and not self.key_file:
                raise ConfigError(f"--{name} needs --key-file: person embeddings are stored encrypted with it")
        if self.vault_quality != "high" and not self.vault:
            raise ConfigError("--vault-quality needs --vault (it says how the vault keeps the faces)")
        if self.vault and not self.key_file:
            # A per-run random key would be thrown away at exit, leaving a vault nobody can open.
            raise ConfigError("--vault needs --key-file: the vault can only be opened with the key that wrote it")
        if self.lost_track_buffer < 0:
            raise ConfigError("--lost-track-buffer must be >= 0")
        if self.workers < 1:
            raise ConfigError("--workers must be >= 1")
        if self.on_segment_failure not in ("fail", "black"):
            raise ConfigError(f"--on-segment-failure must be fail or black (got {self.on_segment_failure!r})")
        if self.jobs is not None and not 1 <= self.jobs <= 256:
            raise ConfigError(f"--jobs must be between 1 and 256 (got {self.jobs})")
        if self.thresh is not None and not 0 < self.thresh < 1:
            raise ConfigError("--thresh must be between 0 and 1")
        for name in ("deadline_ms", "open_timeout_s", "read_timeout_s", "reconnect_max_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-').removesuffix('-s')} must be > 0")
        if self.segment_s is not None and self.segment_s < 2:
            raise ConfigError("--segment-seconds must be >= 2 (segment files are named by the second they start)")
        unknown = set(self.keep_streams) - set(OPTIONAL_STREAMS)
        if unknown:
            raise ConfigError(f"--keep-streams: unknown {', '.join(sorted(unknown))}; choose from {', '.join(OPTIONAL_STREAMS)}")
        if not 0 <= self.preview_port <= 65535:
            raise ConfigError("--preview-port must be between 0 and 65535")
        self._check_encoding()
        self._check_span()
        for name in ("give_up_s", "duration_s"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{option_name(name)} must be > 0")
        if self.min_face_px < 0:
            raise ConfigError("--min-face must be >= 0")
        if self.steps < 1:
            raise ConfigError("--steps must be >= 1")
        if self.camera is not None and self.camera < 0:
            raise ConfigError("--camera must be >= 0")

    def _check_encoding(self) -> None:
        # Checked here, before any model loads or file opens: FFmpeg would only refuse them when the
        # encoder opens, on the first frame.
        vp = self.codec is not None and ("vp" in self.codec or "av1" in self.codec)
        high = 63 if vp else 51
        if not 0 <= self.crf <= high:
            raise ConfigError(f"--crf must be between 0 and {high} (got {self.crf})")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown --preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        if self.codec is not None:
            import av

            try:
                codec = av.codec.Codec(self.codec, "w")
            except Exception:  # noqa: BLE001 - PyAV raises various errors for unknown names
                codec = None
            if codec is None or codec.type != "video":
                raise ConfigError(
                    f"unknown --codec {self.codec!r}: give a video encoder of this FFmpeg build, e.g. libx264, "
                    "libx265, libvpx-vp9, libaom-av1 (list: ffmpeg -encoders)"
                )

    def _check_span(self) -> None:
        if self.start_s is not None and self.start_s < 0:
            raise ConfigError(f"--start must be >= 0 seconds (got {self.start_s})")
        if self.end_s is not None and self.end_s <= (self.start_s or 0):
            raise ConfigError(f"--end must be after --start (got {self.end_s})")
        if self.start_s is None and self.end_s is None:
            return  # no span: no need to import the plan module (start-up time)
        from faceanon_video.plan import MAX_SPAN_S  # a year: past it, the decoder's seek overflows int64

        for name in ("start_s", "end_s"):
            if (getattr(self, name) or 0) > MAX_SPAN_S:
                raise ConfigError(f"{option_name(name)} must be at most {MAX_SPAN_S:g} seconds (got {getattr(self, name)})")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"run file is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError("run file must hold a JSON object of settings, e.g. {\"mode\": \"blur\"}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown settings in run file: {', '.join(sorted(unknown))}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--config {path}: not a text file (a JSON run file from --save-config)") from exc
        except OSError as exc:
            raise ConfigError(f"--config {path}: {exc.strerror or exc}") from exc
        try:
            return cls.from_json(text)
        except ConfigError as exc:
            raise ConfigError(f"--config {path}: {exc}") from exc
