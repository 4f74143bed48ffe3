"""Throughput and latency of a real run, stage by stage; shared by ``faceanon-video bench`` and
``benchmarks/``.

``run_bench(path, config)`` runs the actual threaded file pipeline (``pipeline.process_video``:
decode and encode threads, ``workers`` detection threads, bounded queues) on a clip, writing to a
temporary file, and reports:

- end-to-end fps: frames / wall time of the run, after the models were loaded and warmed up;
- per stage (decode, detect, track, anonymize, encode): mean and p90 wall time per call, and the
  fps that stage alone would allow on one thread. Stages overlap in threads, so these do not add up
  to the wall time, and on a busy machine they include the time a thread waited for a core;
- latency: from the moment a frame is decoded until it is anonymized (queueing included, encoding
  not), the delay a live stream would see, as p50/p90/p99/max;
- CPU time per frame by thread, which is what bounds fps once every core is busy: decode, the
  detection workers, the in-order thread (tracking, held frames, anonymization), encode, and any
  other thread (codec or library pools); and how many cores that kept busy (Linux, from /proc);
- peak resident memory during the run (sampled every 20 ms), and the CPU/GPU it ran on;
- two I/O ceilings on the same frames, right after the run: the pipeline with nothing between
  decoder and encoder (``io_ceiling_fps``), and a plain PyAV decode -> encode loop (``plain_pyav_fps``).
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import av
import cv2
import numpy as np
import onnxruntime

from faceanon_video.config import RunConfig
from faceanon_video.errors import ConfigError, InputError
from faceanon_video.failures import FailureWatch
from faceanon_video.io.decode import VideoReader
from faceanon_video.io.encode import CODEC_BY_EXTENSION, DEFAULT_CODEC, VideoWriter
from faceanon_video.pipeline import process_video
from faceanon_video.processor import STAGES, FrameProcessor
from faceanon_video.types import Frame

__all__ = ["BenchResult", "StageStats", "sample_clip", "scaled_clip", "machine_description", "plot_latency", "run_bench"]

log = logging.getLogger(__name__)

#: The clip ``faceanon-video bench`` uses when given none (640x360, 275 frames, several faces): the
#: package's sample if one is installed, else the repository's test clip.
SAMPLE_CLIPS = (
    Path(__file__).resolve().parents[1] / "samples" / "short_hamilton_clip.mp4",
    Path(__file__).resolve().parents[2] / "tests" / "data" / "short_hamilton_clip.mp4",
)


def sample_clip() -> Path | None:
    return next((p for p in SAMPLE_CLIPS if p.is_file()), None)


@dataclass
class StageStats:
    calls: int
    total_s: float
    mean_ms: float
    p90_ms: float

    @property
    def fps(self) -> float:
        """Frames per second this stage alone sustains on one thread."""
        return 1000.0 / self.mean_ms if self.mean_ms > 0 else float("inf")

    @classmethod
    def of(cls, seconds: list[float]) -> StageStats:
        ms = np.asarray(seconds, np.float64) * 1000
        return cls(len(ms), float(ms.sum() / 1000), float(ms.mean()), float(np.percentile(ms, 90)))


@dataclass
class BenchResult:
    input: str
    width: int
    height: int
    frames: int
    faces: int
    mode: str
    detector: str
    workers: int
    backend: str
    wall_s: float
    stages: dict[str, StageStats]
    latency_ms: dict[str, float]
    peak_rss_mb: float
    machine: dict = field(default_factory=dict)
    obscured_frames: int = 0
    detect_every: int = 1  # as the run resolved it (files: 2 unless set)
    preset: str = ""  # x264 preset of the output
    #: fps of decoding and re-encoding the same frames with the same settings and nothing in between
    #: (the most any anonymizer could reach with this decoder and encoder), measured in the same run.
    io_ceiling_fps: float | None = None
    #: fps of a plain PyAV loop (decode -> encode, PyAV's default codec threads) on the same frames.
    plain_pyav_fps: float | None = None
    #: CPU ms per frame of each kind of thread (``THREAD_GROUPS``), None where /proc is not available.
    cpu_ms_per_frame: dict[str, float] | None = None
    #: Per-frame decode-to-anonymized latency in frame order (for plots; left out of ``to_dict``).
    frame_latency_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cores_busy(self) -> float | None:
        """Average number of cores the run kept busy (CPU time of all threads / wall time)."""
        if not self.cpu_ms_per_frame or self.wall_s <= 0:
            return None
        return sum(self.cpu_ms_per_frame.values()) * self.frames / 1000 / self.wall_s

    def to_dict(self, frame_latency: bool = False) -> dict:
        out = asdict(self)
        out["fps"] = self.fps
        out["cores_busy"] = self.cores_busy
        out["stages"] = {k: {**asdict(v), "fps": v.fps} for k, v in self.stages.items()}
        if not frame_latency:
            del out["frame_latency_ms"]
        return out

    def table(self) -> str:
        lines = [
            f"input     {self.input} ({self.width}x{self.height}, {self.frames} frames, {self.faces} faces painted)",
            f"run       --mode {self.mode} --detector {self.detector} --workers {self.workers} --detect-every {self.detect_every} --preset {self.preset}"
            + (f" --backend {self.backend}" if self.mode == "diffusion" else ""),
            f"machine   {self.machine.get('cpu', '?')}, {self.machine.get('cores', '?')} cores; GPU: {self.machine.get('gpu') or 'none'}",
            "",
            f"{'stage':<10} {'wall ms':>9} {'p90 ms':>8} {'fps (1 thread)':>15}   (per call, waiting for a core included)",
        ]
        for name in STAGES:
            s = self.stages.get(name)
            if s is not None:
                lines.append(f"{name:<10} {s.mean_ms:>9.2f} {s.p90_ms:>8.2f} {s.fps:>15.1f}")
        if self.cpu_ms_per_frame:
            lines += ["", "CPU ms per frame, by thread"]
            lines += [f"  {GROUP_LABELS.get(name, name):<28} {ms:>6.2f}" for name, ms in self.cpu_ms_per_frame.items() if ms > 0.005]
            total = sum(self.cpu_ms_per_frame.values())
            lines.append(f"  {'total':<28} {total:>6.2f}  ({self.cores_busy:.2f} of {self.machine.get('cores', '?')} cores busy)")
        lat = self.latency_ms
        lines += [
            "",
            f"end-to-end  {self.fps:.1f} fps ({self.frames} frames in {self.wall_s:.2f} s)"
            + (f"; I/O ceiling {self.io_ceiling_fps:.1f} fps, so {self.fps / self.io_ceiling_fps:.0%} of it" if self.io_ceiling_fps else ""),
            *([f"plain PyAV  decode -> encode loop {self.plain_pyav_fps:.1f} fps (default codec threads), so {self.fps / self.plain_pyav_fps:.0%} of it"] if self.plain_pyav_fps else []),
            f"latency     p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms (decoded -> anonymized)",
            f"peak memory {self.peak_rss_mb:.0f} MB resident",
        ]
        if self.obscured_frames:
            lines.append(f"WARNING     {self.obscured_frames} frames were obscured after a stage failed")
        return "\n".join(lines)


def machine_description() -> dict:
    """CPU model and usable cores, GPU (through torch when installed), and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform's answer stands
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "gpu": _gpu_name(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
    }


