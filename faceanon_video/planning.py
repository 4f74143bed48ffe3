"""Making and rendering plans (``faceanon_video.plan``) with the file runner (``pipeline.process_video``).

* ``analyse(source, config)``: the normal run's decode -> detect -> ``TrackingStage`` (held frames,
  backfill, tiles, fail-closed bookkeeping) with a recorder in place of the anonymizer and no encoder,
  then the person layer (``people.people.identify_people``): a ``Plan``.
* ``render(source, destination, plan, config)``: the normal run's decode -> anonymize -> encode with
  the plan's faces in place of detection and tracking: same encoder, metadata policy, vault, report
  and fail-closed rules. Seeds are per person: ``people.seeds.PersonSeeder`` (HKDF of the key) of the
  person's id (its gallery id with ``--gallery``), so every track of one person gets the same seed.
* ``process_planned``: what ``pipeline.process_file`` runs for ``--save-plan``, ``--plan`` and for
  videos in a seeded mode (``config.SEEDED_MODES``: diffusion), which are analysed and rendered in
  one go (two decodes; diffusion costs far more than a second decode) so a seeded anonymizer gives
  one fake face per person across exits, occlusions and shot cuts. Classic modes stay one pass (the
  seed changes nothing there). Live streams cannot wait for the end of the video and keep per-track
  seeds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceanon_video import __version__
from faceanon_video.config import SEEDED_MODES, RunConfig, option_name
from faceanon_video.errors import ConfigError, InputError
from faceanon_video.failures import DamagedFrame
from faceanon_video.io.outputs import OutputSet, with_output_set
from faceanon_video.geometry import box_intersection
from faceanon_video.keys import load_key, random_key
from faceanon_video.plan import Person, Plan, PlanInput, PlanTrack, Span, candidates_detections
from faceanon_video.processor import FrameProcessor
from faceanon_video.track.stage import Faces
from faceanon_video.types import Detections, Frame

__all__ = ["analyse", "render", "process_planned", "plan_path_for", "AnalysisProcessor", "PlanProcessor"]

log = logging.getLogger(__name__)

#: ``progress(frames_done, frames_total)``; total is 0 when the container does not say.
Progress = Callable[[int, int], None]
#: A low-score detection counts as part of a track when at least this fraction of its box lies in
#: one of the frame's tracked faces (the tracker pads its boxes, so IoU would undercount).
CANDIDATE_INSIDE = 0.5
#: The second detector of an analysis (``--second-detector``): CenterFace, a different network from
#: YuNet (the default first detector), so its misses are less likely to coincide. It runs on every
#: SECOND_DETECTOR_EVERY-th frame only: at 16 the analysis costs ~10-20 % more (README: Plan files).
SECOND_DETECTOR = "centerface"
SECOND_DETECTOR_EVERY = 16
#: It sees at most this many pixels of a frame (960x540): at 1080p it looks for faces of 40 px and
#: up (the first detector's tile covers the smaller ones), at the cost of a 540p pass.
SECOND_DETECTOR_PIXELS = 960 * 540
#: Only its confident faces count (CenterFace's own default, 0.3, is tuned for recall: too many
#: false alarms for a reviewer's list).
SECOND_DETECTOR_THRESH = 0.5
#: A face of the second detector is one the plan has when at least this fraction of the smaller of
#: it and a tracked face lies in the other (containment: the tracker pads its boxes and the two
#: networks frame a face differently, so IoU would undercount).
SECOND_DETECTOR_INSIDE = 0.5


def disagreements(second_xyxy: np.ndarray, tracked_xyxy: np.ndarray, min_face_px: float) -> np.ndarray:
    """(n,) bool: which of the second detector's boxes the plan has no face for. A box counts when
    it is at least ``min_face_px`` wide and overlaps no tracked box by SECOND_DETECTOR_INSIDE of the
    smaller of the two."""
    second = np.asarray(second_xyxy, np.float64).reshape(-1, 4)
    tracked = np.asarray(tracked_xyxy, np.float64).reshape(-1, 4)
    big_enough = second[:, 2] - second[:, 0] >= min_face_px
    if not len(tracked):
        return big_enough
    area_s = np.prod(second[:, 2:] - second[:, :2], axis=1)
    area_t = np.prod(tracked[:, 2:] - tracked[:, :2], axis=1)
    smaller = np.maximum(np.minimum(area_s[:, None], area_t[None, :]), 1e-6)
    seen = (box_intersection(second, tracked) / smaller >= SECOND_DETECTOR_INSIDE).any(axis=1)
    return big_enough & ~seen


def plan_path_for(plan: str | Path, source) -> Path:
    """Where one input's plan is (``--save-plan`` / ``--plan``: a file, a folder or a ``{stem}`` name)."""
    from faceanon_video.track.tracks_io import tracks_path_for

    return tracks_path_for(plan, source, suffix=".plan.json")


