"""Segment-parallel runs: one long video on every core (``--jobs N``) or across a Ray cluster (``--ray``).

The file is cut at keyframes found by the demuxer alone (packet flags and timestamps; nothing is
decoded to plan). Each segment is a task: a worker process (or a Ray task) decodes from a keyframe
``overlap_s`` before its first frame, runs the usual detect -> track -> anonymize chain frame by
frame on one thread (tracks, held frames and the look-back are warm at the cut, and it goes on for
``tail_frames`` after its last frame so the look-back of its last frames sees what a single run
would), and encodes only its own frames, video only, with the run's encoder settings, into a
temporary segment file. The driver then remuxes the encoded segments (no re-encoding) into one
output with the input's audio copied once for the whole file and the metadata policy applied once,
through the same atomic ``VideoWriter``: nothing appears at the destination unless every segment
succeeded.

Frame numbers are absolute (the plan counts the video packets before each keyframe), so the
detection schedule (every ``detect_every``-th frame) is the single run's. Track ids are stitched
at each overlap (IoU of the boxes both segments tracked there; unmatched tracks get new ids), so
``--save-tracks`` is one file with continuous ids, and ``--report`` counts the file once.

People: with ``--people``/``--gallery`` each segment also keeps its tracks' embeddings of its own
frames (a fragment); the driver links the stitched tracks into people over the whole file
(``people.people.identify_people``, as one process does at its end). Planned runs go in two phases:
``--save-plan`` and seeded modes (diffusion) analyse the segments (``planning.AnalysisProcessor``:
tracks, embeddings, candidates, obscured frames), the driver merges the fragments into one
``Plan`` of the whole file (tracks stitched, people linked), then ``--plan`` and seeded modes render
the segments from it (``planning.PlanProcessor``, no detection, one seed key for all of them), so a
person keeps one id and one seed across the cuts. ``--on-segment-failure black``: a segment that
failed twice is blacked out (same frames and timestamps) and listed in the report.

Vault: with ``--vault`` each run or render task also writes a vault part of its own frames
(``_OwnFrames``: not the warm-up or tail) into the work folder; the driver appends the parts in order
to one vault at the destination (``vault.VaultWriter.append_part``: records re-sealed under its
header, track ids renumbered to the stitched ones) and binds it to the joined video, as a single run
binds its vault. A blacked-out segment has no part: its frames are listed as missing in the trailer.

``--start``/``--end`` (and ``--plan`` of a plan made with them): only the span is cut, its frames
numbered from its first as in a single run; the first segment is warmed up before it as a single
run is (``processor.WARM_UP_S``), no tail runs past it (a single run's reader stops there), and the
audio joined is the span's.

Not segmented (one process, with one INFO line): ``--spare``/``--only``, and files shorter than
``AUTO_MIN_S`` or machines with fewer than ``AUTO_MIN_CORES`` cores with the default ``--jobs``.
See README: Segment-parallel runs.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np

from faceanon_video.config import SEEDED_MODES, RunConfig
from faceanon_video.errors import FaceanonError, InputError, OutputError, describe_os_error
from faceanon_video.geometry import box_iou
from faceanon_video.io.decode import VideoReader
from faceanon_video.io.encode import CODEC_BY_EXTENSION, DEFAULT_CODEC, VideoWriter, from_input
from faceanon_video.io.metadata import MetadataPolicy
from faceanon_video.io.outputs import OutputSet, with_output_set, write_atomic
from faceanon_video.track.tracks_io import TrackRecord, TrackWriter, read_tracks, tracks_path_for
from faceanon_video.types import Detections, Frame
from faceanon_video.keys import load_key
from faceanon_video.processor import WARM_UP_S
from faceanon_video.vault import VaultReader, open_run_vault

__all__ = ["Segment", "SegmentPlan", "plan_segments", "process_segmented", "run_segment", "segment_jobs", "stitch_track_ids"]

log = logging.getLogger(__name__)

#: Seconds decoded and processed before a segment's first frame, not written: tracks, the shot
#: detector and held frames are warm at the cut (a track needs a few frames to be confirmed). The
#: first segment of a span (--start) is warmed up as a single run is (``processor.WARM_UP_S``).
OVERLAP_S = WARM_UP_S
#: Longest segment: more segments than workers balance the load and make --resume finer grained.
MAX_SEGMENT_S = 300.0
#: With the default --jobs, shorter files run in one process: starting workers and loading their
#: models (~1 s CPU each) and the overlaps would eat what the extra cores gain.
AUTO_MIN_S = 60.0
#: ...and so does a machine (or Ray cluster) with fewer cores: one process's stage threads already
#: keep about two cores busy, and on this project's 2-core machine the sequential worker took the
#: same CPU per frame as the threaded process (README: Segment-parallel runs), so --jobs 2 only
#: added the overlaps' CPU there.
AUTO_MIN_CORES = 4
#: Segment files: NUT keeps the input's time base and timestamps exactly (Matroska rounds to ms).
SEGMENT_SUFFIX = ".nut"
#: Track ids are matched across a cut on the frames this close to it, which both segments tracked
#: (the previous one's tail, the next one's warm-up): there both trackers are warm. Further back in
#: the warm-up the next segment's tracks are still young (a coasting box of the previous segment
#: can be twice the size of the fresh detection of the same face).
STITCH_WINDOW_FRAMES = 12
#: ...with boxes overlapping at least this much on average (boxes of different faces rarely do).
STITCH_MIN_IOU = 0.3
#: A leftover work folder of the same output (an earlier run with other settings, which only --resume
#: with those settings would reuse) is removed by a run without --resume unless a run may still be
#: using it: its driver holds the folder's lock, or something in it changed in the last this many
#: seconds (a driver whose lock this host cannot see: another machine over NFS, where flock may not reach).
STALE_WORK_S = 600.0
WORK_LOCK = ".lock"


@dataclass(frozen=True)
class Segment:
    """One task of a plan. Timestamps are the reader's (``Frame.pts``), indices absolute frame numbers."""

    number: int
    seek_pts: int | None  # keyframe to start decoding at (None: the start of the file)
    seek_index: int  # absolute index of the first frame decoded from there
    warm_pts: int | None  # frames before this are only decoded (they feed the decoder, not the tracker)
    start_pts: int | None  # the first frame written (None: from the first frame)
    end_pts: int | None  # the next segment's first frame (None: to the end)
    start_index: int
    end_index: int  # exclusive
    # The first frame after the requested span (--end): nothing from here on is processed, not even
    # as a segment's tail, since a single run's reader stops before it (None: the end of the file).
    stop_pts: int | None = None

    def owns(self, pts: int) -> bool:
        return (self.start_pts is None or pts >= self.start_pts) and (self.end_pts is None or pts < self.end_pts)

    @property
    def frames(self) -> int:
        return self.end_index - self.start_index


@dataclass(frozen=True)
class SegmentPlan:
    segments: tuple[Segment, ...]
    frames: int
    duration_s: float
    time_base: Fraction
    first_pts: int  # of the first frame (the reader's clock)

    def first_pts_of(self, segment: Segment) -> int:
        return self.first_pts if segment.start_pts is None else segment.start_pts


def _video_pts(reader: VideoReader) -> tuple[list[int], list[int]]:
    """All frame timestamps (sorted) and the keyframes' of the video, from the demuxer alone, on the
    reader's clock. Counted like the reader announces frames (``VideoReader.items``)."""
    shift = round(reader.pts_shift_s / reader.info.time_base)
    frames, keyframes = [], []
    for packet in reader.container.demux(reader.video_stream):
        if not packet.size or packet.pts is None or packet.is_discard:
            continue
        frames.append(packet.pts + shift)
        if packet.is_keyframe:
            keyframes.append(packet.pts + shift)
    frames.sort()
    return frames, sorted(set(keyframes))


