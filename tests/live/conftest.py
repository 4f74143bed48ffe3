"""Live tests: real FFmpeg peers on 127.0.0.1, a test clip whose frames carry their own number.

Tests that need the ffmpeg program skip with the reason when it is missing (CI: ``apt-get install -y ffmpeg``).

The clip (``barcode_clip``) is the Hamilton test clip with its frame number drawn as a 12-block barcode in
the bottom-left corner. From any output frame we read which source frame it was, so we can compare its
faces against the same faces in the source: a face that reached an output raw still shows the source's
fine detail (edges of eyes, mouth, hair) at the same places.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
CLIP_START, CLIP_FRAMES = 30, 90  # 3 s at 30 fps from where the Hamilton clip shows two to six faces
BLOCK_PX = 16
BITS = 10
#: A face has leaked when its fine detail correlates with the source's this much (``detail_match``).
#: Measured on the Hamilton clip after H.264 (crf 20, ultrafast and veryfast): blurred faces <= 0.39,
#: raw faces 0.87 median. (A ratio of detail amounts does not work: x264's blocking on a blurred face
#: adds "detail" that is not the face's.)
LEAK_MATCH = 0.5
#: Faces with less fine detail than this (mean grey levels) are not checked: dim or out-of-focus faces whose
#: detail H.264 erases even when they are sent raw. Above it, raw faces match at >= 0.9 after re-encoding.
MIN_FACE_DETAIL = 1.5


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg") or ("/usr/bin/ffmpeg" if Path("/usr/bin/ffmpeg").exists() else None)


needs_ffmpeg = pytest.mark.skipif(ffmpeg_path() is None, reason="needs the ffmpeg program as a real peer (apt-get install -y ffmpeg)")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# 1. Frame numbers as pixels.


def draw_barcode(bgr: np.ndarray, number: int) -> None:
    y0 = bgr.shape[0] - BLOCK_PX
    bits = [1, 0] + [(number >> i) & 1 for i in range(BITS)]  # two marker blocks, then the number
    for i, bit in enumerate(bits):
        bgr[y0:, i * BLOCK_PX : (i + 1) * BLOCK_PX] = 255 if bit else 0


def read_barcode(bgr: np.ndarray) -> int | None:
    y = bgr.shape[0] - BLOCK_PX // 2
    c = BLOCK_PX // 2
    levels = [bgr[y - 4 : y + 4, i * BLOCK_PX + c - 4 : i * BLOCK_PX + c + 4].mean() for i in range(BITS + 2)]
    if levels[0] < 200 or levels[1] > 55 or any(55 < v < 200 for v in levels):
        return None
    return sum(1 << i for i, v in enumerate(levels[2:]) if v >= 200)


def is_black(bgr: np.ndarray) -> bool:
    return float(np.percentile(bgr, 99)) <= 12


def fine_detail(bgr: np.ndarray) -> np.ndarray:
    """What a blur removes and re-encoding keeps: image - Gaussian(1.5 px), in grey levels."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return gray - cv2.GaussianBlur(gray, (0, 0), 1.5)


def detail_match(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two fine-detail crops: ~1 for the same face, ~0 once it is blurred."""
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-6))


def decode_frames(path: str | Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@dataclass
class Clip:
    """The barcode clip and, per source frame, its clear faces: (slices of the face centre, its fine detail)."""

    path: Path
    faces: dict[int, list[tuple[tuple[slice, slice], np.ndarray]]]

    def check(self, frames: list[np.ndarray]) -> dict[str, int]:
        """Counts black frames, numbered frames and faces checked; asserts every face checked is anonymized."""
        counts, leaks = self.inspect(frames)
        assert not leaks, "\n".join(leaks)
        return counts

    def inspect(self, frames: list[np.ndarray]) -> tuple[dict[str, int], list[str]]:
        """(counts, one line per face that shows the source's detail)."""
        counts = {"black": 0, "numbered": 0, "unnumbered": 0, "faces": 0}
        leaks = []
        for i, bgr in enumerate(frames):
            if is_black(bgr):
                counts["black"] += 1
                continue
            number = read_barcode(bgr)
            if number is None or number not in self.faces:
                counts["unnumbered"] += 1
                continue
            counts["numbered"] += 1
            for slices, source_detail in self.faces[number]:
                match = detail_match(fine_detail(bgr[slices]), source_detail)
                if match >= LEAK_MATCH:
                    leaks.append(f"output frame {i} = source frame {number}: face at {slices} shows the source's detail (match {match:.2f})")
                counts["faces"] += 1
        return counts, leaks


@pytest.fixture(scope="session")
def barcode_clip(tmp_path_factory) -> Clip:
    from faceanon_video.detect import build_detector
    from faceanon_video.io.decode import VideoReader

    path = tmp_path_factory.mktemp("live") / "barcode.ts"
    with VideoReader(DATA / "short_hamilton_clip.mp4") as reader, av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = reader.info.width, reader.info.height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "18"}
        stream.codec_context.gop_size = 10  # a restarted publisher is decodable within 1/3 s
        for frame in reader:
            number = frame.index - CLIP_START
            if number < 0:
                continue
            if number >= CLIP_FRAMES:
                break
            bgr = frame.bgr.copy()
            draw_barcode(bgr, number)
            av_frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
            av_frame.pts, av_frame.time_base = number, Fraction(1, 30)
            out.mux(stream.encode(av_frame))
        out.mux(stream.encode())
    # Faces of the clip as decoded (the reference the outputs are compared with).
    detector = build_detector("yunet", threshold=0.8)
    faces: dict[int, list] = {}
    for number, bgr in enumerate(decode_frames(path)):
        assert read_barcode(bgr) == number
        found = []
        faces_found = detector.detect(bgr)
        for (x0, y0, x1, y1), width in zip(faces_found.xyxy.astype(int), faces_found.widths):
            if width < 40 or y1 >= bgr.shape[0] - BLOCK_PX:
                continue
            cx, cy, hw, hh = (x0 + x1) // 2, (y0 + y1) // 2, (x1 - x0) // 4, (y1 - y0) // 4
            slices = (slice(cy - hh, cy + hh), slice(cx - hw, cx + hw))
            face_detail = fine_detail(bgr[slices])
            if np.abs(face_detail).mean() >= MIN_FACE_DETAIL:
                found.append((slices, face_detail))
        faces[number] = found
    assert sum(len(v) for v in faces.values()) > 30
    return Clip(path=path, faces=faces)


# 2. FFmpeg peers.


class Peer:
    """An ffmpeg process; ``stop()`` lets it finalise its output, ``kill()`` does not."""

    def __init__(self, args: list[str]) -> None:
        self.args = [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
        self.process: subprocess.Popen | None = None

    def start(self) -> Peer:
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def peers():
    """Starts ffmpeg peers and makes sure none outlives the test."""
    started: list[Peer] = []

    def start(*args: str) -> Peer:
        peer = Peer(list(args)).start()
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.kill()


def udp_publisher_args(clip: Path, port: int) -> list[str]:
    return ["-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]


def wait_for(predicate, timeout_s: float, step_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