# 1. Analysis: record what the anonymizer would have been given.


class _Recorder:
    """The anonymizer of an analysis: keeps every tracked face and embeds a few per track (the
    person layer), leaves the pixels alone."""

    def __init__(self) -> None:
        from faceanon_video.people.embed import TrackEmbeddings

        self.rows: dict[int, list[tuple]] = defaultdict(list)  # track id -> (frame, xyxy, landmarks, score, detected)
        self.embeddings = TrackEmbeddings()
        self.size: tuple[int, int] | None = None

    def apply(self, frame: Frame, faces: Detections) -> Frame:
        self.size = self.size or (frame.width, frame.height)
        if faces.track_id is None:
            raise ConfigError("a plan needs tracking (--no-track gives faces no identity to review)")
        predicted = faces.predicted if faces.predicted is not None else np.zeros(len(faces), bool)
        for i, track_id in enumerate(faces.track_id.tolist()):
            self.rows[track_id].append((frame.index, faces.xyxy[i], faces.landmarks[i], faces.score[i], not predicted[i]))
        self.embeddings.add(frame, faces)
        return frame


class AnalysisProcessor(FrameProcessor):
    """A ``FrameProcessor`` that detects and tracks as a normal run does and records, per frame, the
    faces it would anonymize, the faces that may have been missed (candidates: low-score detections
    left out of every track and, with ``config.second_detector``, faces a second detector finds on
    every SECOND_DETECTOR_EVERY-th frame where no track is) and the frames it had to obscure."""

    def __init__(self, config: RunConfig) -> None:
        from faceanon_video.detect.centerface import CenterFaceDetector

        super().__init__(config, anonymizer=_Recorder())
        self.recorder: _Recorder = self.anonymizer
        self._raw: dict[int, Detections] = {}  # frame -> full-frame detections, until it is released
        self.candidates: list[tuple[int, np.ndarray, float, str]] = []  # (frame, xyxy, score, source)
        self.failed: dict[int, str] = {}  # frame -> why it was obscured
        # Built now so a model error surfaces before any frame; run on released frames (one thread,
        # in order). Not ``build_detector``: no tiles (the shrunk pass alone keeps its cost down) and
        # outside the FACEANON_FAULTS seam, whose call counts are the first detector's.
        self.second = CenterFaceDetector(SECOND_DETECTOR_THRESH, config.min_face_px) if config.second_detector else None
        self.second_s = 0.0  # time spent in it (logged: its share of the analysis)

    def detect(self, frame: Frame, force: bool = False):
        result = super().detect(frame, force)
        if isinstance(result, Detections):
            self._raw[frame.index] = result  # one key per frame: safe from the detection threads
        return result

    def _release(self, frame: Frame, faces: Faces, keep=None) -> Frame:
        raw = self._raw.pop(frame.index, None)
        if frame.warm_up:
            return super()._release(frame, faces, keep)  # before --start: not in the plan (dropped there)
        if raw is not None and isinstance(faces, Detections):
            self._keep_candidates(frame.index, raw, faces)
        if self.second is not None and frame.index % SECOND_DETECTOR_EVERY == 0 and isinstance(faces, Detections):
            self._ask_second_detector(frame, faces)
        return super()._release(frame, faces, keep)

    def _ask_second_detector(self, frame: Frame, faces: Detections) -> None:
        from faceanon_video.detect.centerface import CENTERFACE_MIN_FACE_PX

        started = time.perf_counter()
        budget_scale = math.sqrt(SECOND_DETECTOR_PIXELS / (frame.width * frame.height))
        self.second.min_face_px = max(self.config.min_face_px, CENTERFACE_MIN_FACE_PX / min(1.0, budget_scale))
        try:
            found = self.second.detect(frame)
        except Exception as exc:  # noqa: BLE001 - a hint for the reviewer only: the frame's faces are decided
            log.warning("frame %d: the second detector failed (%s); no hint for this frame", frame.index, exc)
            return
        finally:
            self.second_s += time.perf_counter() - started
        for i in np.flatnonzero(disagreements(found.xyxy, faces.xyxy, self.config.min_face_px)):
            self.candidates.append((frame.index, found.xyxy[i], float(found.score[i]), "second_detector"))

    def _keep_candidates(self, index: int, raw: Detections, faces: Detections) -> None:
        low = raw[raw.score < self.tracking.high_thresh]
        if not len(low):
            return
        inside = np.zeros(len(low), bool)
        if len(faces):
            area = np.maximum(low.widths * low.heights, 1e-6)
            inside = (box_intersection(low.xyxy, faces.xyxy) / area[:, None] >= CANDIDATE_INSIDE).any(axis=1)
        for i in np.flatnonzero(~inside):
            self.candidates.append((index, low.xyxy[i], float(low.score[i]), "low_score"))

    def _obscure(self, frame: Frame, error: BaseException) -> Frame:
        self.failed[frame.index] = f"{type(error).__name__}: {error}"[:200]
        return super()._obscure(frame, error)

    def reset(self) -> None:
        super().reset()
        self._raw.clear()

    def reset_recorded(self) -> None:
        """Forget what was recorded (a worker analysing another segment with the same models)."""
        self.reset()
        self.reset_counters()
        self.recorder.rows.clear()
        self.recorder.embeddings.reset()
        self.recorder.size = None
        self.candidates.clear()
        self.failed.clear()
        self.second_s = 0.0


