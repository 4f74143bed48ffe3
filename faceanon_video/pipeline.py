"""The file runner: decode -> ``FrameProcessor`` (detect -> track -> anonymize) -> encode.

No model code lives here: this module runs the stages over one file concurrently and makes the
promise of **no half-written output**: the result is renamed into place only after the last frame
is flushed. Fail closed (a frame whose detection or anonymization raised is blacked out, never
passed through) is ``processor.FrameProcessor``'s; which files and where their results go is
``inputs``'s. The public names of both are re-exported here (``faceanon_video.pipeline`` is the
library's entry point).

Concurrency: decoding and encoding each run in their own thread, detection in a small pool (frames are
detected in parallel, then tracked and anonymized strictly in order). PyAV, OpenCV and onnxruntime
release the GIL in their heavy calls, so the threads really do run on both cores. Queues are bounded
so memory stays flat on long videos.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from faceanon_video.config import SEEDED_MODES, RunConfig
from faceanon_video.errors import ConfigError, FaceanonError, InputError
from faceanon_video.failures import DamagedFrame, FailureWatch  # noqa: F401 - re-exported
from faceanon_video.inputs import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, check_output_kind, expand_inputs, is_image, output_path_for
from faceanon_video.io.decode import VideoReader
from faceanon_video.io.encode import VideoWriter, from_input
from faceanon_video.io.images import check_fits_format, read_image
from faceanon_video.io.metadata import MetadataPolicy
from faceanon_video.io.outputs import OutputSet, refuse_clashes, refuse_existing, refuse_unwritable, with_output_set, write_atomic
from faceanon_video.processor import STAGES, FrameProcessor, build_anonymizer, detector_factory
from faceanon_video.track.shots import ShotChangeDetector
from faceanon_video.track.stage import LOW_SCORE_FRACTION, TrackingStage, build_tracker
from faceanon_video.track.tracks_io import TrackWriter, tracks_path_for
from faceanon_video.types import Frame
from faceanon_video.vault import open_run_vault, vault_path_for

log = logging.getLogger(__name__)

QUEUE_FRAMES = 8  # per queue: enough to smooth out uneven stage times, small enough for 4K frames in RAM
#: Frames waiting for their detection in a file run are limited to this many bytes (as I420).
HELD_FRAMES_BYTES = 512 * 1024 * 1024


@dataclass
class RunSummary:
    """What a run did; printed by the CLI and returned by ``process_file``."""

    input: str
    output: str | None
    frames: int = 0
    faces: int = 0
    obscured_frames: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    redaction: str = ""  # what the metadata policy removed and kept (io.metadata.ScrubRecord.summary)
    report_seconds: float = 0.0  # time spent writing the --report files (hashing included)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "fps": round(self.fps, 2)}


# 1. Files: a threaded run over one video, and the image path.

_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event, producer: threading.Thread | None = None):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END
            if producer is not None and not producer.is_alive() and q.empty():
                return _Failed(RuntimeError(f"the {producer.name} thread stopped without finishing"))


@with_output_set
def process_video(source: str | Path, destination: str | Path | None, config: RunConfig, processor: FrameProcessor | None = None, *, outputs: OutputSet) -> RunSummary:
    """Anonymize one video file into ``destination``. ``destination`` None: run every frame through
    ``processor`` and encode nothing (the analysis of ``--save-plan``). The video, vault, tracks,
    people sidecar and reports join ``outputs`` (``io.outputs.OutputSet``: committed together, by the
    caller when it passes a set, otherwise when this returns)."""
    started = time.perf_counter()
    # 1. Open the input: a missing or non-video file fails here, before anything is written.
    reader = VideoReader(source, start_s=config.start_s, end_s=config.end_s, strict=config.strict)
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(QUEUE_FRAMES)
    to_encode: queue.Queue = queue.Queue(QUEUE_FRAMES)
    encode_error: list[BaseException] = []
    try:
        # 2. Build the stages (models load here, before the output file is created).
        processor = processor or FrameProcessor(config)
        # --start: the frames just before it are decoded and tracked too, and dropped by the processor
        # (``Frame.warm_up``), so a face in view at the start is tracked there (as in a whole run).
        reader.warm_up_s = getattr(processor, "warm_up_s", 0.0)  # absent in bench's copy-only stand-in
        if config.save_tracks:
            processor.track_writer = outputs.add(TrackWriter(tracks_path_for(config.save_tracks, source), overwrite=config.overwrite))
        if config.vault:
            processor.vault_writer = outputs.add(open_run_vault(
                config.vault,
                source,
                key_file=config.key_file,
                mask_scale=config.mask_scale,
                diffusion=config.mode == "diffusion",
                start_s=config.start_s,
                end_s=config.end_s,
                overwrite=config.overwrite,
                quality=config.vault_quality,
            ))
        gallery = _open_gallery(config)  # a wrong key or a changed gallery fails here, before any frame
        writer = None if destination is None else VideoWriter(
            destination,
            fps=reader.info.fps,
            time_base=reader.info.time_base,
            policy=MetadataPolicy.from_config(config),
            codec=config.codec,
            crf=config.crf,
            preset=config.preset,
            **from_input(reader),
        )
        if writer is not None:
            outputs.add(writer)
    except BaseException:
        reader.close()
        _close_track_writer(processor, success=False)
        _close_vault(processor, success=False)
        raise
    timings = processor.timings

    # 3. Decode and encode threads around the in-order detect/track/anonymize loop.
    def decode_loop() -> None:
        try:
            items = reader.items(packets=config.keep_audio)
            while True:
                start = time.perf_counter()
                item = next(items, _END)
                if isinstance(item, Frame):
                    timings["decode"].append(time.perf_counter() - start)
                if not _put(decoded, item, stop) or item is _END:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            _put(decoded, _Failed(exc), stop)

    def encode_loop() -> None:
        try:
            while True:
                item = _get(to_encode, stop)
                if item is _END:
                    return
                start = time.perf_counter()
                if writer is None:
                    continue  # an analysis: the frames end here
                if isinstance(item, Frame):
                    writer.write(item)
                    timings["encode"].append(time.perf_counter() - start)
                else:
                    writer.write_packet(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            encode_error.append(exc)
            stop.set()

    # Detection threads each run OpenCV single-threaded: frame-level parallelism wastes nothing, while
    # OpenCV's own pool inside every worker oversubscribes the cores (measured: ~15% more CPU per frame).
    opencv_threads = cv2.getNumThreads()
    if config.workers > 1:
        cv2.setNumThreads(1)
    decoder = threading.Thread(target=decode_loop, name="decode", daemon=True)
    encoder = threading.Thread(target=encode_loop, name="encode", daemon=True)
    pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="detect")
    pending: deque[tuple[object, Future | None]] = deque()
    # Frames in flight between decoder and tracker: two full-frame detections per worker, however
    # many frames apart they are (--detect-every); fewer left a core idle while the tracker waited
    # for the oldest one (measured at 720p: 74 % of two cores busy, 89 % with this window).
    window = config.workers * 2 * processor.detect_every
    # ...but never more frames than HELD_FRAMES_BYTES (4K at --detect-every 30 would hold ~1.5 GB).
    frame_bytes = max(1, reader.info.width * reader.info.height * 3 // 2)
    window = max(config.workers, min(window, HELD_FRAMES_BYTES // frame_bytes))
    progress = _progress_bar(reader.info.frame_count, str(source), config.progress)
    success = False
    try:
        decoder.start()
        encoder.start()

        def emit_oldest() -> None:
            item, future = pending.popleft()
            send(processor.finish_held(item, future.result()) if future is not None else [item])

        def send(items: list) -> None:
            for item in items:
                if isinstance(item, Frame) and item.warm_up:
                    continue  # before --start (the processor keeps them; this makes sure none is encoded)
                if not _put(to_encode, item, stop):
                    raise encode_error[0] if encode_error else KeyboardInterrupt
                if isinstance(item, Frame):
                    progress.update(1)
            progress.set_postfix(faces=processor.faces, refresh=False)

        while True:
            item = _get(decoded, stop, decoder)
            if isinstance(item, _Failed):
                raise item.exc
            if item is _END:
                _close_with_a_pass(pending, pool, processor)
                break
            future = pool.submit(processor.detect, item) if isinstance(item, Frame) else None
            pending.append((item, future))
            while len(pending) > window:
                emit_oldest()
        while pending:
            emit_oldest()
        send(processor.flush())
        _put(to_encode, _END, stop)
        encoder.join()
        if encode_error:
            raise encode_error[0]
        # 4. Finalize: a run that nearly all failed fails; flush the encoder; complete the vault, bound
        # to the encoded video (its failure fails the run). ``outputs`` renames them all into place
        # once the report too is written.
        processor.failures.check_final()
        if writer is not None:
            writer.finish()
        if processor.vault_writer is not None:
            processor.vault_writer.finish(video_sha256=writer.video_sha256())
        if getattr(processor, "embeddings", None) is not None:  # absent in bench's copy-only stand-in
            _write_people(config, source, processor, gallery, outputs)
        if writer is not None:
            writer.close(success=True)
        success = True
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        progress.close()
        decoder.join(timeout=5)
        encoder.join(timeout=5)
        cv2.setNumThreads(opencv_threads)
        if not success and writer is not None:
            writer.close(success=False)
        reader.close()
        _close_track_writer(processor, success)
        _close_vault(processor, success)
    summary = _summary(source, destination, processor, time.perf_counter() - started)
    if writer is None:
        return summary
    summary.redaction = writer.scrub.summary(writer.policy)
    if config.report:
        from faceanon_video.report import build_report, report_paths_for, write_reports

        start = time.perf_counter()
        report = build_report(config, source, destination, summary, reader, writer, processor, summary.seconds)
        write_reports(report, report_paths_for(config.report, source), outputs)
        summary.report_seconds = time.perf_counter() - start
    return summary


def _close_with_a_pass(pending: deque, pool: ThreadPoolExecutor, processor: FrameProcessor) -> None:
    """Make the video's last frame a full pass: the held frames after the last scheduled one need a
    later pass to be checked against, and a face that came in there would otherwise never be seen
    (with --detect-every 30, the last second of a video)."""
    should_detect = getattr(processor, "should_detect", None)  # absent in bench's copy-only stand-in
    for i in range(len(pending) - 1, -1, -1):
        item, future = pending[i]
        if isinstance(item, Frame):
            if future is not None and should_detect is not None and not should_detect(item):
                future.cancel()
                pending[i] = (item, pool.submit(processor.detect, item, True))
            return


def _open_gallery(config: RunConfig):
    if not config.gallery:
        return None
    from faceanon_video.keys import load_key
    from faceanon_video.people.gallery import IdentityGallery

    return IdentityGallery(config.gallery, load_key(config.key_file))


def _write_people(config: RunConfig, source, processor: FrameProcessor, gallery, outputs: OutputSet) -> None:
    """--people / --gallery: link the video's tracks into people (the whole video in view), give them
    their gallery ids, and write the person of each track at the end of --save-tracks. (Seeded modes
    link before encoding instead: ``planning``.)"""
    from faceanon_video.people.people import identify_people

    people = identify_people(processor.embeddings.tracks, gallery)
    log.info("%s: %d tracks linked into %d people", source, len(people.person_of_track), len(set(people.person_of_track.values())))
    if processor.track_writer is not None:
        processor.track_writer.write_people(people.person_of_track)
    write_people_store(config, source, people, tracks=len(people.person_of_track), outputs=outputs)


def write_people_store(config: RunConfig, source, people, tracks: int, outputs: OutputSet) -> None:
    """``--people``: the person embeddings of one input, encrypted with the key (no face pixels), in ``outputs``."""
    if not config.people:
        return
    from faceanon_video.keys import load_key
    from faceanon_video.people.gallery import write_store

    write_store(people_path_for(config.people, source), load_key(config.key_file), people.sidecar({"tracks": tracks}), outputs=outputs)


def people_path_for(people: str | Path, source) -> Path:
    """Where one input's people sidecar goes (``--people``: a file, a folder or a ``{stem}`` name)."""
    return tracks_path_for(people, source, suffix=".people")


