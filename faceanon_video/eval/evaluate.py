"""Score anonymized images or video frames against ground truth, and produce one report.

``Evaluator`` takes (original, anonymized, ground truth, detector boxes) one image or
frame at a time and accumulates every metric; the two drivers feed it:

- ``evaluate_pipeline(annotations, config)`` runs this package's pipeline (any ``RunConfig``) on the
  annotated images or video and scores the result, detection recall/precision included;
- ``evaluate_outputs(annotations, anonymized)`` scores files some other tool already wrote (e.g.
  deface's output, for a like-for-like leak comparison); detection metrics are then not available.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from faceanon_video.detect.yunet import YuNetDetector
from faceanon_video.errors import ConfigError, InputError
from faceanon_video.eval.annotations import AnnotatedImage, Annotations
from faceanon_video.eval.identity import IdentityModel, load_identity_model, track_consistency
from faceanon_video.eval.metrics import CoverageSettings, DetectionCounts, background_damage, face_altered_fraction, match_boxes
from faceanon_video.io.decode import VideoReader
from faceanon_video.processor import FrameProcessor
from faceanon_video.types import Detections, Frame

__all__ = ["EvalReport", "EvalSettings", "Evaluator", "evaluate_outputs", "evaluate_pipeline"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    coverage: CoverageSettings = CoverageSettings()
    #: IoU for a detected box to count as finding a ground-truth face (PASCAL VOC's 0.5).
    iou_threshold: float = 0.5
    #: Face-recognition models for the re-identification rate ("sface", "dlib"); empty skips it.
    identity_models: tuple[str, ...] = ("sface",)
    #: Run the (slow) identity models on every N-th annotated frame only; 1 scores every face.
    identity_every: int = 1
    #: Stop after this many annotated images/frames (None: all); for quick looks at long videos.
    max_items: int | None = None

    def __post_init__(self) -> None:
        if self.identity_every < 1:
            raise ConfigError("identity_every must be >= 1")
        if not 0 < self.iou_threshold <= 1:
            raise ConfigError("iou_threshold must be in (0, 1]")


@dataclass
class EvalReport:
    """Everything ``faceanon-video eval`` prints; ``to_dict()`` is its ``--json``."""

    annotations: str
    format: str
    anonymizer: str
    items: int = 0
    #: Faces scored for leaks (ignored and off-frame faces excluded).
    faces: int = 0
    leaked: int = 0
    mean_altered_fraction: float = float("nan")
    background_damaged_fraction: float = float("nan")
    background_mean_abs_diff: float = float("nan")
    obscured_items: int = 0
    detection: DetectionCounts | None = None
    #: model -> {"faces": measured, "reidentified": n, "rate": n/measured, "unmeasured": no landmarks}
    reidentification: dict[str, dict] = field(default_factory=dict)
    #: model -> TrackConsistency as a dict (video ground truth with track ids only).
    track_consistency: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def leak_rate(self) -> float:
        return self.leaked / self.faces if self.faces else float("nan")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["leak_rate"] = self.leak_rate
        out["detection"] = None if self.detection is None else self.detection.to_dict()
        return _json_safe(out)

    def table(self) -> str:
        """A readable multi-line summary."""
        rows = [
            ("annotations", f"{self.annotations} ({self.format}, {self.items} images/frames)"),
            ("anonymizer", self.anonymizer),
            ("faces scored", str(self.faces)),
            ("leaked faces", f"{self.leaked} ({_pct(self.leak_rate)})"),
            ("mean altered fraction", f"{self.mean_altered_fraction:.3f}"),
            ("background damage", f"{_pct(self.background_damaged_fraction)} of far-from-face pixels changed (mean |diff| {self.background_mean_abs_diff:.2f})"),
        ]
        if self.obscured_items:
            rows.append(("obscured (fail-closed)", str(self.obscured_items)))
        if self.detection is not None:
            d = self.detection
            rows.append(("detection recall", f"{_pct(d.recall)} ({d.true_positives}/{d.true_positives + d.false_negatives})"))
            rows.append(("detection precision", f"{_pct(d.precision)} ({d.false_positives} false positives)"))
        for model, r in self.reidentification.items():
            rows.append((f"re-identified ({model})", f"{_pct(r['rate'])} ({r['reidentified']}/{r['faces']}; {r['unmeasured']} without landmarks)"))
        for model, c in self.track_consistency.items():
            rows.append(
                (f"track identity ({model})", f"distance within {c['within_mean']:.3f} vs between {c['between_mean']:.3f}; "
                 f"same-person within {_pct(c['within_same_rate'])}, between {_pct(c['between_same_rate'])}")
            )  # fmt: skip
        rows.append(("time", f"{self.seconds:.1f} s"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _json_safe(value):
    """NaN is not JSON: report it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class Evaluator:
    """Accumulates the metrics over images/frames; ``report()`` summarises them."""

    def __init__(
        self,
        settings: EvalSettings = EvalSettings(),
        *,
        annotations: str = "",
        format: str = "",
        anonymizer: str = "",
        embedding_cache: dict | None = None,
    ) -> None:
        """``embedding_cache``: a dict shared by evaluators of the same annotations (e.g. one per
        mode) so that each original face is embedded once; keyed by model, annotations, item, face."""
        self.settings = settings
        self._cache = {} if embedding_cache is None else embedding_cache
        self._report = EvalReport(annotations=annotations, format=format, anonymizer=anonymizer)
        self._fractions: list[float] = []
        self._damage: list[tuple[float, float]] = []
        self._detection: DetectionCounts | None = None
        self._models: list[IdentityModel] = [load_identity_model(name) for name in settings.identity_models]
        self._reid = {m.name: {"faces": 0, "reidentified": 0, "unmeasured": 0} for m in self._models}
        self._track_embeddings: dict[str, dict[str, list[np.ndarray]]] = {m.name: defaultdict(list) for m in self._models}
        self._landmarker = None
        self._started = time.perf_counter()

    def add(
        self,
        original_bgr: np.ndarray,
        anonymized_bgr: np.ndarray,
        truth: AnnotatedImage,
        detections: Detections | None = None,
        obscured: bool = False,
    ) -> None:
        """Score one image/frame. ``detections`` are the detector's boxes for recall and precision
        (None when unknown, e.g. another tool's output, or when the detector skipped this frame)."""
        if original_bgr.shape != anonymized_bgr.shape:
            raise InputError(f"{truth.key}: anonymized image is {anonymized_bgr.shape}, original {original_bgr.shape}")
        index = self._report.items
        self._report.items += 1
        self._report.obscured_items += int(obscured)
        scored = ~truth.ignore
        fractions = face_altered_fraction(original_bgr, anonymized_bgr, truth.xyxy[scored], self.settings.coverage)
        fractions = fractions[~np.isnan(fractions)]
        self._fractions.extend(fractions.tolist())
        self._report.faces += len(fractions)
        self._report.leaked += int((fractions < self.settings.coverage.covered_fraction).sum())
        damage = background_damage(original_bgr, anonymized_bgr, truth.xyxy)
        if damage.pixels:
            self._damage.append((damage.damaged_fraction, damage.mean_abs_diff))
        if detections is not None:
            counts, _ = match_boxes(truth.xyxy, detections.xyxy, iou_threshold=self.settings.iou_threshold, gt_ignore=truth.ignore)
            self._detection = counts if self._detection is None else self._detection + counts
        if self._models and index % self.settings.identity_every == 0 and scored.any():
            self._add_identity(index, original_bgr, anonymized_bgr, truth)

    def _add_identity(self, index: int, original_bgr: np.ndarray, anonymized_bgr: np.ndarray, truth: AnnotatedImage) -> None:
        # Landmarks come from the original: where the attacker knows the face was (module docs of
        # faceanon_video.eval.identity). A face the detector cannot find there is not measured.
        where = (self._report.annotations, index)
        found = self._cache.get(("landmarks", *where))
        if found is None:
            found = self._cache[("landmarks", *where)] = self._find_landmarks(original_bgr)
        _, matched = match_boxes(truth.xyxy, found.xyxy, iou_threshold=0.3)
        for i in np.flatnonzero(~truth.ignore):
            if matched[i] < 0:
                for stats in self._reid.values():
                    stats["unmeasured"] += 1
                continue
            face = found[int(matched[i])]
            for model in self._models:
                key = (model.name, *where, int(i))
                original = self._cache.get(key)
                if original is None:
                    original = self._cache[key] = model.embed([original_bgr], face.xyxy[0], face.landmarks[0])[0]
                anonymized = model.embed([anonymized_bgr], face.xyxy[0], face.landmarks[0], reference_bgr=original_bgr)[0]
                stats = self._reid[model.name]
                stats["faces"] += 1
                stats["reidentified"] += int(model.distance(original, anonymized) <= model.threshold)
                if truth.ids[i] is not None:
                    self._track_embeddings[model.name][truth.ids[i]].append(anonymized)

    def _find_landmarks(self, bgr: np.ndarray) -> Detections:
        if self._landmarker is None:
            # Low threshold and full resolution: this only supplies landmarks for known faces.
            self._landmarker = YuNetDetector(threshold=0.3, min_face_px=12)
        return self._landmarker.detect(bgr)

    def report(self) -> EvalReport:
        r = self._report
        if self._fractions:
            r.mean_altered_fraction = float(np.mean(self._fractions))
        if self._damage:
            r.background_damaged_fraction, r.background_mean_abs_diff = (float(v) for v in np.mean(self._damage, axis=0))
        r.detection = self._detection
        r.reidentification = {
            name: {**stats, "rate": stats["reidentified"] / stats["faces"] if stats["faces"] else float("nan")}
            for name, stats in self._reid.items()
        }
        if self._report.format == "gt-json":  # tracks exist only in video ground truth
            for model in self._models:
                tracks = {k: np.stack(v) for k, v in self._track_embeddings[model.name].items() if v}
                if len(tracks) >= 2:
                    r.track_consistency[model.name] = asdict(track_consistency(tracks, model))
        r.seconds = time.perf_counter() - self._started
        return r