def plan_segments(
    source: str | Path, parts: int, overlap_s: float | None = None, max_segment_s: float | None = None, start_s: float | None = None, end_s: float | None = None,
) -> SegmentPlan:
    """Cut ``source`` (the ``start_s``..``end_s`` span of it, as ``VideoReader`` counts it: --start/--end)
    at keyframes into at least ``parts`` segments (a multiple of ``parts``, none longer than
    ``max_segment_s`` where the keyframes allow), each warmed up ``overlap_s`` before it (defaults:
    ``MAX_SEGMENT_S``, ``OVERLAP_S``) but never before where a single run's tracker starts: the span's
    first segment is warmed up as a single run is before --start (``VideoReader.warm_from_s``, ``WARM_UP_S``).
    Frame indices count from the span's first frame, as a single run's do."""
    overlap_s = OVERLAP_S if overlap_s is None else overlap_s
    max_segment_s = MAX_SEGMENT_S if max_segment_s is None else max_segment_s
    with VideoReader(source, start_s=start_s, end_s=end_s, warm_up_s=WARM_UP_S) as reader:
        all_pts, keyframes = _video_pts(reader)
        time_base = reader.info.time_base
        in_span = [i for i, pts in enumerate(all_pts) if reader.in_span(pts, time_base)]
        warm_up = [i for i, pts in enumerate(all_pts) if reader.in_warm_up(pts, time_base)]
    if not in_span:
        raise InputError(f"{source}: no video frames found" + (" in the --start/--end span" if start_s is not None or end_s is not None else ""))
    # The span is contiguous in the sorted timestamps: frames [skipped, stop) of the file, the
    # single run's warm-up before --start frames [warm_first, skipped).
    skipped, stop = in_span[0], in_span[-1] + 1
    warm_first = warm_up[0] if warm_up else skipped
    stop_pts = all_pts[stop] if stop < len(all_pts) else None
    first, last = all_pts[skipped], all_pts[stop - 1]
    duration_s = float((last - first) * time_base)
    count = max(parts, math.ceil(duration_s / max_segment_s)) if parts > 1 else 1
    count = math.ceil(count / parts) * parts
    cuts: list[int] = []
    for i in range(1, count):
        target = first + (last - first) * i / count
        k = bisect.bisect_left(keyframes, target)
        if k < len(keyframes) and first < keyframes[k] <= last and (not cuts or keyframes[k] > cuts[-1]):
            cuts.append(keyframes[k])
    overlap = round(overlap_s / time_base)
    # None: the file's own first frame (and end); a span (--start/--end) starts and ends at its frames.
    bounds = [first if skipped else None, *cuts, stop_pts]
    segments = []
    for number, (start, end) in enumerate(zip(bounds, bounds[1:])):
        seek = warm = None
        if start is not None:
            warm = all_pts[warm_first] if number == 0 else max(start - overlap, all_pts[warm_first])
            k = bisect.bisect_right(keyframes, warm) - 1  # the last keyframe at or before the warm-up
            seek = keyframes[k] if k > 0 else None
        segments.append(
            Segment(
                number=number,
                seek_pts=seek,
                seek_index=(bisect.bisect_left(all_pts, seek) if seek is not None else 0) - skipped,
                warm_pts=warm,
                start_pts=start,
                end_pts=end,
                start_index=(bisect.bisect_left(all_pts, start) if start is not None else 0) - skipped,
                end_index=(bisect.bisect_left(all_pts, end) if end is not None else len(all_pts)) - skipped,
                stop_pts=stop_pts,
            )
        )
    return SegmentPlan(tuple(segments), stop - skipped, duration_s, time_base, first)


# 1. Deciding whether a file is segmented.


def unsupported(config: RunConfig) -> str | None:
    """Why a run with ``config`` cannot be segmented yet (None: it can)."""
    if config.spare or config.only:
        return "--spare/--only (a track's evidence, and --only's veto, last its whole life: they are decided in order)"
    return None


def segment_jobs(source: str | Path, config: RunConfig, ray_address: str | None = None) -> int:
    """How many processes (Ray tasks with ``ray_address``) run ``source``: ``--jobs``, or by default
    one per core (of the cluster) for videos of at least ``AUTO_MIN_S`` on at least ``AUTO_MIN_CORES``
    cores; 1 for short videos, fewer cores and what ``unsupported`` lists (said in one INFO line)."""
    if config.jobs == 1:
        return 1
    if config.jobs is None:
        if _cores(ray_address) < AUTO_MIN_CORES:
            return 1
        with VideoReader(source) as reader:
            duration_s = reader.info.duration_s or 0.0
        duration_s = min(duration_s, config.end_s if config.end_s is not None else math.inf) - (config.start_s or 0.0)  # of the span
        if duration_s < AUTO_MIN_S:
            return 1
    jobs = config.jobs or _cores(ray_address)
    why = unsupported(config)
    if jobs > 1 and why:
        log.info("%s: not split into segments with %s: one process", source, why)
        return 1
    return jobs


def _cores(ray_address: str | None) -> int:
    if ray_address is None:
        return os.cpu_count() or 1
    from faceanon_video.distributed import init_ray

    return max(1, int(init_ray(None if ray_address == "local" else ray_address).cluster_resources().get("CPU", 1)))


# 2. One segment, in a worker process or a Ray task.
#
# Three kinds of task (``task["kind"]``): "run" (detect -> track -> anonymize -> encode, the usual
# chain), "analyse" (phase 1 of a planned run: detect -> track -> record, ``planning.AnalysisProcessor``,
# nothing encoded) and "render" (phase 2: the merged plan's faces -> anonymize -> encode, no detection).

#: (config JSON, FrameProcessor) kept per worker process (("analyse", config JSON) for an AnalysisProcessor).
_worker_processor: tuple[str | tuple[str, str], object] | None = None
_worker_anonymizer: tuple[str, object] | None = None  # (config JSON, anonymizer) of render tasks: diffusion loads once


def _processor_for(config_json: str):
    global _worker_processor
    from faceanon_video.processor import FrameProcessor

    if _worker_processor is None or _worker_processor[0] != config_json:
        _worker_processor = (config_json, FrameProcessor(RunConfig.from_json(config_json)))
    processor = _worker_processor[1]
    processor.reset()
    processor.reset_counters()
    return processor


def _analyser_for(config_json: str):
    global _worker_processor
    from faceanon_video.planning import AnalysisProcessor

    if _worker_processor is None or _worker_processor[0] != ("analyse", config_json):
        _worker_processor = (("analyse", config_json), AnalysisProcessor(RunConfig.from_json(config_json)))
    processor = _worker_processor[1]
    processor.reset_recorded()
    return processor


def _renderer_for(task: dict, config: RunConfig):
    """A ``planning.PlanProcessor`` for this segment's slice of the merged plan, seeded with the run's key."""
    global _worker_anonymizer
    from faceanon_video.people.seeds import PersonSeeder
    from faceanon_video.plan import Plan
    from faceanon_video.planning import PlanProcessor
    from faceanon_video.processor import build_anonymizer

    if _worker_anonymizer is None or _worker_anonymizer[0] != task["config"]:
        _worker_anonymizer = (task["config"], build_anonymizer(config))
    if hasattr(_worker_anonymizer[1], "reset"):
        _worker_anonymizer[1].reset()
    processor = PlanProcessor(config, Plan.load(task["plan"]), anonymizer=_worker_anonymizer[1])
    if task["seed_key"] is not None:
        # Without --key-file, one random key made by the driver for every segment: a person's seed is
        # the same on both sides of a cut.
        processor.seeder = PersonSeeder(bytes.fromhex(task["seed_key"]))
    return processor