def analysis_config(config: RunConfig) -> RunConfig:
    """The settings of an analysis: what decides the faces; nothing that writes or paints."""
    if not config.track:
        raise ConfigError("--save-plan and seeded modes need tracking (drop --no-track)")
    return dataclasses.replace(
        config, mode="none", spare=[], only=[], vault=None, people=None, gallery=None, save_tracks=None, report=[],
        keep_audio=False, save_plan=None, plan=None,
    )


def analyse(source: str | Path, config: RunConfig, progress: Progress | None = None) -> Plan:
    """Decode, detect, track and link people in ``source``; nothing is written. The plan's input
    digest, size and frame count bind it to this file."""
    return _analyse(source, config, progress)[0]


def _analyse(source: str | Path, config: RunConfig, progress: Progress | None = None):
    """(plan, people) of ``source``: ``people.people.People`` holds the person embeddings (``--people``)."""
    from faceanon_video.io.decode import VideoReader
    from faceanon_video.people.people import identify_people
    from faceanon_video.pipeline import _open_gallery, process_video
    from faceanon_video.report import sha256_file

    reader = VideoReader(source, start_s=config.start_s, end_s=config.end_s, strict=config.strict)  # header only
    info = reader.info
    reader.close()
    processor = AnalysisProcessor(analysis_config(config))
    _report_progress(processor, progress, info.frame_count)
    gallery = _open_gallery(config)  # a wrong key fails here, before the video is read
    started = time.perf_counter()
    process_video(source, None, processor.config, processor)
    recorder = processor.recorder
    people = identify_people(recorder.embeddings.tracks, gallery)
    plan = assemble_plan(
        source, config, info, sha256_file(source), processor.frames, recorder.size, analysis_settings(processor),
        recorder.rows, people, processor.candidates, processor.failed,
    )
    seconds = time.perf_counter() - started
    log.info(
        "%s: analysed %d frames in %.1f s (second detector: %.1f s): %d tracks, %d people, %d candidates, %d frames obscured",
        source, processor.frames, seconds, processor.second_s, len(plan.tracks), len(plan.persons), len(plan.candidates), len(processor.failed),
    )
    return plan, people


