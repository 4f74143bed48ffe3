"""Tiny clips carrying everything a phone, a dashcam or an action camera puts next to the pixels:
GPS in each spelling, owner and device tags, creation time, chapter titles, a telemetry (GPMF-like)
data stream, an SRT subtitle track and a cover picture of a face. Built with the ffmpeg CLI (the
tags) and PyAV (the telemetry stream, which the CLI cannot create from raw bytes).

Every identifying value contains one of ``SENTINELS``, so a test can assert that none of them is
anywhere in an output's ffprobe JSON, whatever key a muxer files it under.
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2

from tests.conftest import DATA

GPS = "+37.7749-122.4194"
SENTINELS = ("37.7749", "Alice", "iPhone", "SN-4711", "2024-05-01", "/home/alice", "Secret")

#: Container -> what it can hold: (data stream, subtitle codec, cover picture, chapters). FFmpeg 5.1's
#: MP4/MOV muxer drops the cover when chapters or QuickTime keys (-movflags use_metadata_tags) are
#: written, so the MP4 carries the cover and the telemetry, the MOV the QuickTime keys and chapters.
CONTAINERS = {
    ".mp4": (True, "mov_text", True, False),
    ".mov": (False, "mov_text", False, True),
    ".mkv": (False, "srt", True, True),
    ".webm": (False, "webvtt", False, True),
    ".ts": (True, None, False, False),
    ".avi": (False, None, False, False),
}

#: File-level tags, in the spellings each muxer knows (QuickTime keys need -movflags use_metadata_tags).
FORMAT_TAGS = {
    "location": f"{GPS}/",
    "location-eng": f"{GPS}/",
    "com.apple.quicktime.location.ISO6709": f"{GPS}+010.000/",
    "com.apple.quicktime.make": "Apple",
    "com.apple.quicktime.model": "iPhone 15 Pro",
    "com.apple.quicktime.software": "17.4 /home/alice/bin",
    "com.apple.quicktime.author": "Alice Smith",
    "serial_number": "SN-4711",
    "RECORDING_LOCATION": f"{GPS}/",
    "xmp": f"<x:xmpmeta><exif:GPSLatitude>37.7749</exif:GPSLatitude><dc:creator>Alice</dc:creator></x:xmpmeta>",
    "comment": "shot by Alice Smith",
    "title": "Alice at home",
    "artist": "Alice Smith",
    "copyright": "Alice Smith 2024-05-01",
    "description": "Secret meeting",
    "creation_time": "2024-05-01T10:00:00Z",
    "date": "2024-05-01",
    "service_provider": "Alice Smith",
    "service_name": "Alice iPhone",
}
AUDIO_TAGS = {"language": "fra", "title": "Alice voice"}
AUDIO_LANGUAGE = "fra"


def _face_cover(path: Path) -> Path:
    """A 256x256 JPEG of the astronaut photo: one large face, as a phone's cover frame would show."""
    image = cv2.resize(cv2.imread(str(DATA / "images" / "astronaut.png")), (256, 256), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), image)
    return path


def _telemetry(path: Path) -> Path:
    """An MP4/TS with one GPMF-like data stream ('gpmd' in MP4, as GoPro cameras write it)."""
    with av.open(str(path), "w") as container:
        data = container.add_data_stream(codec_name="bin_data")
        if path.suffix == ".mp4":
            data.codec_tag = "gpmd"
        for i in range(5):
            packet = av.Packet(b"DEVC GPS5 " + GPS.encode() + b" SN-4711")
            packet.stream = data
            packet.pts = packet.dts = i * 9000
            packet.time_base = Fraction(1, 90000)
            container.mux(packet)
    return path


def build(path: Path, frames: int = 6) -> Path:
    """A ``frames``-frame 64x48 clip (10 fps) with audio and everything ``CONTAINERS`` says ``path``'s
    container can hold."""
    has_data, subtitle_codec, has_cover, has_chapters = CONTAINERS[path.suffix]
    work = path.parent
    srt = work / "sub.srt"
    srt.write_text(f"1\n00:00:00,000 --> 00:00:00,500\nFilmed by Alice Smith at {GPS}\n")
    chapters = work / "chapters.txt"
    chapters.write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=300\ntitle=Alice's house\n")
    webm = path.suffix == ".webm"
    duration = frames / 10
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={duration}",
           "-f", "lavfi", "-i", f"sine=duration={duration}", "-i", str(srt), "-i", str(chapters)]
    maps = ["-map", "0:v", "-map", "1:a", "-map_chapters", "3" if has_chapters else "-1"]
    codecs = ["-pix_fmt:v:0", "yuv420p", "-c:v:0", "libvpx-vp9" if webm else "libx264", "-c:a", "libopus" if webm else ("mp3" if path.suffix == ".avi" else "aac")]
    inputs = 4
    if subtitle_codec:
        maps += ["-map", "2:s"]
        codecs += ["-c:s", subtitle_codec]
    if has_data:
        cmd += ["-i", str(_telemetry(work / f"telemetry{path.suffix}"))]
        maps += ["-map", f"{inputs}:d"]
        codecs += ["-c:d", "copy"]
        inputs += 1
    if has_cover:
        cover = _face_cover(work / "cover.jpg")
        if path.suffix == ".mkv":
            # Matroska holds pictures as attachments (read back as attached-picture streams) and other files too.
            notes = work / "notes.txt"
            notes.write_text(f"Alice Smith, {GPS}\n")
            codecs += ["-attach", str(cover), "-metadata:s:t:0", "mimetype=image/jpeg", "-metadata:s:t:0", "filename=alice.jpg",
                       "-attach", str(notes), "-metadata:s:t:1", "mimetype=text/plain", "-metadata:s:t:1", "filename=alice-notes.txt"]
        else:
            cmd += ["-i", str(cover)]
            maps += ["-map", f"{inputs}:v"]
            codecs += ["-c:v:1", "copy", "-disposition:v:1", "attached_pic"]
            inputs += 1
    tags = []
    for key, value in FORMAT_TAGS.items():
        tags += ["-metadata", f"{key}={value}"]
    for key, value in AUDIO_TAGS.items():
        tags += ["-metadata:s:a:0", f"{key}={value}"]
    tags += ["-metadata:s:v:0", "title=Alice cam", "-metadata:s:v:0", "handler_name=Alice iPhone camera"]
    if subtitle_codec:
        tags += ["-metadata:s:s:0", "title=Alice GPS track"]
    movflags = ["-movflags", "use_metadata_tags"] if path.suffix == ".mov" else []
    subprocess.run(cmd + maps + codecs + tags + movflags + [str(path)], check=True)
    return path


def probe(path: Path) -> dict:
    """ffprobe's view of a file: format, streams, chapters and (MPEG-TS) programs with all their tags."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-show_chapters", "-show_programs", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def leaks(info: dict) -> list[str]:
    """Every sentinel found anywhere in the tags, chapter titles or stream names of ``info``."""
    text = json.dumps({"format": info.get("format", {}).get("tags", {}), "streams": [s.get("tags", {}) for s in info["streams"]],
                       "chapters": info.get("chapters", []), "programs": [p.get("tags", {}) for p in info.get("programs", [])]})
    return [s for s in SENTINELS if s.lower() in text.lower()]


def stream_types(info: dict) -> list[str]:
    """'video', 'audio', 'subtitle', 'data', 'attachment', or 'attached_pic' per stream."""
    return ["attached_pic" if s.get("disposition", {}).get("attached_pic") else s["codec_type"] for s in info["streams"]]