# -- drivers ---------------------------------------------------------------------------------------


def _originals(annotations: Annotations, media: str | Path | None) -> Iterator[tuple[AnnotatedImage, np.ndarray]]:
    """(ground truth, original image) for every annotated image or frame, in order. Video frames
    without an entry in the ground truth have no faces."""
    if annotations.is_video:
        video = Path(media) if media else annotations.video_path
        if video is None:
            raise InputError("the ground truth names no video: give it with --media")
        truth = annotations.by_key()
        with VideoReader(video) as reader:
            for frame in reader:
                yield truth.get(frame.index) or AnnotatedImage(key=frame.index, xyxy=np.zeros((0, 4))), frame.bgr
        return
    for item in annotations.items:
        path = Path(media) / Path(str(item.key)).name if media else item.image_path
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"{path}: cannot read the annotated image (give the image folder with --media)")
        yield item, bgr


def evaluate_pipeline(
    annotations: Annotations, config, settings: EvalSettings = EvalSettings(), *, media=None, source_name: str = "", embedding_cache: dict | None = None
) -> EvalReport:
    """Run the pipeline configured by ``config`` (a ``RunConfig``) over the annotated data and score it.

    Frames are processed one at a time in order (the tracker sees the whole video) through the
    file pipeline's in-order path, so the result is what ``faceanon-video`` would write, before encoding.
    """
    processor = FrameProcessor(config)
    # With tracking on, the detector also reports low-score boxes that only extend existing tracks
    # (ByteTrack's second stage); the detector's own verdict is the boxes above the high threshold.
    high_thresh = processor.tracking.high_thresh
    evaluator = Evaluator(
        settings,
        annotations=source_name,
        format=annotations.format,
        anonymizer=f"faceanon-video --mode {config.mode} --detector {config.detector}",
        embedding_cache=embedding_cache,
    )
    pending: dict[int, tuple] = {}  # frames the processor holds back (as for files), by index

    def score(finished: list[Frame]) -> None:
        for frame in finished:
            truth, original, found = pending.pop(frame.index)
            evaluator.add(original, frame.bgr, truth, detections=found, obscured=frame.obscured)

    for n, (truth, original) in enumerate(_originals(annotations, media)):
        if settings.max_items is not None and n >= settings.max_items:
            break
        if not annotations.is_video:
            score(processor.flush())
            processor.reset()  # unrelated photos: no track carries over
        frame = Frame(bgr=original.copy(), index=int(truth.key) if annotations.is_video else 0)
        detections = processor.detect(frame)
        # Recall/precision judge the detector; what the tracker then paints is judged by the leak rate.
        found = detections if isinstance(detections, Detections) else None
        if found is not None:
            found = found[found.score >= high_thresh]
        pending[frame.index] = (truth, original, found)
        score(processor.finish_held(frame, detections))
    score(processor.flush())
    return evaluator.report()


