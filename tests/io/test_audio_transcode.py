"""Audio survives every output container: copied when the container holds the codec, re-encoded
(right sample rate, format and frame size for the target codec) when it does not, e.g. AAC into .webm."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction

import av
import numpy as np
import pytest

from faceanon_video.cli import main
from tests.io.test_decode_encode import copy_through

RATE = 44100  # not an Opus rate: the re-encode must resample
TONE_HZ = 440.0
SECONDS = 1.5
FPS = 10


def make_clip(path, audio_codec: str) -> None:
    """A 64x48, 1.5 s H.264 clip with a 440 Hz stereo tone in ``audio_codec``, written with PyAV."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream(audio_codec, rate=RATE)
        audio.codec_context.layout = "stereo"
        formats = [f.name for f in av.Codec(audio.codec_context.name, "w").audio_formats]
        audio.codec_context.format = "fltp" if "fltp" in formats else formats[0]
        frame_size = 1152 if "mp3" in audio_codec else 1024
        t = np.arange(int(RATE * SECONDS)) / RATE
        tone = (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
        for start in range(0, len(tone), frame_size):
            chunk = np.stack([tone[start : start + frame_size]] * 2)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
            resampler = av.AudioResampler(format=audio.codec_context.format, layout="stereo", rate=RATE)
            for out in resampler.resample(frame):
                container.mux(audio.encode(out))
        for i in range(int(SECONDS * FPS)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i % 255, np.uint8), format="bgr24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode())
        container.mux(audio.encode())


def decoded_audio(path) -> tuple[str, int, np.ndarray]:
    """(codec, sample rate, mono float samples) of the first audio stream, fully decoded."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.codec_context.sample_rate)
        chunks = [r.to_ndarray().reshape(-1) for f in container.decode(stream) for r in resampler.resample(f)]
        chunks += [r.to_ndarray().reshape(-1) for r in resampler.resample(None)]
        return stream.codec_context.name, stream.codec_context.sample_rate, np.concatenate(chunks)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def ffprobe_audio(path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=codec_name,sample_rate,channels", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)["streams"]


@pytest.mark.parametrize("source_codec", ["aac", "libmp3lame", "pcm_s16le"])
@pytest.mark.parametrize("suffix", [".webm", ".mkv", ".mov", ".avi", ".mp4"])
def test_audio_is_kept_in_every_container_with_its_duration_and_tone(tmp_path, source_codec, suffix):
    src = tmp_path / "in.mkv"  # Matroska holds all three source codecs
    make_clip(src, source_codec)
    out = tmp_path / f"out{suffix}"
    copy_through(src, out)
    streams = ffprobe_audio(out)
    assert len(streams) == 1 and int(streams[0]["channels"]) == 2
    if suffix == ".webm":
        assert streams[0]["codec_name"] == "opus" and int(streams[0]["sample_rate"]) == 48000
    _, src_rate, src_samples = decoded_audio(src)
    _, out_rate, out_samples = decoded_audio(out)
    # About the same length (codec priming/padding: a few tens of ms at most) and the same tone.
    assert abs(len(out_samples) / out_rate - len(src_samples) / src_rate) < 0.08, (len(out_samples) / out_rate, len(src_samples) / src_rate)
    assert abs(dominant_hz(out_samples, out_rate) - TONE_HZ) < 5
    def rms(samples, rate):
        return float(np.sqrt(np.mean(samples[rate // 4 : -rate // 4] ** 2)))  # away from the codecs' edges

    assert 0.9 < rms(out_samples, out_rate) / rms(src_samples, src_rate) < 1.1  # the tone, not silence
    assert set(tmp_path.iterdir()) == {src, out}  # no temp file left


def test_cli_writes_webm_from_an_mp4_with_aac_audio(tmp_path):
    src = tmp_path / "in.mp4"
    make_clip(src, "aac")
    out = tmp_path / "out.webm"
    assert main([str(src), "-o", str(out), "-q"]) == 0
    assert [s["codec_name"] for s in ffprobe_audio(out)] == ["opus"]
    _, rate, samples = decoded_audio(out)
    assert abs(len(samples) / rate - SECONDS) < 0.08


def test_video_is_stream_0_even_when_the_input_has_audio_first(tmp_path):
    """Tools that take "the first stream" as the video (many do) need it first in the output,
    whatever order the input had."""
    src = tmp_path / "in.mp4"
    make_clip(src, "aac")
    audio_first = tmp_path / "audio_first.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-map", "0:a", "-map", "0:v", "-c", "copy", str(audio_first)], check=True)
    assert [s.type for s in av.open(str(audio_first)).streams] == ["audio", "video"]
    for suffix in (".mp4", ".mkv"):
        out = tmp_path / f"out{suffix}"
        assert main([str(audio_first), "-o", str(out), "-q"]) == 0
        with av.open(str(out)) as container:
            assert [s.type for s in container.streams] == ["video", "audio"]
            assert sum(1 for _ in container.decode(video=0)) == int(SECONDS * FPS)
        _, rate, samples = decoded_audio(out)
        assert abs(len(samples) / rate - SECONDS) < 0.08
