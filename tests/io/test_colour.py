"""The input's colour description (range, matrix, primaries, transfer) reaches every output: the
anonymized video and the restored one. Inputs are tagged with the ffmpeg CLI; outputs read with ffprobe."""

from __future__ import annotations

import json
import subprocess

import pytest

from faceanon_video.cli import main
from tests.conftest import CARPHONE, DATA

BT709_TV = {"color_range": "tv", "color_space": "bt709", "color_primaries": "bt709", "color_transfer": "bt709"}


def tagged_clip(path, pix_fmt: str, color_range: str, frames: int = 10):
    """The first ``frames`` frames of the carphone clip (one face), tagged BT.709 in ``color_range``."""
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(CARPHONE), "-frames:v", str(frames), "-an", "-pix_fmt", pix_fmt, "-c:v", "libx264",
         "-color_range", color_range, "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", str(path)],
        check=True,
    )
    assert colour(path) == {**BT709_TV, "color_range": color_range}
    return path


def colour(path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=color_range,color_space,color_primaries,color_transfer", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)["streams"][0]


def test_bt709_tags_survive_anonymization_and_restore(tmp_path):
    source = tagged_clip(tmp_path / "in.mp4", "yuv420p", "tv")
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    out, vault, restored = tmp_path / "out.mp4", tmp_path / "faces.vault", tmp_path / "restored.mp4"
    assert main([str(source), "-o", str(out), "-q", "--vault", str(vault), "--key-file", str(key)]) == 0
    assert colour(out) == BT709_TV
    assert main(["restore", str(out), "--vault", str(vault), "--key-file", str(key), "-o", str(restored), "-q"]) == 0
    assert colour(restored) == BT709_TV


def test_full_range_input_is_tagged_as_what_the_conversion_wrote(tmp_path):
    # yuvj420p is converted through BGR, and OpenCV's BGR -> I420 writes BT.601 in limited range:
    # the primaries and transfer are the input's, the matrix and range those of the pixels written.
    source = tagged_clip(tmp_path / "in.mp4", "yuvj420p", "pc")
    out = tmp_path / "out.mp4"
    assert main([str(source), "-o", str(out), "-q"]) == 0
    assert colour(out) == {"color_range": "tv", "color_space": "smpte170m", "color_primaries": "bt709", "color_transfer": "bt709"}


@pytest.mark.parametrize("option", ["--spare", "--only"])
def test_report_counts_reference_photos_without_naming_them(tmp_path, option):
    photo = tmp_path / "alice_smith.png"
    photo.write_bytes((DATA / "images" / "identities" / "lin-manuel-miranda.png").read_bytes())
    source = tagged_clip(tmp_path / "in.mp4", "yuv420p", "tv", frames=3)
    report = tmp_path / "report.json"
    assert main([str(source), "-o", str(tmp_path / "out.mp4"), "-q", option, str(photo), str(photo), "--report", str(report)]) == 0
    text = report.read_text()
    assert "alice" not in text.lower()
    assert json.loads(text)["settings"][option[2:]] == "2 reference photos (one per person; a photo or a folder of photos)"