def evaluate_outputs(
    annotations: Annotations,
    anonymized: str | Path,
    settings: EvalSettings = EvalSettings(),
    *,
    media=None,
    source_name: str = "",
    anonymizer_name: str = "",
    embedding_cache: dict | None = None,
) -> EvalReport:
    """Score already-anonymized output: a video (for video ground truth) or a folder of images
    with the annotated images' file names."""
    anonymized = Path(anonymized)
    evaluator = Evaluator(
        settings, annotations=source_name, format=annotations.format, anonymizer=anonymizer_name or str(anonymized), embedding_cache=embedding_cache
    )
    outputs = _decoded(anonymized) if annotations.is_video else None
    for n, (truth, original) in enumerate(_originals(annotations, media)):
        if settings.max_items is not None and n >= settings.max_items:
            break
        if outputs is not None:
            output = next(outputs, None)
            if output is None:
                raise InputError(f"{anonymized}: has fewer frames than the original (ended at frame {n})")
        else:
            output = cv2.imread(str(anonymized / Path(str(truth.key)).name), cv2.IMREAD_COLOR)
            if output is None:
                raise InputError(f"{anonymized / Path(str(truth.key)).name}: missing or unreadable anonymized image")
        evaluator.add(original, output, truth)
    if outputs is not None and settings.max_items is None and next(outputs, None) is not None:
        # E.g. a tool that reads at a constant frame rate and so duplicates frames of a VFR input.
        log.warning("%s has more frames than the original: frames may be misaligned and the scores wrong", anonymized)
    return evaluator.report()


def _decoded(path: Path) -> Iterator[np.ndarray]:
    with VideoReader(path) as reader:
        for frame in reader:
            yield frame.bgr
