"""Recall on the synthetic small-face clips: which face-frames leaked, by face size and by kind.

A face-frame *leaks* when the face's detail survives in the anonymized frame, exactly as
``faceanon-video eval`` decides it (``eval.metrics.face_altered_fraction`` below the covered
fraction: SSIM on a canonical, contrast-stretched crop), not when "few pixels changed". Only faces
the tool promises to catch are in the target: at least ``min_face_px`` tall and at least
``min_visible`` on screen and unoccluded (a sliver at the frame edge is not a face yet).

Used by ``tests/test_recall.py`` (a short clip, must leak nothing) and ``benchmarks/recall.py``
(every resolution, against deface).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from faceanon_video.eval.metrics import CoverageSettings, face_altered_fraction
from faceanon_video.testing.synthetic import SyntheticClip, recall_scenario, render_clip

__all__ = ["RESOLUTIONS", "LeakTable", "anonymize_clip", "leak_causes", "recall_clip", "score_leaks"]

RESOLUTIONS = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}
#: Face heights (px) of each size bucket, lower bound inclusive.
SIZE_BUCKETS = ((24, "24-31"), (32, "32-47"), (48, "48+"))
#: The kind of a face-frame, from its ground-truth conditions (first match wins).
KINDS = (("edge", {"truncated"}), ("profile", {"squeeze", "halfcrop"}), ("tilt", {"tilt"}), ("blur", {"blur"}), ("dim", {"dim"}), ("grey", {"grey"}))


def recall_clip(resolution: str | tuple[int, int], n_frames: int, seed: int = 0, data_dir=None) -> SyntheticClip:
    """The twelve-person small-face scene (``synthetic.recall_scenario``) at a named or given size."""
    width, height = RESOLUTIONS[resolution] if isinstance(resolution, str) else resolution
    return render_clip(n_frames, seed=seed, data_dir=data_dir, scenario=recall_scenario(width, height, n_frames), size=(width, height))


def anonymize_clip(clip: SyntheticClip, config, trace: dict | None = None) -> list[np.ndarray]:
    """The clip's frames through the file pipeline's in-order path (``FrameProcessor.finish_held``,
    as ``faceanon-video`` runs a file, before encoding), as BGR frames in order. ``trace``, if
    given, gets per frame index the boxes detected (``"detected"``, full passes) and painted
    (``"painted"``), for ``leak_causes``."""
    from faceanon_video.pipeline import FrameProcessor
    from faceanon_video.types import Detections, Frame

    processor = FrameProcessor(config)
    if trace is not None:
        detected, painted = trace.setdefault("detected", {}), trace.setdefault("painted", {})
        apply = processor.anonymizer.apply

        def traced_apply(frame, faces):
            painted[frame.index] = faces.xyxy.copy()
            return apply(frame, faces)

        processor.anonymizer.apply = traced_apply
    out: dict[int, np.ndarray] = {}
    for index, bgr in enumerate(clip.frames):
        frame = Frame(bgr=bgr.copy(), index=index)
        detections = processor.detect(frame)
        if trace is not None and isinstance(detections, Detections):
            detected[index] = detections.xyxy.copy()
        for done in processor.finish_held(frame, detections):
            out[done.index] = done.bgr
    for done in processor.flush():
        out[done.index] = done.bgr
    return [out[i] for i in range(len(clip.frames))]


def _inside_fraction(box: np.ndarray, others: np.ndarray) -> tuple[float, float]:
    """(largest share of ``box`` inside one of ``others``, largest IoU with one of them)."""
    if not len(others):
        return 0.0, 0.0
    lt, rb = np.maximum(box[:2], others[:, :2]), np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area, areas = np.prod(box[2:] - box[:2]), np.prod(others[:, 2:] - others[:, :2], axis=1)
    return float((inter / area).max()), float((inter / (area + areas - inter)).max())


def leak_causes(clip: SyntheticClip, table: LeakTable, trace: dict) -> dict[str, int]:
    """Why each leaked face-frame leaked (``trace`` from ``anonymize_clip``), counted:
    ``covered`` (a painted box held >= 60 % of the face: its detail survived the filter),
    ``never-detected`` (no full pass found that face in the whole clip), ``late`` (found only
    after this frame, and the look-back did not reach back here), ``lost`` (found before, then
    neither detected nor carried by the tracker here). Each leaked record also gets its ``cause``."""
    first_found: dict[int, int] = {}
    for index in sorted(trace["detected"]):
        for face in clip.gt_frames[index]["faces"]:
            if face["id"] not in first_found and _inside_fraction(np.array(face["xyxy"], np.float32), trace["detected"][index])[1] >= 0.3:
                first_found[face["id"]] = index
    counts: dict[str, int] = defaultdict(int)
    for record in table.leaked:
        face = next(f for f in clip.gt_frames[record["frame"]]["faces"] if f["id"] == record["id"])
        painted = trace["painted"].get(record["frame"], np.zeros((0, 4), np.float32))
        first = first_found.get(record["id"])
        if _inside_fraction(np.array(face["xyxy"], np.float32), painted)[0] >= 0.6:
            cause = "covered"
        elif first is None:
            cause = "never-detected"
        else:
            cause = "late" if first > record["frame"] else "lost"
        record["cause"] = cause
        counts[cause] += 1
    return dict(counts)


def _bucket(size_px: float) -> str:
    return [name for low, name in SIZE_BUCKETS if size_px >= low][-1]


def _kind(conditions: Iterable[str]) -> str:
    conditions = set(conditions)
    return next((name for name, wanted in KINDS if conditions & wanted), "plain")


@dataclass
class LeakTable:
    """Scored face-frames and the leaked ones (each a dict: frame, id, size_px, kind, altered)."""

    scored: list[dict] = field(default_factory=list)
    leaked: list[dict] = field(default_factory=list)

    @property
    def leak_rate(self) -> float:
        return len(self.leaked) / len(self.scored) if self.scored else 0.0

    def by(self, key: str) -> dict[str, tuple[int, int]]:
        """{bucket or kind: (leaked, scored)}."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for record in self.scored:
            counts[record[key]][1] += 1
        for record in self.leaked:
            counts[record[key]][0] += 1
        return {k: tuple(v) for k, v in sorted(counts.items())}

    def longest_run(self) -> int:
        """Most consecutive leaked frames of one face."""
        frames = defaultdict(set)
        for record in self.leaked:
            frames[record["id"]].add(record["frame"])
        best = 0
        for seen in frames.values():
            for f in seen:
                if f - 1 not in seen:
                    n = 1
                    while f + n in seen:
                        n += 1
                    best = max(best, n)
        return best

    def summary(self) -> dict:
        return {
            "face_frames": len(self.scored),
            "leaked": len(self.leaked),
            "leak_rate": round(self.leak_rate, 4),
            "longest_run": self.longest_run(),
            "by_size": self.by("bucket"),
            "by_kind": self.by("kind"),
        }


def score_leaks(
    clip: SyntheticClip, anonymized: Iterable[np.ndarray], min_face_px: float = 24, min_visible: float = 0.5, settings: CoverageSettings = CoverageSettings()
) -> LeakTable:
    """Which target face-frames of ``clip`` kept their detail in ``anonymized`` (one BGR frame per clip frame)."""
    table = LeakTable()
    for index, (original, output) in enumerate(zip(clip.frames, anonymized)):
        faces = [f for f in clip.gt_frames[index]["faces"] if f["size_px"] >= min_face_px and f["visible"] >= min_visible]
        if not faces:
            continue
        altered = face_altered_fraction(original, output, np.array([f["xyxy"] for f in faces], np.float32), settings)
        for face, fraction in zip(faces, altered):
            if np.isnan(fraction):
                continue
            record = {
                "frame": index,
                "id": face["id"],
                "size_px": face["size_px"],
                "bucket": _bucket(face["size_px"]),
                "kind": _kind(face["conditions"]),
                "visible": face["visible"],
                "altered": round(float(fraction), 3),
            }
            table.scored.append(record)
            if fraction < settings.covered_fraction:
                table.leaked.append(record)
    return table