def _check_fault(segment: Segment) -> None:
    from faceanon_video.testing.faults import segment_fault

    segment_fault(segment.start_index, segment.end_index - 1)


def _frames_from(reader: VideoReader, segment: Segment) -> Iterator[Frame]:
    """The segment's frames with absolute indices, from its keyframe on (decoded frames before the
    warm-up are dropped here, after feeding the decoder)."""
    if segment.seek_pts is not None:
        shift = round(reader.pts_shift_s / reader.info.time_base)
        reader.container.seek(segment.seek_pts - shift, stream=reader.video_stream, backward=True, any_frame=False)
    index = segment.seek_index
    for frame in reader.items(packets=False):
        if segment.seek_pts is not None and frame.pts < segment.seek_pts:
            continue  # an open GOP's leading frames: they belong before the keyframe
        frame.index = index
        index += 1
        if segment.warm_pts is None or frame.pts >= segment.warm_pts:
            yield frame


def run_segment(task: dict) -> dict:
    """Process one segment (``task``: see ``_tasks``) into its segment file and track file; returns
    what it counted, or ``{"error": ...}``. Runs in a worker process or a Ray task."""
    try:
        return _run_segment(task)
    except FaceanonError as exc:
        return {"error": str(exc), "input_error": isinstance(exc, InputError)}
    except Exception as exc:  # noqa: BLE001 - reported by the driver, which retries the segment once
        log.debug("segment %s failed", task["segment"]["number"], exc_info=True)
        return {"error": f"{type(exc).__name__}: {exc}", "input_error": False}


class _OwnedCounts:
    """``FrameProcessor.on_release``: keeps each released frame's share of the processor's counters
    when it is one of the segment's own (warm-up and tail frames are processed, not written)."""

    def __init__(self, processor, segment: Segment) -> None:
        self.processor, self.segment = processor, segment
        self.counts = {"frames": 0, "faces": 0, "obscured_frames": 0}
        self.reasons: Counter[str] = Counter()
        self._seen = {"faces": 0, "obscured_frames": 0, "reasons": Counter()}

    def __call__(self, frame: Frame) -> None:
        processor, seen, owns = self.processor, self._seen, self.segment.owns(frame.pts)
        faces, obscured = processor.faces - seen["faces"], processor.obscured_frames - seen["obscured_frames"]
        seen.update(faces=processor.faces, obscured_frames=processor.obscured_frames)
        if obscured:
            now = Counter(processor.obscure_reasons)
            if owns:
                self.reasons.update(now - seen["reasons"])
            seen["reasons"] = now
        if owns:
            self.counts["frames"] += 1
            self.counts["faces"] += faces
            self.counts["obscured_frames"] += obscured


def _track_frames(reader: VideoReader, segment: Segment, processor, write: Callable[[list[Frame]], None], tail_frames: int) -> None:
    """Detect and track from the warm-up to ``tail_frames`` past the segment's end, as a single run would."""
    tail = 0
    pending: Frame | None = None
    for frame in _frames_from(reader, segment):
        if segment.stop_pts is not None and frame.pts >= segment.stop_pts:
            break  # past --end: a single run's reader stops before this frame, so does the tail
        if pending is not None:
            write(processor.finish_held(pending, processor.detect(pending)))
        pending = frame
        if segment.end_pts is not None and frame.pts >= segment.end_pts:
            tail += 1
            if tail >= tail_frames:
                break
    if pending is not None:
        # The last frame decoded is a full pass, as at the end of a single run (pipeline._close_with_a_pass).
        write(processor.finish_held(pending, processor.detect(pending, force=True)))
    write(processor.flush())


def _render_frames(reader: VideoReader, segment: Segment, processor, write: Callable[[list[Frame]], None]) -> None:
    """The segment's own frames through a plan's processor: nothing to warm up (no tracker runs)."""
    for frame in _frames_from(reader, replace(segment, warm_pts=segment.start_pts)):
        if not segment.owns(frame.pts):
            break
        write([processor.finish(frame)])


def _run_segment(task: dict) -> dict:
    started = time.perf_counter()
    segment = Segment(**task["segment"])
    _check_fault(segment)
    kind = task.get("kind", "run")
    config = RunConfig.from_json(task["config"])
    if kind == "analyse":
        processor = _analyser_for(task["config"])
    elif kind == "render":
        processor = _renderer_for(task, config)
    else:
        processor = _processor_for(task["config"])
    reader = VideoReader(task["source"], strict=config.strict)
    writer = tracks = vault = None
    success = False
    counter = _OwnedCounts(processor, segment)
    try:
        processor.on_release = counter
        tracks = processor.track_writer = TrackWriter(task["tracks"], overwrite=True)
        if "vault" in task:
            vault = _open_vault_part(task, config)
            processor.vault_writer = _OwnFrames(vault, segment)
        if kind != "analyse":
            writer = VideoWriter(
                task["video"],
                fps=reader.info.fps,
                time_base=reader.info.time_base,
                policy=MetadataPolicy(keep_audio=False),
                codec=task["codec"],
                crf=config.crf,
                preset=config.preset,
            )

        def write(released: list[Frame]) -> None:
            for frame in released:
                if writer is not None and segment.owns(frame.pts):
                    writer.write(frame)

        if kind == "render":
            _render_frames(reader, segment, processor, write)
        else:
            _track_frames(reader, segment, processor, write, task["tail_frames"])
        if counter.counts["frames"] != segment.frames:
            raise FaceanonError(f"segment {segment.number} has {counter.counts['frames']} frames where the plan counted {segment.frames} (rerun with --jobs 1)")
        processor.failures.check_final()
        if "fragment" in task:
            write_atomic(task["fragment"], json.dumps(_sealed(_fragment(processor, segment, kind), task)))
        if vault is not None:
            vault.close(success=True)  # its own frames, its own trailer: merged by the driver (_merge_vault)
        if writer is not None:
            writer.close(success=True)
        success = True
    finally:
        processor.on_release = None
        processor.track_writer = None
        processor.vault_writer = None
        if tracks is not None:
            tracks.close(success=success)
        if vault is not None and not success:
            vault.close(success=False)
        if writer is not None and not success:
            writer.close(success=False)
        reader.close()
    result = {
        **counter.counts,
        "obscure_reasons": dict(counter.reasons),
        "detect_every": processor.detect_every,
        "blacked_out_frames": getattr(processor, "blacked_out_frames", 0),
        "stage_seconds": {k: float(np.sum(v)) for k, v in processor.timings.items()},
        "seconds": time.perf_counter() - started,
    }
    write_atomic(task["result"], json.dumps(result))  # written last: marks the segment finished (--resume)
    return result


def _open_vault_part(task: dict, config: RunConfig):
    """A segment's vault part (``--vault``) in the work folder: the run's key (read from ``--key-file``,
    which must be reachable from every worker, like the input), region scale and quality."""
    return open_run_vault(task["vault"], task["source"], key_file=config.key_file, mask_scale=config.mask_scale, diffusion=config.mode == "diffusion", overwrite=True, quality=config.vault_quality)


class _OwnFrames:
    """The processor's vault writer in a segment: the segment's own frames go to its vault part,
    warm-up and tail frames (written by the neighbouring segments) do not."""

    def __init__(self, vault, segment: Segment) -> None:
        self.vault, self.segment = vault, segment

    def write(self, frame: Frame, faces: Detections) -> None:
        if self.segment.owns(frame.pts):
            self.vault.write(frame, faces)


#: HKDF label of the key that encrypts a fragment's face embeddings (derived from --key-file).
_FRAGMENT_HKDF_INFO = b"faceanon-video/segment-fragment/v1"