def _gpu_name() -> str | None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


#: The kinds of thread CPU time is reported for, by the names ``pipeline.process_video`` gives its
#: threads (detection workers are ``detect_0``, ``detect_1``...). The thread that calls it runs
#: tracking and anonymization in frame order; any other thread is a codec's or a library's own pool.
THREAD_GROUPS = {"decode": "decode", "detect": "detect", "encode": "encode"}
IN_ORDER_THREAD = "in_order"
OTHER_THREADS = "other"
GROUP_LABELS = {"detect": "detect (workers)", "in_order": "in order (track, anonymize)", "other": "other (codec, library pools)"}


def _thread_cpu_s() -> dict[int, float] | None:
    """CPU seconds (user + system) so far of each live thread of this process, by native id;
    None where /proc is not available (not Linux)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()  # the name before ")" may hold spaces
        except OSError:
            continue  # the thread ended meanwhile
        cpu[int(tid)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return cpu


class _RunSampler:
    """Samples the run on a thread every ``period_s``: peak resident set size (ru_maxrss is the
    process's all-time peak, which model loading or an earlier run would dominate; without psutil,
    the 'test' extra, it falls back to that) and each thread's CPU time, kept per thread name so
    the pipeline's threads can be told apart after they have ended. A thread's CPU after its last
    sample is missed: at most one period of it.
    """

    def __init__(self, period_s: float = 0.02) -> None:
        try:
            import psutil
        except ImportError:
            self._process = None
        else:
            self._process = psutil.Process()
        self.peak_bytes = self._rss()
        self._names: dict[int, str] = {}
        self._caller = threading.get_native_id()  # the thread that runs the pipeline's in-order work
        self._start_cpu = _thread_cpu_s() or {}
        self._last_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period_s,), name="bench-sampler", daemon=True)

    def _rss(self) -> int:
        if self._process is not None:
            return self._process.memory_info().rss
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._rss())
        self._names.update((t.native_id, t.name) for t in threading.enumerate() if t.native_id is not None)
        self._last_cpu.update(_thread_cpu_s() or {})

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self._sample()

    def __enter__(self) -> _RunSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def cpu_s_by_group(self) -> dict[str, float] | None:
        """CPU seconds each kind of thread used during the run (this sampler's own left out)."""
        if not self._last_cpu:
            return None
        used = dict.fromkeys([*THREAD_GROUPS.values(), IN_ORDER_THREAD, OTHER_THREADS], 0.0)
        for tid, seconds in self._last_cpu.items():
            if tid == self._thread.native_id:
                continue
            group = IN_ORDER_THREAD if tid == self._caller else THREAD_GROUPS.get(self._names.get(tid, "").split("_")[0], OTHER_THREADS)
            used[group] += seconds - self._start_cpu.get(tid, 0.0)
        return used


def _latency_processor(config: RunConfig) -> tuple[FrameProcessor, list[float]]:
    """A FrameProcessor, and the list it fills with each frame's decode-to-anonymized delay."""
    processor = FrameProcessor(config)
    latency_s: list[float] = []

    def record(frame: Frame) -> None:
        if frame.capture_s is not None:  # frames held back for --detect-every count their wait too
            latency_s.append(time.monotonic() - frame.capture_s)

    processor.on_release = record
    return processor, latency_s


class _CopyOnly:
    """Stands in for ``FrameProcessor`` in ``process_video``: frames go from decoder to encoder untouched."""

    track_writer = vault_writer = None
    detect_every = 1

    def __init__(self) -> None:
        self.timings: dict[str, list[float]] = defaultdict(list)
        self.frames = self.faces = self.obscured_frames = 0
        self.failures = FailureWatch()

    def detect(self, frame: Frame) -> None:
        return None

    def finish_held(self, frame: Frame, detections: None) -> list[Frame]:
        self.frames += 1
        return [frame]

    def flush(self) -> list[Frame]:
        return []


def io_ceiling_fps(path: str | Path, config: RunConfig) -> float:
    """fps of the pipeline's own decode -> encode with ``config``'s encoder settings, frames and audio
    copied through untouched: the I/O ceiling an anonymizer is compared against. It is the real file
    pipeline (decode and encode threads, queues) with nothing in between."""
    with tempfile.TemporaryDirectory(prefix="faceanon-io-") as tmp:
        copy_config = replace(config, progress=False, save_tracks=None, vault=None, overwrite=True)
        summary = process_video(path, Path(tmp) / f"io{Path(path).suffix or '.mp4'}", copy_config, processor=_CopyOnly())
        return summary.frames / summary.seconds


def plain_pyav_fps(path: str | Path, config: RunConfig, frames: int) -> float:
    """fps of the simplest PyAV transcode of the first ``frames`` frames: one loop that decodes and
    encodes, PyAV's default codec threads, ``config``'s encoder settings, video only. The other
    reading of "I/O ceiling" (a plain PyAV decode+encode), reported next to ``io_ceiling_fps``."""
    suffix = Path(path).suffix.lower() or ".mp4"
    codec = config.codec or CODEC_BY_EXTENSION.get(suffix, DEFAULT_CODEC)
    with tempfile.TemporaryDirectory(prefix="faceanon-plain-") as tmp, av.open(str(path)) as source, av.open(str(Path(tmp) / f"plain{suffix}"), "w") as out:
        video = source.streams.video[0]
        video.thread_type = "AUTO"
        stream = out.add_stream(codec, rate=video.average_rate or 30)
        stream.width, stream.height = video.codec_context.width // 2 * 2, video.codec_context.height // 2 * 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"crf": str(config.crf), **({"preset": config.preset} if codec in ("libx264", "libx265") else {})}
        start, done = time.perf_counter(), 0
        for frame in source.decode(video):
            out.mux(stream.encode(frame))
            done += 1
            if done >= frames:
                break
        out.mux(stream.encode())
        return done / (time.perf_counter() - start)


def run_bench(path: str | Path, config: RunConfig, *, max_frames: int | None = None, warmup_frames: int = 5, io_ceiling: bool = True) -> BenchResult:
    """Measure ``config``'s pipeline on the video at ``path`` (see module docstring).

    ``max_frames`` limits the run to the clip's first frames; ``warmup_frames`` are processed
    first and not measured (first inferences allocate buffers and are several times slower).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    # 1. Probe the clip and turn a frame limit into an end time (frames are selected by time).
    with VideoReader(path) as reader:
        info = reader.info
        warm = []
        for frame in reader:
            if len(warm) >= warmup_frames:
                break
            warm.append(frame)
    if max_frames is not None:
        if max_frames < 1:
            raise ConfigError("--frames must be >= 1")
        config = replace(config, end_s=(max_frames - 0.5) / float(info.fps))
    config = replace(config, progress=False, overwrite=True)

    # 2. Load the models and warm them up on the first frames, then forget those timings.
    processor, latency_s = _latency_processor(config)
    for frame in warm:
        processor.process(frame)
    processor.reset()
    processor.reset_counters()
    latency_s.clear()

    # 3. The measured run: the real threaded pipeline, into a temporary file.
    with tempfile.TemporaryDirectory(prefix="faceanon-bench-") as tmp:
        with _RunSampler() as sampled:
            summary = process_video(path, Path(tmp) / f"bench{path.suffix or '.mp4'}", config, processor)
    cpu_s = sampled.cpu_s_by_group()
    ceiling = io_ceiling_fps(path, config) if io_ceiling else None
    plain = plain_pyav_fps(path, config, summary.frames) if io_ceiling else None
    latency_ms = np.asarray(latency_s, np.float64) * 1000
    if not len(latency_ms):
        raise InputError(f"{path}: no frames were decoded")
    frame_h, frame_w = warm[0].shape[:2] if warm else (info.height, info.width)
    return BenchResult(
        input=str(path),
        width=frame_w,
        height=frame_h,
        frames=summary.frames,
        faces=summary.faces,
        mode=config.mode,
        detector=config.detector,
        workers=config.workers,
        detect_every=processor.detect_every,
        preset=config.preset,
        backend=config.backend,
        wall_s=summary.seconds,
        stages={name: StageStats.of(processor.timings[name]) for name in STAGES if processor.timings.get(name)},
        latency_ms={
            "p50": float(np.percentile(latency_ms, 50)),
            "p90": float(np.percentile(latency_ms, 90)),
            "p99": float(np.percentile(latency_ms, 99)),
            "max": float(latency_ms.max()),
        },
        peak_rss_mb=sampled.peak_bytes / 2**20,
        cpu_ms_per_frame={name: 1000 * seconds / summary.frames for name, seconds in cpu_s.items()} if cpu_s and summary.frames else None,
        machine=machine_description(),
        obscured_frames=summary.obscured_frames,
        io_ceiling_fps=ceiling,
        plain_pyav_fps=plain,
        frame_latency_ms=latency_ms.tolist(),
    )


def scaled_clip(source: str | Path, destination: str | Path, height: int, *, max_frames: int | None = None, crf: int = 18) -> Path:
    """Re-encode ``source`` resized to ``height`` (width keeps the aspect ratio, rounded to even),
    same frame rate, H.264 at ``crf``: the 720p/1080p benchmark inputs made from a small clip."""
    destination = Path(destination)
    with VideoReader(source) as reader:
        info = reader.info
        width = int(round(info.width * height / info.height / 2)) * 2
        writer = VideoWriter(destination, fps=info.fps, time_base=info.time_base, codec="libx264", crf=crf, preset="veryfast")
        try:
            for frame in reader:
                if max_frames is not None and frame.index >= max_frames:
                    break
                interpolation = cv2.INTER_CUBIC if height > frame.height else cv2.INTER_AREA
                writer.write(frame.with_image(cv2.resize(frame.bgr, (width, height), interpolation=interpolation)))
        except BaseException:
            writer.close(success=False)
            raise
        writer.close(success=True)
    return destination


def plot_latency(result: BenchResult, png_path: str | Path) -> Path:
    """Per-frame latency over the run, with the p50/p99 lines; needs matplotlib (the 'bench' extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on servers
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'faceanon-video[plot]'") from exc
    png_path = Path(png_path)
    fig, ax = plt.subplots(figsize=(9, 3.5), dpi=110)
    ax.plot(result.frame_latency_ms, lw=0.8, color="tab:blue", label="decoded -> anonymized")
    for key, style in (("p50", "--"), ("p99", ":")):
        ax.axhline(result.latency_ms[key], color="tab:red", ls=style, lw=1, label=f"{key} {result.latency_ms[key]:.1f} ms")
    ax.set_xlabel("frame")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{Path(result.input).name} {result.width}x{result.height}, --mode {result.mode}: {result.fps:.1f} fps")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
