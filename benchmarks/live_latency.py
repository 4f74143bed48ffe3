"""Live latency and throughput: a 720p30 stream in over UDP, blurred, recorded to fragmented MP4.

    python benchmarks/live_latency.py [--seconds 20] [--size 1280x720] [--preset ultrafast] [--json out.json]

1. FFmpeg scales the Hamilton test clip to WIDTHxHEIGHT at 30 fps with a keyframe every second, once,
   into a temporary MPEG-TS file, and then publishes it in real time (``-re -c copy``) to
   udp://127.0.0.1:PORT. Copying keeps the publisher's own CPU use near zero, so the two cores measure
   our pipeline rather than a camera's encoder.
2. ``LiveSource`` -> ``LiveRunner`` (detect with the deadline, track, blur) -> ``FileSink`` (x264,
   zerolatency) runs for ``--seconds``.
3. Reports, after a warm-up: latency from capture (decoded frame) to written (encoded and muxed) p50/p95/max,
   processed and captured fps, frames dropped, frames obscured, CPU time used, and the machine's load.

Needs the ffmpeg program (apt-get install -y ffmpeg).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from faceanon_video.config import RunConfig
from faceanon_video.live.runner import LiveRunner, latency_stats_ms
from faceanon_video.live.sinks import FileSink
from faceanon_video.live.sources import LiveSource
from faceanon_video.memory import keep_freed_memory

HAMILTON = Path(__file__).resolve().parents[1] / "tests" / "data" / "short_hamilton_clip.mp4"
WARMUP_S = 3.0  # model warm-up and the first reconnect-free seconds are not what a long run sees


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_source(ffmpeg: str, size: str, fps: int, folder: Path) -> Path:
    width, height = size.split("x")
    path = folder / f"hamilton_{size}_{fps}.ts"
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(HAMILTON), "-an", "-vf", f"scale={width}:{height},fps={fps}",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", str(fps), "-f", "mpegts", str(path)],
        check=True,
    )  # fmt: skip
    return path


def main() -> int:
    keep_freed_memory()  # as the faceanon-video command does (faceanon_video.memory)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--mode", default="blur")
    parser.add_argument("--preset", default="ultrafast", help="x264 preset of the recording")
    parser.add_argument("--min-face", type=float, default=24, help="smallest face width to find (px); larger is faster")
    parser.add_argument("--detect-every", type=int, default=1, help="full-frame detection every N frames, re-detection around tracks between")
    parser.add_argument("--deadline-ms", type=float, default=200)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("needs the ffmpeg program (apt-get install -y ffmpeg)")
    with tempfile.TemporaryDirectory() as tmp:
        # 1. The source.
        clip = prepare_source(ffmpeg, args.size, args.fps, Path(tmp))
        port = free_udp_port()
        publisher = subprocess.Popen([ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"])
        try:
            # 2. The live run.
            config = RunConfig(
                mode=args.mode, preset=args.preset, min_face_px=args.min_face, detect_every=args.detect_every,
                deadline_ms=args.deadline_ms, duration_s=args.seconds + WARMUP_S,
            )  # fmt: skip
            sink = FileSink(Path(tmp) / "live.mp4", preset=args.preset)
            runner = LiveRunner(LiveSource(f"udp://127.0.0.1:{port}"), [sink], config)
            load_before = os.getloadavg()
            cpu_before = resource.getrusage(resource.RUSAGE_SELF)
            summary = runner.run()
            cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            publisher.kill()
    # 3. Report (latencies after the warm-up).
    latencies = list(runner.workers[0].latencies_s())
    skip = min(len(latencies) // 4, round(WARMUP_S * summary.fps))
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    result = {
        "input": f"{args.size}@{args.fps} over UDP (MPEG-TS, H.264)",
        "mode": args.mode,
        "preset": args.preset,
        "min_face_px": args.min_face,
        "detect_every": args.detect_every,
        "seconds": round(summary.seconds, 1),
        "latency_ms_after_warmup": latency_stats_ms(latencies[skip:]),
        "latency_ms_all": summary.latency_ms[sink.name],
        # No backlog: the median latency of the last third of the run is that of the first third.
        "latency_p50_ms_first_last_third": [round(float(np.median(part)) * 1000, 1) for part in (latencies[skip:][: len(latencies[skip:]) // 3], latencies[-(len(latencies[skip:]) // 3) :])] if len(latencies) - skip >= 3 else None,
        "fps_processed": round(summary.fps, 1),
        "fps_captured": round(summary.frames_captured / summary.seconds, 1),
        "frames_dropped": summary.frames_dropped,
        "obscured_deadline": summary.obscured_deadline,
        "obscured_error": summary.obscured_error,
        "filler_frames": summary.filler_frames,
        "stage_ms_mean": {k: round(float(np.mean(v)) * 1000, 1) for k, v in runner.processor.timings.items() if v},
        "cpu_cores_used": round(cpu_s / summary.seconds, 2),
        # Less dependent on what else runs on the machine than the wall-clock numbers.
        "cpu_ms_per_processed_frame": round(cpu_s * 1000 / max(1, summary.frames_processed), 1),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