def _fragment_key(config: RunConfig) -> str:
    """The AES key (hex) of a run's fragments: from ``--key-file`` (so --resume can read them), else
    random for this run (--resume then analyses again: the fragments of an earlier run stay sealed)."""
    from faceanon_video.keys import derive_key, load_key, random_key

    if not config.key_file:
        return random_key().hex()
    return derive_key(load_key(config.key_file), _FRAGMENT_HKDF_INFO).hex()


def _sealed(fragment: dict, task: dict) -> dict:
    """``fragment`` with its SFace embeddings encrypted (AES-GCM): they identify people, and a
    fragment outlives a failed or interrupted run in the work folder (kept for --resume) and crosses
    shared storage to Ray nodes, so it holds them only as the ``.people`` sidecar does."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not fragment["embeddings"]:
        return fragment
    nonce = os.urandom(12)
    sealed = AESGCM(bytes.fromhex(task["fragment_key"])).encrypt(nonce, json.dumps(fragment["embeddings"]).encode(), None)
    return {**fragment, "embeddings": {}, "sealed": (nonce + sealed).hex()}


def _open_fragment(task: dict) -> dict:
    """A segment's fragment with its embeddings decrypted (``cryptography.exceptions.InvalidTag``:
    sealed with another run's key)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    fragment = json.loads(Path(task["fragment"]).read_text(encoding="utf-8"))
    if "sealed" in fragment:
        sealed = bytes.fromhex(fragment.pop("sealed"))
        fragment["embeddings"] = json.loads(AESGCM(bytes.fromhex(task["fragment_key"])).decrypt(sealed[:12], sealed[12:], None))
    return fragment


def _fragment(processor, segment: Segment, kind: str) -> dict:
    """What the driver needs of a segment to link people over the whole file (and, for an analysis,
    to build the merged plan): the segment's own frames only, in its own track ids."""
    owned = range(segment.start_index, segment.end_index)
    embeddings = processor.recorder.embeddings if kind == "analyse" else processor.embeddings
    fragment: dict = {"embeddings": {}}
    for track_id, track in embeddings.tracks.items():
        keep = [i for i, f in enumerate(track.embedded_frames) if f in owned and track.embeddings[i] is not None]
        if keep:
            fragment["embeddings"][str(track_id)] = {
                "embeddings": [track.embeddings[i].tolist() for i in keep],
                "weights": [track.weights[i] for i in keep],
                "frames": [track.embedded_frames[i] for i in keep],
            }
    if kind != "analyse":
        return fragment
    from faceanon_video.planning import analysis_settings

    # float32 values as float64 (exact): the merged plan has the single run's boxes, not rounded ones.
    fragment["rows"] = {}
    for track_id, rows in processor.recorder.rows.items():
        own = [[f, xyxy.tolist(), landmarks.tolist(), float(score), bool(detected)] for f, xyxy, landmarks, score, detected in rows if f in owned]
        if own:
            fragment["rows"][str(track_id)] = own
    fragment["candidates"] = [[f, xyxy.tolist(), score, source] for f, xyxy, score, source in processor.candidates if f in owned]
    fragment["failed"] = {str(f): reason for f, reason in processor.failed.items() if f in owned}
    fragment["size"] = processor.recorder.size
    fragment["settings"] = analysis_settings(processor)
    fragment["second_s"] = processor.second_s
    return fragment


# 3. Running the segments: worker processes or Ray tasks, each failed segment retried once.


def _init_worker() -> None:
    from faceanon_video.memory import keep_freed_memory

    keep_freed_memory()
    if not logging.getLogger().handlers:  # a spawned process: its warnings read like the driver's
        logging.basicConfig(level=logging.WARNING, format="faceanon-video: %(levelname)s: %(message)s")
    # SIGTERM (the driver stopping its workers) unwinds like Ctrl-C, so the segment's writers remove
    # their temporary files.
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt


def _settle(task: dict, result: dict, failed: list, done: Callable[[dict, dict], None]) -> None:
    if "error" in result:
        failed.append((task, result))
    else:
        done(task, result)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    # Taken before shutdown, which drops them (no public way before Python 3.14).
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + 5.0  # to unwind (writers remove their files); then the queue's next
    for process in processes:  # segment would start in it: killed
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()


def _run_local(tasks: list[dict], jobs: int, worker: Callable[[dict], dict], done: Callable[[dict, dict], None]) -> list[tuple[dict, dict]]:
    """Run ``tasks`` on ``jobs`` spawned processes; returns the (task, result) of those that failed."""
    failed: list[tuple[dict, dict]] = []
    # spawn, not fork: the driver may hold onnxruntime and OpenCV threads, which fork would copy half-alive.
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
    try:
        # Ctrl-C reaches the terminal's whole process group; the driver alone handles it (and stops the
        # workers with SIGTERM). An ignored signal stays ignored across exec, so the workers, spawned
        # here on submit, start with SIGINT ignored: no KeyboardInterrupt traceback from a worker.
        main = threading.current_thread() is threading.main_thread()  # signal.signal works only there
        sigint = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            futures = {pool.submit(worker, task): task for task in tasks}
        finally:
            if main:
                signal.signal(signal.SIGINT, sigint)
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                task = futures.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker that died (BrokenProcessPool) fails its segment
                    result = {"error": f"worker process failed: {type(exc).__name__}: {exc}"}
                _settle(task, result, failed, done)
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)
    return failed


def _run_ray(tasks: list[dict], address: str | None, worker: Callable[[dict], dict], done: Callable[[dict, dict], None]) -> list[tuple[dict, dict]]:
    from faceanon_video.distributed import init_ray

    ray = init_ray(address)
    remote = ray.remote(num_cpus=1, max_retries=0)(worker)  # retried by run_segments, like local workers
    refs = {remote.remote(task): task for task in tasks}
    failed: list[tuple[dict, dict]] = []
    try:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            task = refs[ready[0]]
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                result = {"error": f"Ray task failed: {type(exc).__name__}"}
            _settle(task, result, failed, done)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    return failed


def run_segments(
    tasks: list[dict], jobs: int, done: Callable[[dict, dict], None], ray_address: str | None = None, worker: Callable[[dict], dict] = run_segment,
    on_failure: Callable[[dict, dict], None] | None = None,
) -> None:
    """Run every task; a failed one is retried once, then ``FaceanonError`` (an input error at once),
    or, with ``on_failure``, handed to it (``--on-segment-failure black``)."""
    for attempt in (1, 2):
        if ray_address is not None:
            failed = _run_ray(tasks, None if ray_address == "local" else ray_address, worker, done)
        else:
            failed = _run_local(tasks, jobs, worker, done)
        if not failed:
            return
        for task, result in failed:
            if result.get("input_error"):
                raise InputError(result["error"])  # the input itself (damaged with --strict...): no retry
        for task, result in failed:
            log.warning("segment %d failed (attempt %d of 2): %s", task["segment"]["number"], attempt, result["error"])
        if attempt == 2:
            if on_failure is not None:
                for task, result in failed:
                    on_failure(task, result)
                return
            task, result = failed[0]
            raise FaceanonError(f"segment {task['segment']['number']} failed twice: {result['error']}")
        tasks = [t for t, _ in failed]


# 4. Stitching track ids across the cuts.