def _close_track_writer(processor: FrameProcessor | None, success: bool) -> None:
    if processor is not None and processor.track_writer is not None:
        tracks, processor.track_writer = processor.track_writer, None
        tracks.close(success=success)


def _close_vault(processor: FrameProcessor | None, success: bool) -> None:
    if processor is not None and processor.vault_writer is not None:
        vault, processor.vault_writer = processor.vault_writer, None
        vault.close(success=success)


@with_output_set
def process_image(source: str | Path, destination: str | Path, config: RunConfig, processor: FrameProcessor | None = None, *, outputs: OutputSet) -> RunSummary:
    """Anonymize one still image (written atomically, same format as the destination's extension)."""
    started = time.perf_counter()
    if config.vault or config.people or config.gallery:
        raise ConfigError(f"{source}: --vault, --people and --gallery work on videos only")
    bgr = read_image(source)
    check_fits_format(destination, bgr.shape[1], bgr.shape[0])
    processor = processor or FrameProcessor(config)
    frame = processor.process(Frame(bgr=bgr, index=0))
    ok, encoded = cv2.imencode(Path(destination).suffix or ".png", frame.bgr)
    if not ok:
        raise InputError(f"{destination}: cannot write this image format")
    write_atomic(destination, encoded.tobytes(), outputs=outputs)
    return _summary(source, destination, processor, time.perf_counter() - started)