def analysis_settings(processor: AnalysisProcessor) -> dict:
    """The plan's ``settings``: what the analysis decided the faces with."""
    config = processor.config
    return {
        "faceanon_video": __version__, "detector": config.detector, "thresh": processor.tracking.high_thresh,
        "low_thresh": processor.tracking.low_thresh, "min_face_px": config.min_face_px,
        "detect_every": processor.detect_every, "lost_track_buffer": config.lost_track_buffer, "track": config.track,
        "second_detector": {"detector": SECOND_DETECTOR, "every": SECOND_DETECTOR_EVERY, "thresh": SECOND_DETECTOR_THRESH} if processor.second else None,
    }


def assemble_plan(source, config: RunConfig, info, sha256: str, frame_count: int, size, settings: dict, rows: dict[int, list[tuple]], people, candidates: list[tuple], failed: dict[int, str]) -> Plan:
    """A ``Plan`` from what an analysis recorded (one process's, or the segments' merged by
    ``segments``): ``rows`` track id -> [(frame, xyxy, landmarks, score, detected)] in frame order,
    ``people`` (``people.people.People``) the tracks' persons, ``candidates`` [(frame, xyxy, score,
    source)], ``failed`` frame -> why it was obscured."""
    width, height = size or (info.width, info.height)
    plan = Plan(
        input=PlanInput(
            name=Path(source).name, sha256=sha256, frame_count=frame_count, width=width, height=height,
            fps=float(info.fps), time_base=f"{info.time_base.numerator}/{info.time_base.denominator}",
            start_s=config.start_s, end_s=config.end_s,
        ),
        settings=settings,
        obscured=_spans(failed),
    )
    for track_id, track_rows in sorted(rows.items()):
        frames, xyxy, landmarks, score, detected = zip(*track_rows)
        plan.tracks[track_id] = PlanTrack(track_id, people.person_of_track[track_id], frames, np.stack(xyxy), np.stack(landmarks), score, detected)
    for track_id, person_id in sorted(people.person_of_track.items()):
        if track_id in plan.tracks:
            person = plan.persons.setdefault(person_id, Person(person_id, gallery_id=people.gallery_ids.get(person_id)))
            person.track_ids.append(track_id)
    if candidates:
        frames, xyxy, score, sources = zip(*sorted(candidates, key=lambda c: c[0]))
        plan.candidates = candidates_detections(frames, np.stack(xyxy), score, sources)
    return plan


def _spans(failed: dict[int, str]) -> list[Span]:
    """Consecutive frames obscured for the same reason, as one span each."""
    spans: list[Span] = []
    for index in sorted(failed):
        last = spans[-1] if spans else None
        if last is not None and last.end_frame == index - 1 and last.reason == failed[index]:
            last.end_frame = index
        else:
            spans.append(Span(index, index, failed[index]))
    return spans


def _report_progress(processor: FrameProcessor, progress: Progress | None, total: int) -> None:
    if progress is None:
        return
    done = [0]

    def released(_frame: Frame) -> None:
        done[0] += 1
        progress(done[0], total)

    processor.on_release = released


# 2. Rendering: the plan's faces in place of detection and tracking.


class PlanObscured(RuntimeError):
    """A frame the analysis could not check: obscured whole in the render too."""