def stitch_track_ids(before: dict[int, TrackRecord], after: dict[int, TrackRecord]) -> dict[int, int]:
    """Which track of ``after`` continues which track of ``before`` (two segments' records of the same
    frames, by frame index, each in its own ids): mean IoU over the frames both tracked, assigned one
    to one (``scipy.optimize.linear_sum_assignment``), kept at >= STITCH_MIN_IOU."""
    from scipy.optimize import linear_sum_assignment

    iou_sum: dict[tuple[int, int], float] = defaultdict(float)
    both: Counter[tuple[int, int]] = Counter()
    for index, record in after.items():
        previous = before.get(index)
        if previous is None or not len(record.faces) or not len(previous.faces):
            continue
        ious = box_iou(previous.faces.xyxy, record.faces.xyxy)
        for i, old in enumerate(previous.faces.track_id.tolist()):
            for j, new in enumerate(record.faces.track_id.tolist()):
                iou_sum[old, new] += float(ious[i, j])
                both[old, new] += 1
    if not iou_sum:
        return {}
    olds = sorted({o for o, _ in iou_sum})
    news = sorted({n for _, n in iou_sum})
    mean = np.zeros((len(olds), len(news)))
    for (old, new), total in iou_sum.items():
        mean[olds.index(old), news.index(new)] = total / both[old, new]
    rows, cols = linear_sum_assignment(mean, maximize=True)
    return {news[c]: olds[r] for r, c in zip(rows, cols) if mean[r, c] >= STITCH_MIN_IOU}


@dataclass
class _Merged:
    """The segments' track files read back in order: ids in the output, and what linking needs."""

    track_ids: set[int]
    mappings: list[dict[int, int]]  # per segment: its track id -> the output's
    spans: dict[int, list[int]]  # output track id -> [first frame, last frame]


def _merge_tracks(plan: SegmentPlan, tracks_paths: list[Path], writer: TrackWriter | None, stitch: bool = True) -> _Merged:
    """Write every segment's own frames to ``writer`` in order, with ids stitched at each cut
    (``stitch``; else the segments' ids are already the output's: renders of one plan)."""
    merged = _Merged(set(), [], {})
    previous: dict[int, TrackRecord] = {}  # the previous segment's records (its own ids), every frame it tracked
    previous_ids: dict[int, int] = {}  # ...and its ids in the output
    next_id = 1
    for segment, path in zip(plan.segments, tracks_paths):
        records = {r.frame_index: r for r in read_tracks(path)}
        mapping: dict[int, int] = {}
        if stitch:
            near = range(segment.start_index - STITCH_WINDOW_FRAMES, segment.start_index + STITCH_WINDOW_FRAMES)
            matched = stitch_track_ids({i: previous[i] for i in near if i in previous}, {i: records[i] for i in near if i in records})
            mapping = {new: previous_ids[old] for new, old in matched.items() if old in previous_ids}
        for index in range(segment.start_index, segment.end_index):
            record = records.get(index)
            if record is None:
                continue  # a frame obscured after a failure has no line, as in a single run
            faces = record.faces
            for local in faces.track_id.tolist():
                if local not in mapping:
                    mapping[local] = next_id if stitch else local
                    next_id += 1
                span = merged.spans.setdefault(mapping[local], [index, index])
                span[1] = index
            if len(faces):
                merged.track_ids.update(mapping[t] for t in faces.track_id.tolist())
            if writer is not None:
                out = Detections(xyxy=faces.xyxy, score=faces.score, landmarks=faces.landmarks, track_id=[mapping[t] for t in faces.track_id.tolist()], predicted=faces.predicted)
                writer.write(record.frame_index, record.pts_s, out)
        previous, previous_ids = records, mapping
        merged.mappings.append(mapping)
    return merged


def _track_faces(merged: _Merged, fragments: list[dict]) -> dict:
    """Output track id -> ``people.embed.TrackFaces`` over the whole file: the embeddings the
    segments kept of their own frames, the ``FACES_PER_TRACK`` best of them (as one process keeps;
    a track cut into segments has that many from each)."""
    from faceanon_video.people.embed import FACES_PER_TRACK, TrackFaces

    tracks = {t: TrackFaces(t, first, last) for t, (first, last) in merged.spans.items()}
    for mapping, fragment in zip(merged.mappings, fragments):
        for local, kept in fragment["embeddings"].items():
            track = tracks.get(mapping.get(int(local), -1))
            if track is None:
                continue  # embedded on a frame without a record (cannot be: the record is written first)
            track.embeddings += [np.asarray(e, np.float32) for e in kept["embeddings"]]
            track.weights += kept["weights"]
            track.embedded_frames += kept["frames"]
    for track in tracks.values():
        if len(track.weights) > FACES_PER_TRACK:
            best = sorted(sorted(range(len(track.weights)), key=lambda i: -track.weights[i])[:FACES_PER_TRACK])
            track.embeddings = [track.embeddings[i] for i in best]
            track.weights = [track.weights[i] for i in best]
            track.embedded_frames = [track.embedded_frames[i] for i in best]
    return tracks


def _link_people(merged: _Merged, tasks: list[dict], gallery):
    """The persons of the whole file (``people.people.identify_people`` of every track's embeddings)."""
    from faceanon_video.people.people import identify_people

    fragments = [_open_fragment(task) for task in tasks]
    return identify_people(_track_faces(merged, fragments), gallery), fragments



# 5. The driver: plan, run, join.


def _input_fingerprint(source: Path) -> str:
    """Names the input for the work folder without reading all of a multi-hour file: size, mtime and
    the first and last MiB (an edited file changes one of them)."""
    stat = source.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with open(source, "rb") as fh:
        digest.update(fh.read(1 << 20))
        fh.seek(max(0, stat.st_size - (1 << 20)))
        digest.update(fh.read(1 << 20))
    return digest.hexdigest()


#: Settings that do not change a segment's pixels or tracks (the work folder is shared across them).
_NOT_IN_WORK_KEY = ("progress", "overwrite", "resume", "on_segment_failure", "jobs", "workers", "report", "save_tracks", "extra")


def _work_pattern(destination: Path) -> re.Pattern:
    """The names ``work_dir_for`` gives the work folders of ``destination`` (only ours are ever removed)."""
    return re.compile(re.escape(f".{destination.stem}.segments-") + "[0-9a-f]{16}")