def _summary(source, destination, processor: FrameProcessor, seconds: float) -> RunSummary:
    return RunSummary(
        input=str(source),
        output=None if destination is None else str(destination),
        frames=processor.frames,
        faces=processor.faces,
        obscured_frames=processor.obscured_frames,
        seconds=seconds,
        stage_seconds={k: float(np.sum(v)) for k, v in processor.timings.items()},
    )


class _NoProgress:
    """The progress bar of a quiet run (-q, segments, benchmarks): it never imports tqdm (start-up time)."""

    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **kwargs) -> None: ...

    def close(self) -> None: ...


def _progress_bar(total: int, name: str, enabled: bool):
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total or None, desc=Path(name).name[:30], unit="frame", dynamic_ncols=True, leave=False)


def outputs_of(source: Path, destination: Path, config: RunConfig) -> list[tuple[str, Path]]:
    """Every file one input's run writes, with its option (the reports' formats are checked later)."""
    outputs = [("--save-plan" if config.save_plan else "-o", Path(destination))]
    if config.save_tracks:
        outputs.append(("--save-tracks", tracks_path_for(config.save_tracks, source)))
    if config.vault:
        outputs.append(("--vault", vault_path_for(config.vault, source)))
    if config.people:
        outputs.append(("--people", people_path_for(config.people, source)))
    if config.report:
        from faceanon_video.report import report_paths_for  # here: a plain run loads no report code

        # One report given twice is written once (report.write_reports).
        outputs += [("--report", path) for path in dict.fromkeys(report_paths_for(config.report, source))]
    return outputs


