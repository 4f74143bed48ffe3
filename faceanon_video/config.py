"""``RunConfig``: every setting of a run, shared by the CLI, the library API and saved run files."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from faceanon_video.detect import DETECTORS
from faceanon_video.errors import ConfigError
from faceanon_video.io.metadata import OPTIONAL_STREAMS

MODES = ("blur", "mosaic", "solid", "image", "none", "diffusion")
MASK_SHAPES = ("ellipse", "box")  # painted by anonymize.regions
BACKENDS = ("auto", "torch", "onnx", "tensorrt")


@dataclass
class RunConfig:
    # What to anonymize and how.
    mode: str = "blur"
    mask: str = "ellipse"
    mask_scale: float = 1.3
    replace_image: str | None = None  # for mode "image"

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

    # Behaviour.
    overwrite: bool = False
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        if self.detect_every is not None and self.detect_every < 1:
            raise ConfigError("--detect-every must be >= 1")
        if (self.detect_every or 1) > 1 and not self.track:
            raise ConfigError("--detect-every needs tracking: without it, skipped frames would leak every face")
        if self.vault and not self.key_file:
            # A per-run random key would be thrown away at exit, leaving a vault nobody can open.
            raise ConfigError("--vault needs --key-file: the vault can only be opened with the key that wrote it")
        if self.lost_track_buffer < 0:
            raise ConfigError("--lost-track-buffer must be >= 0")
        if self.workers < 1:
            raise ConfigError("--workers must be >= 1")
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown settings in run file: {', '.join(sorted(unknown))}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        return cls.from_json(Path(path).read_text())