def _lock_work(work: Path):
    """Hold ``work``'s lock for this run (the open file; closing it releases the lock), or raise
    ``OutputError`` when another run holds it. None where ``fcntl`` is missing (not POSIX)."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(work / WORK_LOCK, "a")  # noqa: SIM115 - held until the run ends (closed in process_segmented)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutputError(f"{work}: another run is using this work folder (the same output and settings); wait for it or choose another -o") from None
    return handle


def _changed_recently(work: Path) -> bool:
    try:
        newest = max(e.stat().st_mtime for e in [work, *work.iterdir()])
    except OSError:
        return True  # vanishing or unreadable while we look: someone is at work there
    return time.time() - newest < STALE_WORK_S


#: What a run writes in its work folder: the lock, segment files, their temporary names (io.outputs).
_WORK_ENTRY = re.compile(r"\.lock|\.?segment-\d{4}.*")


def _holds_only_ours(folder: Path) -> bool:
    """A real folder (not a link to one) holding nothing but what a run writes there: a user's folder
    that happens to carry our name is never removed."""
    try:
        return not folder.is_symlink() and folder.is_dir() and all(_WORK_ENTRY.fullmatch(p.name) for p in folder.iterdir())
    except OSError:
        return False


def remove_stale_work(destination: Path, keep: Path) -> None:
    """Remove the work folders of ``destination`` left by earlier runs (other settings: not ``keep``)
    that no run may be using (see ``STALE_WORK_S``): a run without --resume would never reuse them.
    Only folders named as ``work_dir_for`` names them and holding only a run's files (``_holds_only_ours``);
    each is removed while holding its lock."""
    pattern = _work_pattern(destination)
    try:
        found = [p for p in destination.parent.iterdir() if p != keep and pattern.fullmatch(p.name) and _holds_only_ours(p)]
    except OSError:
        return
    for folder in found:
        lock = None
        try:
            busy = _changed_recently(folder)
            if not busy:
                lock = _lock_work(folder)
        except (OutputError, OSError):
            busy = True
        if busy:
            log.info("%s: left in place: another run may be using it", folder)
            continue
        log.info("%s: removed: an earlier run's segments (other settings; not reused without --resume)", folder)
        shutil.rmtree(folder, ignore_errors=True)
        if lock is not None:
            lock.close()


def work_dir_for(source: Path, destination: Path, config: RunConfig, plan: SegmentPlan) -> Path:
    settings = {k: v for k, v in asdict(config).items() if k not in _NOT_IN_WORK_KEY}
    key = hashlib.sha256(json.dumps([_input_fingerprint(source), settings, [asdict(s) for s in plan.segments]], sort_keys=True, default=str).encode()).hexdigest()
    return destination.with_name(f".{destination.stem}.segments-{key[:16]}")


def _tail_frames(config: RunConfig) -> int:
    # Enough frames after a segment's end for its last frames' look-back (track.backfill: 24 frames,
    # a new face's box carried 8 more) and the next scheduled full passes.
    detect_every = config.detect_every or 2
    return max(24, detect_every) + 8 + 2 * detect_every


def _tasks(source: Path, config: RunConfig, plan: SegmentPlan, work: Path, codec: str, kind: str = "run", **extra) -> list[dict]:
    """One task per segment. ``kind`` "run" and "render" write a segment file (a render's names carry
    ``extra["name"]``: the plan and key it renders); "analyse" a fragment of the plan."""
    name = {"run": "", "analyse": ".analysis", "render": f".render-{extra.pop('name', '')}"}[kind]
    task_config = replace(config, progress=False, workers=1, jobs=1, save_tracks=None, report=[], overwrite=True).to_json()
    fragment_key = _fragment_key(config) if kind == "analyse" or config.people or config.gallery else None
    tasks = []
    for segment in plan.segments:
        stem = str(work / f"segment-{segment.number:04d}{name}")
        task = {"kind": kind, "source": str(source), "config": task_config, "segment": asdict(segment), "tracks": f"{stem}.tracks.jsonl", "result": f"{stem}.json", **extra}
        if kind != "analyse":
            task.update(codec=codec, video=f"{stem}{SEGMENT_SUFFIX}")
            if config.vault:
                task["vault"] = f"{stem}.favault"
        if kind != "render":
            task["tail_frames"] = _tail_frames(config)
        if kind == "analyse" or config.people or config.gallery:
            task["fragment"] = f"{stem}.fragment.json"
            task["fragment_key"] = fragment_key
        if kind == "render":
            task["plan"] = f"{stem}.plan.json"
        tasks.append(task)
    return tasks


def _finished(task: dict) -> dict | None:
    """A finished segment's result (``--resume``), or None."""
    result = Path(task["result"])
    if result.is_file() and all(Path(task[k]).is_file() for k in ("video", "tracks", "fragment", "vault") if k in task):
        from cryptography.exceptions import InvalidTag

        try:
            if "fragment" in task:
                _open_fragment(task)  # sealed with this run's key (a run without --key-file: never)
            return json.loads(result.read_text(encoding="utf-8"))
        except (OSError, ValueError, InvalidTag):
            return None
    return None


def _segment_packets(container) -> Iterator[tuple[float, av.Packet]]:
    """A segment file's video packets in decode order, each with its dts (and it in seconds, to order by).

    NUT keeps the encoder's timestamps exactly (MP4's edit list and Matroska round them to 1/1000 s)
    but does not store the dts of the first packets of a stream with B-frames (those decoded before
    the first frame's pts), and MP4 needs them: they are counted back from the first stored dts, one
    stored step per packet, as the encoder numbered them. Hand-written: no muxer option restores them."""
    head: list[av.Packet] | None = []  # None once every dts is known
    for packet in container.demux(container.streams.video[0]):
        if not packet.size:
            continue
        if head is None:
            yield float(packet.dts * packet.time_base), packet
            continue
        head.append(packet)
        if sum(p.dts is not None for p in head) < 2:
            continue
        yield from _with_dts(head)
        head = None
    if head:
        yield from _with_dts(head)  # a segment so short it has fewer than two stored dts


def _with_dts(head: list[av.Packet]) -> Iterator[tuple[float, av.Packet]]:
    stored = [i for i, p in enumerate(head) if p.dts is not None]
    first = stored[0] if stored else None
    step = (head[stored[1]].dts - head[first].dts) // (stored[1] - first) if len(stored) > 1 else 0
    for i, packet in enumerate(head):
        if packet.dts is None:
            packet.dts = min(head[first].dts - (first - i) * step, packet.pts) if first is not None and i < first else packet.pts
        yield float(packet.dts * packet.time_base), packet


def _join(source: Path, destination: Path, config: RunConfig, tasks: list[dict], plan: SegmentPlan) -> tuple[VideoWriter, VideoReader]:
    """Remux the segment files into ``destination`` with the input's audio (once) and metadata policy."""
    import heapq

    reader = VideoReader(source, start_s=config.start_s, end_s=config.end_s)  # its audio: that of the span
    writer = None
    segments = []
    try:
        segments = [av.open(task["video"]) for task in tasks]
        first = segments[0].streams.video[0]
        for other in segments[1:]:
            if other.streams.video[0].codec_context.extradata != first.codec_context.extradata:
                raise FaceanonError("segment files were encoded with different parameters; rerun with --jobs 1")
        writer = VideoWriter(destination, fps=reader.info.fps, time_base=reader.info.time_base, policy=MetadataPolicy.from_config(config), **from_input(reader))
        writer.copy_video(first)

        def video() -> Iterator[tuple[float, int, av.Packet]]:
            for segment, container in zip(plan.segments, segments):
                # A muxer may have moved a segment's timestamps (NUT shifts a stream whose first dts
                # is negative, B-frames at the start of a file, to start at 0): put its first frame
                # back where the plan has it. The first packet is the first frame: each segment
                # starts with a keyframe of its own.
                shift = None
                for t, packet in _segment_packets(container):
                    if shift is None:
                        shift = round(plan.first_pts_of(segment) * plan.time_base / packet.time_base) - packet.pts
                    if shift:
                        packet.pts += shift
                        packet.dts += shift
                        t = float(packet.dts * packet.time_base)
                    yield t, 0, packet

        def audio() -> Iterator[tuple[float, int, av.Packet]]:
            if config.keep_audio:
                for packet in reader.copied_packets():
                    t = packet.dts if packet.dts is not None else packet.pts
                    yield (float(t * packet.time_base) if t is not None else 0.0), 1, packet

        # In time order, so the muxer's interleaving buffer stays small on a long file.
        for _, kind, packet in heapq.merge(video(), audio(), key=lambda item: (item[0], item[1])):
            writer.write_video_packet(packet) if kind == 0 else writer.write_packet(packet)
        if writer.frames_written != plan.frames:
            raise FaceanonError(f"joined {writer.frames_written} frames where the input has {plan.frames}")
        writer.finish()
        return writer, reader
    except BaseException:
        if writer is not None:
            writer.close(success=False)
        reader.close()
        raise
    finally:
        for container in segments:
            container.close()