def _inputs_of(source: Path, config: RunConfig) -> list[tuple[str, Path]]:
    """The files one input's run reads, which no output may replace."""
    inputs = [("INPUT", Path(source))]
    if config.key_file:
        inputs.append(("--key-file", Path(config.key_file)))
    if config.plan:
        from faceanon_video.planning import plan_path_for  # here: a plain run loads no planning code

        inputs.append(("--plan", plan_path_for(config.plan, source)))
    if config.gallery:
        inputs.append(("--gallery", Path(config.gallery)))
    return inputs


def process_file(source: Path, destination: Path, config: RunConfig, processor: FrameProcessor | None = None, ray_address: str | None = None) -> RunSummary:
    """One input. ``--save-plan``: ``destination`` is the plan file. ``--plan`` and seeded modes
    (diffusion) on videos: analyse, then render the plan (``planning``), so seeds are per person.
    A long video may be split into segments run by several processes, or by Ray tasks with
    ``ray_address`` ("local", "auto", HOST:PORT): see ``faceanon_video.segments``."""
    outputs = outputs_of(source, destination, config)
    refuse_clashes(outputs, _inputs_of(source, config))
    for _, path in outputs:  # every output's folder takes files: found now, not after the video is encoded
        refuse_unwritable(path)
    planned = config.save_plan or config.plan or (config.mode in SEEDED_MODES and config.track)
    if (config.save_plan or config.plan) and is_image(source):
        raise ConfigError(f"{source}: --save-plan and --plan work on videos only")
    if not config.save_plan:
        check_output_kind(source, destination)
    refuse_existing(destination, config.overwrite)
    if config.people:
        refuse_existing(people_path_for(config.people, source), config.overwrite)
    if config.report:
        from faceanon_video.report import check_report_targets

        if is_image(source):
            raise ConfigError(f"{source}: --report works on videos (images are written without any metadata)")
        check_report_targets(config.report, source, config.overwrite)
    if not is_image(source):
        from faceanon_video.segments import process_segmented, segment_jobs

        jobs = segment_jobs(source, config, ray_address)
        if jobs > 1:  # one long file on several cores or nodes (planned runs too): faceanon_video.segments
            return process_segmented(source, destination, config, jobs, ray_address)
    if planned and not is_image(source):
        from faceanon_video.planning import process_planned

        return process_planned(source, destination, config, processor)
    run = process_image if is_image(source) else process_video
    return run(source, destination, config, processor)


__all__ = [
    "IMAGE_EXTENSIONS",
    "LOW_SCORE_FRACTION",
    "VIDEO_EXTENSIONS",
    "FaceanonError",
    "FrameProcessor",
    "RunSummary",
    "STAGES",
    "ShotChangeDetector",
    "TrackingStage",
    "build_anonymizer",
    "build_tracker",
    "check_output_kind",
    "detector_factory",
    "expand_inputs",
    "is_image",
    "output_path_for",
    "process_file",
    "process_image",
    "process_video",
]
