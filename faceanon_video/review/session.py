"""One review: a video, its plan being edited, and the render of it. What the web routes call.

Everything the browser can change goes through ``Plan``'s edit methods (``faceanon_video.plan``),
under one lock; the paths (input, plan, output, reports) are fixed when the session is made, from
the command line. A render runs on a background thread from a snapshot of the plan (the same JSON
a saved plan holds, read back), so a render from the page and ``faceanon-video INPUT --plan`` of
the saved plan get the same plan, to the float.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from faceanon_video.anonymize.filters import obscure_whole_frame
from faceanon_video.config import RunConfig
from faceanon_video.plan import Keyframe, Plan, candidate_sources
from faceanon_video.review.frames import FrameSource
from faceanon_video.types import Frame

log = logging.getLogger(__name__)

#: A track whose first box is farther than this (fraction of the frame side) from every edge
#: appeared in the middle of the picture: a face the detector may have missed before that frame.
EDGE_MARGIN = 0.05
THUMB_HEIGHT_PX = 96
THUMBS_PER_TRACK = 3


class RenderCancelled(Exception):
    """Raised from the progress callback to stop a render (the server is shutting down)."""


class ReviewSession:
    """The state behind the page. ``plan_path``, ``output`` and ``reports`` come from the command
    line; ``config`` is the run's (its anonymizer draws the preview and renders the output)."""

    def __init__(self, source, plan: Plan, plan_path, output, config: RunConfig, reports: list[Path] | None = None, frames: FrameSource | None = None) -> None:
        self.source = Path(source)
        self.plan = plan
        self.plan_path = Path(plan_path)
        self.output = Path(output)
        self.reports = [Path(r) for r in reports or []]
        self.config = config
        self.frames = frames or FrameSource(self.source)
        self.lock = threading.RLock()
        self.saved = plan_path is not None and Path(plan_path).exists()
        self._anonymizer = None
        self._anonymizer_lock = threading.Lock()  # requests run on several threads; anonymizers are not shared-safe
        self.render_state: dict = {"state": "idle", "done": 0, "total": self.frames.frame_count, "error": None, "rendered": False}
        self._render_thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._thumb_rows: dict[int, list[int]] = {}
        self._thumb_frames: FrameSource | None = None  # a decoder of their own: thumbnails never hold up the frame view

    # What the page shows.

    def video(self) -> dict:
        f = self.frames
        return {"name": self.source.name, "frames": f.frame_count, "fps": f.fps, "width": f.width, "height": f.height,
                "plan": self.plan_path.name, "output": self.output.name, "reports": [r.name for r in self.reports],
                "mode": self.config.mode, "preview_mode": self._preview_mode()}

    def state(self) -> dict:
        """Persons, tracks (spans only), regions and blackouts: everything the side panel lists."""
        with self.lock:
            plan = self.plan
            persons = []
            for person in sorted(plan.persons.values(), key=lambda p: p.person_id):
                tracks = [plan.tracks[t] for t in person.track_ids]
                persons.append({
                    "person_id": person.person_id, "decision": person.decision, "gallery_id": person.gallery_id,
                    "tracks": [{"track_id": t.track_id, "first": t.first_frame, "last": t.last_frame, "frames": len(t)} for t in tracks],
                    "frames": sum(len(t) for t in tracks),
                    "first": min((t.first_frame for t in tracks), default=0),
                })
            regions = [
                {"region_id": r.region_id, "mode": r.mode, "end_frame": r.end_frame, "first": r.first_frame, "last": r.last_frame,
                 "keyframes": [{"frame": k.frame, "xyxy": [float(v) for v in k.xyxy]} for k in r.keyframes]}
                for r in sorted(plan.regions.values(), key=lambda r: r.region_id)
            ]
            blackouts = [{"start_frame": s.start_frame, "end_frame": s.end_frame} for s in plan.blackouts]
            return {"persons": persons, "regions": regions, "blackouts": blackouts, "saved": self.saved, "problems": plan.validate()[:5]}

    def timeline(self) -> dict:
        """Per-frame counts for the timeline canvas, and the frames worth a look (with why)."""
        with self.lock:
            plan = self.plan
            n = self.frames.frame_count
            anonymized = np.zeros(n, np.int32)
            spared = np.zeros(n, np.int32)
            misses: list[dict] = []
            width, height = self.frames.width, self.frames.height
            for track in plan.tracks.values():
                frames = track.frames[track.frames < n]
                target = spared if plan.persons[track.person_id].decision == "spare" else anonymized
                np.add.at(target, frames, 1)
                x0, y0, x1, y1 = track.xyxy[0].tolist()
                margin_x, margin_y = EDGE_MARGIN * width, EDGE_MARGIN * height
                if track.first_frame > 0 and x0 > margin_x and y0 > margin_y and x1 < width - margin_x and y1 < height - margin_y:
                    misses.append({"frame": track.first_frame, "kind": "mid_frame", "why": f"track {track.track_id} (person {track.person_id}) appears mid-frame"})
            c = plan.candidates
            for frame, score, source in zip(c.data.get("frame", np.zeros(0, np.int64)).tolist(), c.score.tolist(), candidate_sources(c)):
                why = f"second detector disagrees ({score:.2f})" if source == "second_detector" else f"low-confidence detection ({score:.2f})"
                misses.append({"frame": int(frame), "kind": source, "why": why})
            obscured = np.zeros(n, bool)
            blackout = np.zeros(n, bool)
            for span in plan.obscured:
                obscured[span.start_frame : span.end_frame + 1] = True
            for span in plan.blackouts:
                blackout[span.start_frame : span.end_frame + 1] = True
            regions = np.zeros(n, np.int32)
            for region in plan.regions.values():
                regions[region.first_frame : min(n, region.last_frame + 1)] += 1
        misses = _by_frame(misses)
        return {"frames": n, "anonymized": anonymized.tolist(), "spared": spared.tolist(), "regions": regions.tolist(),
                "obscured": _spans(obscured), "blackouts": _spans(blackout), "misses": misses}

    def faces(self, index: int) -> dict:
        """Every box on frame ``index`` for the overlay: track rows (spared ones too), regions, candidates."""
        with self.lock:
            plan = self.plan
            tracks = []
            for track in plan.tracks.values():
                row = track.row(index)
                if row is not None:
                    tracks.append({"track_id": track.track_id, "person_id": track.person_id, "xyxy": track.xyxy[row].tolist(),
                                   "score": float(track.score[row]), "detected": bool(track.detected[row]),
                                   "decision": plan.persons[track.person_id].decision})
            regions = [{"region_id": r.region_id, "xyxy": box.tolist(), "keyframe": any(k.frame == index for k in r.keyframes)}
                       for r in plan.regions.values() if (box := r.box_on(index)) is not None]
            c = plan.candidates
            on = c.data.get("frame", np.zeros(0, np.int64)) == index
            candidates = [{"xyxy": box.tolist(), "score": float(s), "source": str(src)}
                          for box, s, src in zip(c.xyxy[on], c.score[on], np.asarray(candidate_sources(c), dtype=object)[on])]
            return {"frame": index, "tracks": tracks, "regions": regions, "candidates": candidates,
                    "blacked_out": plan.is_blacked_out(index), "obscure_reason": plan.obscure_reason(index)}

    def original(self, index: int) -> np.ndarray:
        return self.frames.bgr(index)

    def preview(self, index: int) -> np.ndarray:
        """Frame ``index`` as the render will make it (the run's anonymizer on the plan's faces)."""
        frame = Frame(bgr=self.frames.bgr(index).copy(), index=index)
        with self.lock:
            if self.plan.is_blacked_out(index):
                return obscure_whole_frame(frame).bgr
            faces = self.plan.faces_on(index)
        if not len(faces):
            return frame.bgr
        with self._anonymizer_lock:
            return self._preview_anonymizer().apply(frame, faces).bgr

    def thumbnail(self, track_id: int, k: int) -> np.ndarray:
        """The ``k``-th face crop of a track (its best-scored detected rows, spread over its span)."""
        with self.lock:
            track = self.plan.tracks.get(track_id)
            if track is None:
                raise KeyError(f"no track {track_id}")
            rows = self._thumb_rows.get(track_id)
            if rows is None or max(rows) >= len(track):
                rows = self._thumb_rows[track_id] = _thumb_rows(track, self.frames.decode_cost)
            row = rows[min(k, len(rows) - 1)]
            frame_index, box = int(track.frames[row]), track.xyxy[row]
            if self._thumb_frames is None:
                self._thumb_frames = FrameSource(self.source, cache_bytes=0, index=(self.frames.pts, self.frames.keyframe_pts))
        image = self._thumb_frames.bgr(frame_index)
        x0, y0, x1, y1 = _padded(box, image.shape, 0.25)
        crop = image[y0:y1, x0:x1]
        scale = THUMB_HEIGHT_PX / max(1, crop.shape[0])
        return cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), THUMB_HEIGHT_PX), interpolation=cv2.INTER_AREA)

    # Edits: each raises ValueError (shown in the page) and leaves the plan as it was.

    def set_decision(self, person_id: int, decision: str) -> None:
        with self.lock:
            self.plan.set_decision(person_id, decision)
            self.saved = False

    def merge(self, keep: int, other: int) -> int:
        with self.lock:
            merged = self.plan.merge_persons(keep, other)
            self.saved = False
            return merged

    def split(self, track_id: int, at_frame: int) -> int:
        with self.lock:
            new_id = self.plan.split_track(track_id, at_frame)
            self._thumb_rows.pop(track_id, None)
            self.saved = False
            return new_id

    def add_region(self, frame: int, xyxy, mode: str = "interpolate", end_frame: int | None = None) -> int:
        with self.lock:
            region_id = self.plan.add_region([(frame, xyxy)], mode=mode, end_frame=end_frame)
            self.saved = False
            return region_id

    def update_region(self, region_id: int, keyframe: dict | None = None, mode: str | None = None, end_frame: int | None | str = "keep") -> None:
        """Add or replace a keyframe (``{"frame", "xyxy"}``), or change the mode or end frame."""
        with self.lock:
            region = self.plan.regions.get(region_id)
            if region is None:
                raise ValueError(f"no region {region_id} in the plan")
            before = (list(region.keyframes), region.mode, region.end_frame)
            if keyframe is not None:
                frame = int(keyframe["frame"])
                keys = [k for k in region.keyframes if k.frame != frame] + [Keyframe(frame, tuple(float(v) for v in keyframe["xyxy"]))]
                region.keyframes = sorted(keys, key=lambda k: k.frame)
            if mode is not None:
                region.mode = mode
            if end_frame != "keep":
                region.end_frame = None if end_frame is None else int(end_frame)
            problems = [p for p in self.plan.validate() if p.startswith(f"region {region_id}:")]
            if problems:
                region.keyframes, region.mode, region.end_frame = before
                raise ValueError(problems[0])
            self.saved = False

    def remove_keyframe(self, region_id: int, frame: int) -> None:
        with self.lock:
            region = self.plan.regions.get(region_id)
            if region is None:
                raise ValueError(f"no region {region_id} in the plan")
            keys = [k for k in region.keyframes if k.frame != frame]
            if not keys:
                self.plan.remove_region(region_id)
            else:
                region.keyframes = keys
                if region.end_frame is not None and region.end_frame < keys[-1].frame:
                    region.end_frame = None
            self.saved = False

    def remove_region(self, region_id: int) -> None:
        with self.lock:
            self.plan.remove_region(region_id)
            self.saved = False

    def add_blackout(self, start: int, end: int) -> None:
        with self.lock:
            self.plan.add_blackout(start, end)
            self.saved = False

    def remove_blackout(self, start: int, end: int) -> None:
        with self.lock:
            self.plan.remove_blackout(start, end)
            self.saved = False

    def save(self) -> Path:
        """Write the plan to ``plan_path`` (validated, atomic: a crash leaves the old file whole)."""
        with self.lock:
            self.plan.save(self.plan_path, overwrite=True)
            self.saved = True
        return self.plan_path

    # Rendering.

    def start_render(self) -> None:
        """Render the plan as it is now to ``output`` (and the reports) on a background thread."""
        from faceanon_video.planning import render

        with self.lock:
            if self._render_thread is not None and self._render_thread.is_alive():
                raise ValueError("a render is already running")
            snapshot = Plan.from_dict(self.plan.to_dict(), source="the plan being reviewed")
            self.render_state = {"state": "running", "done": 0, "total": self.frames.frame_count, "error": None, "rendered": False, "started": time.time()}
        config = replace(self.config, overwrite=True, report=[str(r) for r in self.reports], progress=False)
        self._cancel.clear()

        def progress(done: int, total: int | None = None) -> None:
            if self._cancel.is_set():
                raise RenderCancelled("the review server stopped")
            self.render_state["done"] = int(done)
            if total:
                self.render_state["total"] = int(total)

        def run() -> None:
            try:
                summary = render(self.source, self.output, snapshot, config, progress=progress)
            except Exception as exc:  # noqa: BLE001 - any failure is shown in the page; nothing half-written stays
                log.warning("render failed: %s: %s", type(exc).__name__, exc)
                self.render_state.update(state="failed", error=f"{type(exc).__name__}: {exc}" if not isinstance(exc, RenderCancelled) else "cancelled")
                return
            self.render_state.update(state="done", done=summary.frames, rendered=True, obscured=summary.obscured_frames,
                                     seconds=round(time.time() - self.render_state["started"], 1))

        self._render_thread = threading.Thread(target=run, name="review-render", daemon=True)
        self._render_thread.start()

    def render_progress(self) -> dict:
        return dict(self.render_state)

    def close(self) -> None:
        """Stop a running render (its partial output is removed by the writer) and close the video."""
        self._cancel.set()
        if self._render_thread is not None:
            self._render_thread.join(timeout=30)
        self.frames.close()
        if self._thumb_frames is not None:
            self._thumb_frames.close()

    # Internals.

    def _preview_mode(self) -> str:
        # The diffusion anonymizer takes seconds a face on a CPU: the preview shows solid boxes where
        # the render will put fake faces (the boxes are what the reviewer checks).
        return "solid" if self.config.mode == "diffusion" else self.config.mode

    def _preview_anonymizer(self):
        if self._anonymizer is None:
            from faceanon_video.processor import build_anonymizer

            self._anonymizer = build_anonymizer(replace(self.config, mode=self._preview_mode()))
        return self._anonymizer