@with_output_set
def process_segmented(source: Path, destination: Path, config: RunConfig, jobs: int, ray_address: str | None = None, overlap_s: float | None = None, max_segment_s: float | None = None, *, outputs: OutputSet):
    """Anonymize one video with ``jobs`` worker processes (or Ray tasks: ``ray_address`` "local",
    "auto" or HOST:PORT) into ``destination``; same result and promises as ``pipeline.process_video``
    (the joined video, merged vault and tracks, people sidecar, plan and reports join ``outputs``).
    Planned runs (``--save-plan``, ``--plan``, seeded modes) go in two phases: the segments are
    analysed, the driver merges their fragments into one plan of the whole file (tracks stitched,
    people linked over all of it), then renders the segments from it (``--save-plan``: phase 1 only,
    ``--plan``: phase 2 only)."""
    from tqdm import tqdm

    from faceanon_video.pipeline import RunSummary, _open_gallery, write_people_store

    started = time.perf_counter()
    source, destination = Path(source), Path(destination)
    planned = bool(config.save_plan or config.plan or (config.mode in SEEDED_MODES and config.track))
    video_plan = None
    if config.plan:
        from faceanon_video.plan import Plan
        from faceanon_video.planning import check_plan, plan_path_for, render

        video_plan = Plan.load(plan_path_for(config.plan, source))
        check_plan(source, video_plan, config)
        config = replace(config, start_s=video_plan.input.start_s, end_s=video_plan.input.end_s)  # a render covers the plan's span (planning.render)
    gallery = _open_gallery(config)  # a wrong key or a changed gallery fails here, before any frame
    plan = plan_segments(source, jobs, overlap_s, max_segment_s, config.start_s, config.end_s)
    serial = {"plan": time.perf_counter() - started}  # the parts that do not run in parallel
    work = work_dir_for(source, destination, config, plan)
    try:
        if not config.resume:
            remove_stale_work(destination, keep=work)
        if work.exists() and not config.resume:
            held = _lock_work(work)  # refused while another run of the same settings is using it
            shutil.rmtree(work)  # an earlier run's segments are only reused with --resume
            if held is not None:
                held.close()
        work.mkdir(exist_ok=True)
        lock = _lock_work(work)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, work)) from exc
    codec = config.codec or CODEC_BY_EXTENSION.get(destination.suffix.lower(), DEFAULT_CODEC)
    phases = 2 if planned and not config.plan and not config.save_plan else 1
    progress = tqdm(total=plan.frames * phases, desc=source.name[:30], unit="frame", disable=not config.progress, leave=False)

    def run_phase(tasks: list[dict]) -> list[dict]:
        """Every task's result, in segment order (finished ones reused with --resume)."""
        results: dict[int, dict] = {}
        for task in tasks:
            if config.resume and (result := _finished(task)) is not None:
                results[task["segment"]["number"]] = result
        if results:
            log.info("%s: resuming: %d of %d segments already done", source, len(results), len(tasks))

        def done(task: dict, result: dict) -> None:
            results[task["segment"]["number"]] = result
            progress.update(result["frames"])

        def black_out(task: dict, result: dict) -> None:
            segment = Segment(**task["segment"])
            log.warning("segment %d (frames %d-%d) failed twice: %s; blacked out (--on-segment-failure black)", segment.number, segment.start_index, segment.end_index - 1, result["error"])
            failed_segments.append({"segment": segment.number, "start_frame": segment.start_index, "end_frame": segment.end_index - 1, "error": result["error"]})
            done(task, _blacked_out(task, plan, result["error"]))

        progress.update(sum(r["frames"] for r in results.values()))
        todo = [t for t in tasks if t["segment"]["number"] not in results]
        if todo:
            run_segments(todo, jobs, done, ray_address, on_failure=black_out if config.on_segment_failure == "black" else None)
        if len(failed_segments) == len(plan.segments):
            raise FaceanonError(f"every segment failed: {failed_segments[0]['error']}")
        return [results[t["segment"]["number"]] for t in tasks]

    tracks = vault = None
    success = False
    people = None
    failed_segments: list[dict] = []  # --on-segment-failure black: what was blacked out, and why
    try:
        if config.vault:
            # Opened first, like a single run's: an existing vault fails before any segment runs.
            vault = outputs.add(open_run_vault(
                config.vault, source, key_file=config.key_file, mask_scale=config.mask_scale, diffusion=config.mode == "diffusion",
                start_s=config.start_s, end_s=config.end_s, overwrite=config.overwrite, quality=config.vault_quality,
            ))
        if planned and video_plan is None:
            video_plan, people = _analyse_segments(source, config, plan, work, run_phase, gallery)
            if config.save_plan:
                video_plan.save(destination, overwrite=config.overwrite, outputs=outputs)
                write_people_store(config, source, people, tracks=len(video_plan.tracks), outputs=outputs)
                success = True
        if success:  # --save-plan: no video
            ordered = []
        else:
            if video_plan is not None:
                tasks = _render_tasks(source, config, plan, work, codec, video_plan)
            else:
                tasks = _tasks(source, config, plan, work, codec)
            ordered = run_phase(tasks)
            start = time.perf_counter()
            if config.save_tracks:
                tracks = outputs.add(TrackWriter(tracks_path_for(config.save_tracks, source), overwrite=config.overwrite))
            merged = _merge_tracks(plan, [Path(t["tracks"]) for t in tasks], tracks, stitch=video_plan is None)
            if video_plan is None and (config.people or config.gallery):
                people = _link_people(merged, tasks, gallery)[0]
                log.info("%s: %d tracks linked into %d people", source, len(people.person_of_track), len(set(people.person_of_track.values())))
            if tracks is not None and (people is not None or video_plan is not None):
                tracks.write_people({t: track.person_id for t, track in video_plan.tracks.items()} if video_plan is not None else people.person_of_track)
            writer, reader = _join(source, destination, config, tasks, plan)
            outputs.add(writer)  # its temporary file goes with the set's when anything below fails
            try:
                if vault is not None:
                    _merge_vault(vault, tasks, merged.mappings, {t["segment"]["number"] for t, r in zip(tasks, ordered) if r.get("blacked_out")}, plan)
                    vault.finish(video_sha256=writer.video_sha256())  # bound to the joined video, as a single run's
                if people is not None:
                    people_tracks = len(video_plan.tracks) if video_plan is not None else len(people.person_of_track)
                    write_people_store(config, source, people, tracks=people_tracks, outputs=outputs)
                serial["join"] = time.perf_counter() - start
                writer.close(success=True)
                success = True
            finally:
                reader.close()
    except (KeyboardInterrupt, FaceanonError) as exc:
        if not any(work.glob("segment-*.json")):  # nothing finished: nothing to keep for --resume
            shutil.rmtree(work, ignore_errors=True)
        else:
            log.warning("%sfinished segments are kept in %s for --resume", "interrupted: " if isinstance(exc, KeyboardInterrupt) else "", work)
        raise
    finally:
        progress.close()
        if tracks is not None:
            tracks.close(success=success)
        if vault is not None:
            vault.close(success=success)
        if lock is not None:
            lock.close()
    shutil.rmtree(work, ignore_errors=True)
    if not ordered:  # --save-plan
        faces = sum(len(t) for t in video_plan.tracks.values())
        obscured = sum(s.end_frame - s.start_frame + 1 for s in video_plan.obscured)
        return RunSummary(str(source), str(destination), video_plan.input.frame_count, faces, obscured, time.perf_counter() - started, stage_seconds=serial)
    summary = RunSummary(
        input=str(source),
        output=str(destination),
        frames=sum(r["frames"] for r in ordered),
        faces=sum(r["faces"] for r in ordered),
        obscured_frames=sum(r["obscured_frames"] for r in ordered),
        seconds=time.perf_counter() - started,
        stage_seconds={**dict(sum((Counter(r["stage_seconds"]) for r in ordered), Counter())), **serial},
    )
    summary.redaction = writer.scrub.summary(writer.policy)
    if config.report:
        from faceanon_video.report import build_report, report_paths_for, write_reports

        reasons = sum((Counter(r["obscure_reasons"]) for r in ordered), Counter())
        counted = SimpleNamespace(faces=summary.faces, track_ids=merged.track_ids, obscured_frames=summary.obscured_frames, obscure_reasons=dict(reasons), detect_every=ordered[0]["detect_every"])
        if video_plan is not None:
            from faceanon_video.planning import PlanProcessor

            blacked_out = sum(r.get("blacked_out_frames", 0) for r in ordered)
            counted.report_entry = lambda: PlanProcessor.report_entry(SimpleNamespace(plan=video_plan, blacked_out_frames=blacked_out))
        reader.frames_decoded = plan.frames
        start = time.perf_counter()
        report = build_report(config, source, destination, summary, reader, writer, counted, summary.seconds)
        report["segments"] = {"count": len(tasks), "jobs": jobs, "ray": ray_address is not None, "blacked_out": failed_segments}
        write_reports(report, report_paths_for(config.report, source), outputs)
        summary.report_seconds = time.perf_counter() - start
    return summary