class PlanProcessor(FrameProcessor):
    """A ``FrameProcessor`` whose faces come from a plan: no detector runs, nothing is held back.
    Fail closed as ever: a frame the analysis obscured, a damaged frame and a frame whose
    anonymization raised are obscured whole; blackouts are obscured whole by decision (counted in
    ``blacked_out_frames``, not as failures)."""

    def __init__(self, config: RunConfig, plan: Plan, anonymizer=None) -> None:
        from faceanon_video.people.seeds import PersonSeeder

        super().__init__(config, make_detector=_no_detector, anonymizer=anonymizer)
        self.plan = plan
        self.seeder = PersonSeeder(load_key(config.key_file) if config.key_file else random_key())
        self.embeddings = None  # the people were linked by the analysis
        self.blacked_out_frames = 0
        self._seen = 0

    @property
    def detect_every(self) -> int:
        return int(self.plan.settings.get("detect_every", 1))  # the coverage the plan was made with (report)

    @property
    def warm_up_s(self) -> float:
        return 0.0  # no tracker to warm up: the plan's faces were tracked with the warm-up already

    def should_detect(self, frame: Frame) -> bool:
        return False

    def detect(self, frame: Frame, force: bool = False):
        return None

    def redetect_job(self, frame: Frame):
        return None

    def finish(self, frame: Frame, detections=None) -> Frame:
        self._check_frame(frame)
        return self._release(frame, self._faces(frame))

    def finish_held(self, frame: Frame, detections=None) -> list[Frame]:
        return [self.finish(frame)]

    def flush(self) -> list[Frame]:
        """End of the video: it must have had exactly the plan's frames (else the plan is for another
        cut of it), and --save-tracks ends with the person of each track."""
        expected = self.plan.input.frame_count
        if self._seen != expected:
            raise InputError(f"the video has {self._seen} frames, the plan was made for one with {expected} ({self.plan.input.name})")
        if self.track_writer is not None:
            self.track_writer.write_people({t: track.person_id for t, track in self.plan.tracks.items()})
        return []

    def reset(self) -> None:
        super().reset()
        self._seen = 0

    def reset_counters(self) -> PlanProcessor:
        super().reset_counters()
        self.blacked_out_frames = 0
        return self

    def report_entry(self) -> dict:
        """What the plan decided, for the redaction report (``report.build_report``)."""
        plan = self.plan
        spared = sorted(p.person_id for p in plan.persons.values() if p.decision == "spare")
        entry = {
            "input_sha256": plan.input.sha256,
            "persons": len(plan.persons),
            "spared_persons": spared,
            "tracks": len(plan.tracks),
            "manual_regions": len(plan.regions),
            "blackouts": [[s.start_frame, s.end_frame] for s in plan.blackouts],
            "blacked_out_frames": self.blacked_out_frames,
        }
        entry["statement"] = (
            f"rendered from a plan (no detection in this run): {len(plan.persons)} people in {len(plan.tracks)} tracks, "
            f"{len(spared)} left visible by decision, {len(plan.regions)} regions added by hand, "
            f"{self.blacked_out_frames} frames blacked out by decision"
        )
        return entry

    def _check_frame(self, frame: Frame) -> None:
        self._seen += 1
        size = (frame.width, frame.height)
        if size != (self.plan.input.width, self.plan.input.height):
            raise InputError(f"frames are {size[0]}x{size[1]}, the plan was made for a {self.plan.input.width}x{self.plan.input.height} video ({self.plan.input.name})")

    def _faces(self, frame: Frame) -> Faces:
        if frame.obscured:
            return DamagedFrame(f"frame {frame.index} is damaged in the input")
        reason = self.plan.obscure_reason(frame.index)
        if reason is not None:
            return PlanObscured(f"frame {frame.index} was not checked by the analysis ({reason})")
        start = time.perf_counter()
        faces = self.plan.faces_on(frame.index, self.seeder)
        self.timings["track"].append(time.perf_counter() - start)
        return faces

    def _anonymize(self, frame: Frame, faces: Faces, keep=None) -> Frame:
        if not isinstance(faces, BaseException) and any(frame.index in s for s in self.plan.blackouts):
            from faceanon_video.anonymize.filters import obscure_whole_frame

            self.frames += 1
            self.blacked_out_frames += 1
            if self.track_writer is not None:
                self.track_writer.write(frame.index, frame.time_s, faces)
            return obscure_whole_frame(frame)  # by decision: no face of it reaches the vault either
        return super()._anonymize(frame, faces, keep)