def _spans(mask: np.ndarray) -> list[list[int]]:
    """Inclusive [start, end] runs of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [[int(a), int(b) - 1] for a, b in zip(edges[::2], edges[1::2])]


def _by_frame(misses: list[dict]) -> list[dict]:
    """One entry per frame (a shot cut starts many tracks at once), in frame order."""
    merged: dict[int, list[dict]] = {}
    for miss in misses:
        merged.setdefault(miss["frame"], []).append(miss)
    return [{"frame": frame, "why": "; ".join(m["why"] for m in ms), "kinds": sorted({m["kind"] for m in ms})}
            for frame, ms in sorted(merged.items())]


def _thumb_rows(track, decode_cost) -> list[int]:
    """THUMBS_PER_TRACK rows spread over the track, one from each third: among its detected rows
    scored within 10 % of the third's best, the quickest to decode (``decode_cost(frame)``)."""
    rows = np.flatnonzero(track.detected) if track.detected.any() else np.arange(len(track))
    picks = []
    for part in np.array_split(rows, min(THUMBS_PER_TRACK, len(rows))):
        good = part[track.score[part] >= 0.9 * track.score[part].max()]
        picks.append(int(min(good.tolist(), key=lambda row: decode_cost(int(track.frames[row])))))
    return picks


def _padded(box, shape, pad: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    height, width = shape[:2]
    return (max(0, int(x0 - pad * w)), max(0, int(y0 - pad * h)), min(width, int(np.ceil(x1 + pad * w))), min(height, int(np.ceil(y1 + pad * h))))