def _merge_vault(vault, tasks: list[dict], mappings: list[dict[int, int]], blacked_out: set[int], plan: SegmentPlan) -> None:
    """Append the segments' vault parts to ``vault`` in order, their track ids those of the joined
    video (``mappings``: the track stitching's); a blacked-out segment has no part: its frames are
    listed as missing (they are black in the video: nothing to restore)."""
    key = None
    for task, mapping in zip(tasks, mappings):
        segment = Segment(**task["segment"])
        if segment.number in blacked_out:
            vault.add_missing(segment.start_index, segment.end_index - 1, float(plan.first_pts_of(segment) * plan.time_base))
            continue
        key = key or load_key(RunConfig.from_json(task["config"]).key_file)
        with VaultReader(task["vault"], key) as part:
            if part.frames != segment.frames:
                raise FaceanonError(f"vault part of segment {segment.number} has {part.frames} frames where the plan counted {segment.frames}")
            vault.append_part(part, mapping)


def _blacked_out(task: dict, plan: SegmentPlan, error: str) -> dict:
    """A failed segment replaced by what fail-closed gives a frame nobody checked: black frames with
    the segment's timestamps (a render), or every frame of it marked obscured in the plan (an
    analysis: the render then blacks them out). Its result is not written: --resume retries it."""
    segment = Segment(**task["segment"])
    config = RunConfig.from_json(task["config"])
    reason = f"segment failed: {error}"[:200]
    with TrackWriter(task["tracks"], overwrite=True):
        pass  # no faces: an empty track file
    if task["kind"] == "analyse":
        failed = {str(f): reason for f in range(segment.start_index, segment.end_index)}
        fragment = {"embeddings": {}, "rows": {}, "candidates": [], "failed": failed, "size": None, "settings": None}
        write_atomic(task["fragment"], json.dumps(fragment))
    else:
        with VideoReader(task["source"]) as reader:
            all_pts, _ = _video_pts(reader)
            all_pts = [pts for pts in all_pts if pts >= plan.first_pts]  # indices count from the span's first frame
            info = reader.info
            writer = VideoWriter(task["video"], fps=info.fps, time_base=info.time_base, policy=MetadataPolicy(keep_audio=False), codec=task["codec"], crf=config.crf, preset=config.preset)
        try:
            black = np.zeros((info.height, info.width, 3), np.uint8)
            for pts in all_pts[segment.start_index : segment.end_index]:
                writer.write(Frame(bgr=black, pts=pts, time_base=info.time_base))
            writer.close(success=True)
        except BaseException:
            writer.close(success=False)
            raise
        if "fragment" in task:
            write_atomic(task["fragment"], json.dumps({"embeddings": {}}))
    return {
        "frames": segment.frames, "faces": 0, "obscured_frames": segment.frames, "obscure_reasons": {reason: segment.frames},
        "detect_every": config.detect_every or 2, "blacked_out_frames": 0, "stage_seconds": {}, "seconds": 0.0,
        "blacked_out": task["kind"] != "analyse",  # its video is black: no vault part (_merge_vault)
    }


def _analyse_segments(source: Path, config: RunConfig, plan: SegmentPlan, work: Path, run_phase: Callable[[list[dict]], list[dict]], gallery):
    """Phase 1 of a planned run: (the plan of the whole file, its ``People``) from the segments'
    analyses, tracks stitched at the cuts and people linked over all of it."""
    from concurrent.futures import ThreadPoolExecutor

    from faceanon_video.planning import analysis_config, assemble_plan
    from faceanon_video.report import sha256_file

    analysis = analysis_config(config)
    if not config.save_plan:
        analysis = replace(analysis, second_detector=False)  # no reviewer: no hints (as planning.process_planned)
    tasks = _tasks(source, analysis, plan, work, codec="", kind="analyse")
    with ThreadPoolExecutor(1, thread_name_prefix="sha256") as hasher:
        digest = hasher.submit(sha256_file, source)  # the plan's binding to the file, while the workers run
        results = run_phase(tasks)
        merged = _merge_tracks(plan, [Path(t["tracks"]) for t in tasks], None)
        people, fragments = _link_people(merged, tasks, gallery)
        rows: dict[int, list[tuple]] = defaultdict(list)
        for mapping, fragment in zip(merged.mappings, fragments):
            for local, track_rows in fragment["rows"].items():
                rows[mapping[int(local)]] += [(f, np.asarray(xyxy, np.float32), np.asarray(lm, np.float32), score, detected) for f, xyxy, lm, score, detected in track_rows]
        candidates = [(f, np.asarray(xyxy, np.float32), score, src) for fragment in fragments for f, xyxy, score, src in fragment["candidates"]]
        failed = {int(f): reason for fragment in fragments for f, reason in fragment["failed"].items()}
        size = next((tuple(f["size"]) for f in fragments if f["size"]), None)
        settings = next(f["settings"] for f in fragments if f["settings"])  # one segment at least was analysed
        with VideoReader(source) as reader:
            info = reader.info
        video_plan = assemble_plan(source, config, info, digest.result(), plan.frames, size, settings, rows, people, candidates, failed)
    log.info(
        "%s: analysed %d frames in %d segments: %d tracks, %d people, %d candidates, %d frames obscured",
        source, plan.frames, len(tasks), len(video_plan.tracks), len(video_plan.persons), len(video_plan.candidates), len(failed),
    )
    del results
    return video_plan, people


def _render_tasks(source: Path, config: RunConfig, plan: SegmentPlan, work: Path, codec: str, video_plan) -> list[dict]:
    """Phase 2: each segment rendered from its slice of ``video_plan``, every one with the same seed
    key (``--key-file``, else one random key for the run: then no render is reused by --resume,
    since the key is not kept)."""
    from faceanon_video.keys import load_key, random_key

    seed_key = None if config.key_file else random_key().hex()
    digest = hashlib.sha256(video_plan.to_json().encode())
    # The key itself (hashed), not its path: a key file rewritten in place starts new renders.
    digest.update(hashlib.sha256(load_key(config.key_file)).digest() if config.key_file else os.urandom(8))
    render = replace(config, people=None, gallery=None, save_plan=None, plan=None, start_s=None, end_s=None)
    tasks = _tasks(source, render, plan, work, codec, kind="render", name=digest.hexdigest()[:12], seed_key=seed_key)
    for segment, task in zip(plan.segments, tasks):
        if not Path(task["plan"]).is_file():
            _plan_slice(video_plan, segment).save(task["plan"])
    return tasks


def _plan_slice(video_plan, segment: Segment):
    """The part of ``video_plan`` a segment's render needs: its frames' track rows and their persons."""
    from faceanon_video.plan import Person, Plan

    tracks = {}
    for track_id, track in video_plan.tracks.items():
        rows = (track.frames >= segment.start_index) & (track.frames < segment.end_index)
        if rows.any():
            tracks[track_id] = track.take(rows)
    persons: dict[int, Person] = {}
    for track_id, track in sorted(tracks.items()):
        whole = video_plan.persons[track.person_id]
        persons.setdefault(track.person_id, Person(whole.person_id, whole.decision, [], whole.gallery_id)).track_ids.append(track_id)
    return Plan(input=video_plan.input, settings=video_plan.settings, persons=persons, tracks=tracks, regions=video_plan.regions, blackouts=video_plan.blackouts, obscured=video_plan.obscured)