def _no_detector():
    return None


def check_plan(source: str | Path, plan: Plan, config: RunConfig, check_source: bool = True) -> None:
    """Refuse (one line) a plan that is invalid, of another span than ``config`` asks for or, with
    ``check_source``, made for another video."""
    problems = plan.validate()
    if problems:
        raise InputError(f"plan for {plan.input.name}: {problems[0]}")
    for name in ("start_s", "end_s"):
        given, planned = getattr(config, name), getattr(plan.input, name)
        if given is not None and given != planned:
            made_for = f"{option_name(name)} {planned}" if planned is not None else f"no {option_name(name)}"
            raise ConfigError(f"{option_name(name)} {given}: the plan was made with {made_for} (leave it out: a render uses the plan's span)")
    if check_source:
        plan.check_source(source)


def render(source: str | Path, destination: str | Path, plan: Plan, config: RunConfig, progress: Progress | None = None, processor: FrameProcessor | None = None, check_source: bool = True, outputs: OutputSet | None = None):
    """Anonymize ``source`` into ``destination`` exactly as ``plan`` says (no detection); refused
    (``InputError``, nothing written) when ``source`` is not the video the plan was made for.
    ``processor``: a ``FrameProcessor`` whose anonymizer to reuse (models load once per run).
    ``check_source=False``: the plan was just made from this very file (no second hash of it).
    ``outputs``: the caller's ``OutputSet`` (committed by the caller), as in ``process_video``."""
    from faceanon_video.pipeline import process_video

    check_plan(source, plan, config, check_source)
    config = dataclasses.replace(config, start_s=plan.input.start_s, end_s=plan.input.end_s)
    anonymizer = processor.anonymizer if processor is not None else None
    renderer = PlanProcessor(config, plan, anonymizer=anonymizer)
    _report_progress(renderer, progress, plan.input.frame_count)
    return process_video(source, destination, config, renderer, outputs=outputs)


# 3. What process_file runs for plans and seeded modes.


@with_output_set
def process_planned(source: Path, destination: Path, config: RunConfig, processor: FrameProcessor | None = None, *, outputs: OutputSet):
    """``--save-plan`` (``destination`` is the plan), ``--plan``, or a seeded mode's analyse-then-render;
    the plan or video and the people sidecar (and vault, tracks, reports) are committed together."""
    from faceanon_video.pipeline import RunSummary, write_people_store

    if config.save_plan:
        started = time.perf_counter()
        plan, people = _analyse(source, config)
        plan.save(destination, overwrite=config.overwrite, outputs=outputs)
        write_people_store(config, source, people, tracks=len(plan.tracks), outputs=outputs)
        faces = sum(len(t) for t in plan.tracks.values())
        obscured = sum(s.end_frame - s.start_frame + 1 for s in plan.obscured)
        return RunSummary(str(source), str(destination), plan.input.frame_count, faces, obscured, time.perf_counter() - started)
    if config.plan:
        return render(source, destination, Plan.load(plan_path_for(config.plan, source)), config, processor=processor, outputs=outputs)
    if config.mode not in SEEDED_MODES:
        raise ConfigError(f"mode {config.mode} has no use for a plan")  # process_file only calls this for plans and seeded modes
    started = time.perf_counter()
    plan, people = _analyse(source, dataclasses.replace(config, second_detector=False))  # no reviewer: no hints
    summary = render(source, destination, plan, config, processor=processor, check_source=False, outputs=outputs)  # hashed by _analyse just now
    write_people_store(config, source, people, tracks=len(plan.tracks), outputs=outputs)
    summary.seconds = time.perf_counter() - started
    return summary
