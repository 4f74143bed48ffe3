"""Outputs carry nothing identifying but the pixels: tags, streams and chapters of real tagged clips
(tests/io/tagged_clips.py) checked with ffprobe after a default run and after --keep-* runs, and the
redaction report checked against the files."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from faceanon_video.cli import main
from faceanon_video.io.decode import VideoReader
from faceanon_video.io.encode import VideoWriter, from_input
from faceanon_video.io.metadata import MetadataPolicy, ScrubRecord
from faceanon_video.types import Frame
from tests.io import tagged_clips as clips

#: What muxers write on their own, the same for every file: these keys, with these values (None: any
#: value free of the sentinels, e.g. a duration).
STRUCTURAL_TAGS = {
    "major_brand": None, "minor_version": None, "compatible_brands": None, "encoder": {"Lavf"},
    "language": {"und", clips.AUDIO_LANGUAGE}, "handler_name": {"VideoHandler", "SoundHandler"},
    "vendor_id": {"[0][0][0][0]", "FFMP"}, "DURATION": None, "service_name": {"Service01"}, "service_provider": {"FFmpeg"},
}


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """suffix -> a tagged input clip (built once per module)."""
    built = {}

    def get(suffix: str) -> Path:
        if suffix not in built:
            folder = tmp_path_factory.mktemp(suffix[1:])
            built[suffix] = clips.build(folder / f"in{suffix}")
        return built[suffix]

    return get


def run(src: Path, out: Path, *options: str) -> None:
    assert main([str(src), "-o", str(out), "-q", "--overwrite", *options]) == 0


def all_tags(info: dict) -> list[tuple[str, str]]:
    tags = list(info["format"].get("tags", {}).items())
    for place in info["streams"] + info.get("programs", []):
        tags += list(place.get("tags", {}).items())
    return tags


@pytest.mark.parametrize("suffix", list(clips.CONTAINERS))
def test_default_output_carries_no_identifying_tag_stream_or_chapter(tagged, tmp_path, suffix):
    src = tagged(suffix)
    before = clips.probe(src)
    assert clips.leaks(before), "the input must carry what the output must not"
    out, report = tmp_path / f"out{suffix}", tmp_path / "report.json"
    run(src, out, "--report", str(report))
    after = clips.probe(out)
    assert clips.leaks(after) == []
    assert sorted(clips.stream_types(after)) == ["audio", "video"]
    assert after.get("chapters", []) == []
    for key, value in all_tags(after):
        assert key in STRUCTURAL_TAGS, f"{key}={value} in the output"
        assert STRUCTURAL_TAGS[key] is None or value in STRUCTURAL_TAGS[key], f"{key}={value}"
    # The report names what was removed (keys and streams, never the removed values) and digests the files.
    text = report.read_text()
    assert clips.leaks({"format": {"tags": {"report": text}}, "streams": []}) == []
    data = json.loads(text)
    assert data["input"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert data["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert data["frames"] == {"in": 6, "out": 6}
    removed_kinds = sorted(s["kind"] for s in data["metadata"]["streams_removed"])
    expected_kinds = sorted({"subtitle": "subtitles", "attachment": "attachments", "attached_pic": "cover"}.get(t, t) for t in clips.stream_types(before) if t not in ("video", "audio"))
    assert removed_kinds == expected_kinds
    removed_keys = {k.lower() for keys in data["metadata"]["tags_removed"].values() for k in keys}
    # Tags of the file and of the streams that were copied (dropped streams take their tags with them).
    copied = {"format": before["format"], "streams": [s for s, t in zip(before["streams"], clips.stream_types(before)) if t in ("video", "audio")]}
    input_keys = {k.lower() for k, _ in all_tags(copied) if k.lower() not in ("language", "duration")}
    assert input_keys - {"vendor_id"} <= removed_keys  # ffprobe adds vendor_id itself
    assert data["metadata"]["chapters_removed"] == len(before.get("chapters", []))


def test_keep_options_bring_back_exactly_what_was_asked_mp4(tagged, tmp_path):
    src, out = tagged(".mp4"), tmp_path / "out.mp4"
    run(src, out, "--keep-metadata", "location,comment", "--keep-streams", "subtitles", "--keep-streams", "data")
    info = clips.probe(out)
    tags = info["format"]["tags"]
    assert tags["location"] == tags["location-eng"] == clips.FORMAT_TAGS["location"]
    assert tags["comment"] == clips.FORMAT_TAGS["comment"]
    assert not {"title", "artist", "copyright", "description", "creation_time", "date"} & set(tags)
    # The cover is never copied: it may show a face and is not anonymized.
    assert sorted(clips.stream_types(info)) == ["audio", "data", "subtitle", "video"]
    data = next(s for s in info["streams"] if s["codec_type"] == "data")
    assert data["codec_tag_string"] == "gpmd"


def test_keep_quicktime_keys_by_short_name_mov(tagged, tmp_path):
    src, out = tagged(".mov"), tmp_path / "out.mov"
    run(src, out, "--keep-metadata", "make,ISO6709")
    tags = clips.probe(out)["format"]["tags"]
    assert tags["com.apple.quicktime.make"] == "Apple"
    assert tags["com.apple.quicktime.location.ISO6709"] == clips.FORMAT_TAGS["com.apple.quicktime.location.ISO6709"]
    assert "com.apple.quicktime.model" not in tags and "location" not in tags


def test_keep_all_and_attachments_mkv(tagged, tmp_path):
    src, out = tagged(".mkv"), tmp_path / "out.mkv"
    run(src, out, "--keep-metadata", "all", "--keep-streams", "attachments,subtitles")
    info = clips.probe(out)
    assert info["format"]["tags"]["RECORDING_LOCATION"] == clips.FORMAT_TAGS["RECORDING_LOCATION"]
    assert [c["tags"]["title"] for c in info["chapters"]] == ["Alice's house"]
    assert sorted(clips.stream_types(info)) == ["attachment", "audio", "subtitle", "video"]  # the cover still dropped
    attachment = next(s for s in info["streams"] if s["codec_type"] == "attachment")
    assert attachment["tags"]["filename"] == "alice-notes.txt"


def test_writer_policy_applies_to_every_writer(tagged, tmp_path):
    """restore and the live sinks build their VideoWriter like this: the default policy scrubs."""
    out = tmp_path / "out.mp4"
    with VideoReader(tagged(".mp4")) as reader:
        with VideoWriter(out, reader.info.fps, reader.info.time_base, **from_input(reader)) as writer:
            for item in reader.items():
                writer.write(item) if isinstance(item, Frame) else writer.write_packet(item)
    info = clips.probe(out)
    assert clips.leaks(info) == [] and sorted(clips.stream_types(info)) == ["audio", "video"]
    assert writer.scrub.chapters_removed == 0 and {s["kind"] for s in writer.scrub.removed_streams} == {"subtitles", "data", "cover"}


def test_live_recording_has_no_muxer_version_or_creation_time(tmp_path):
    from faceanon_video.live.sinks import FileSink

    for suffix in (".mp4", ".mkv"):
        sink = FileSink(tmp_path / f"live{suffix}")
        sink.open(Fraction(10))
        for i in range(3):
            sink.write(Frame(bgr=np.full((48, 64, 3), 100, np.uint8), index=i, pts=i * 9000, time_base=Fraction(1, 90000)))
        sink.close()
        info = clips.probe(tmp_path / f"live{suffix}")
        for key, value in all_tags(info):
            assert key in STRUCTURAL_TAGS and (STRUCTURAL_TAGS[key] is None or value in STRUCTURAL_TAGS[key]), f"{key}={value}"


def test_ray_task_output_is_scrubbed(tagged, tmp_path):
    """The function each Ray task runs (called here without Ray)."""
    from faceanon_video.config import RunConfig
    from faceanon_video.distributed import _process_one

    out = tmp_path / "out.mkv"
    result = _process_one(str(tagged(".mkv")), str(out), RunConfig(progress=False).to_json())
    assert "error" not in result and "metadata removed" in result["redaction"]
    assert clips.leaks(clips.probe(out)) == []


def test_existing_report_is_refused_before_any_work(tagged, tmp_path, capsys):
    report = tmp_path / "report.html"
    report.write_text("earlier")
    out = tmp_path / "out.ts"
    assert main([str(tagged(".ts")), "-o", str(out), "-q", "--report", str(report)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert report.read_text() == "earlier" and not out.exists()
    assert main([str(tagged(".ts")), "-o", str(out), "-q", "--report", str(tmp_path / "r.txt")]) == 2


def test_html_and_markdown_reports_state_the_removals(tagged, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main([str(tagged(".mp4")), "-o", str(out), "--report", str(tmp_path / "r.html"), "--report", str(tmp_path / "r.md"), "--keep-metadata", "title"]) == 0
    summary = capsys.readouterr().out
    assert "metadata removed:" in summary and "kept on request: title" in summary and "streams removed:" in summary
    for name in ("r.html", "r.md"):
        text = (tmp_path / name).read_text()
        assert "location-eng" in text and "cover picture: may show a face" in text and hashlib.sha256(out.read_bytes()).hexdigest() in text
        assert "37.7749" not in text  # keys, never the removed values


def test_policy_matches_spellings_of_a_kept_key():
    tags = {"location": "x", "location-eng": "x", "LOCATION": "x", "com.apple.quicktime.location.ISO6709": "x", "xmp": "x",
            "com.apple.quicktime.make": "x", "language": "fra", "title": "x"}
    record = ScrubRecord()
    kept = record.filter_tags(MetadataPolicy(keep_keys=("location", "make")), tags, "stream 1")
    assert sorted(kept) == ["LOCATION", "com.apple.quicktime.make", "language", "location", "location-eng"]
    assert record.removed_tags == {"stream 1": ["com.apple.quicktime.location.ISO6709", "title", "xmp"]}
    assert ScrubRecord().filter_tags(MetadataPolicy(), tags, "format") == {}  # not even language at file level
    assert ScrubRecord().filter_tags(MetadataPolicy(keep_keys=("all",)), tags, "format") == tags


def test_keep_data_streams_on_a_mov_with_a_timecode_track(tmp_path):
    """Camera MOVs carry a QuickTime timecode track (tmcd): FFmpeg's MOV muxer cannot take it as a
    copied data stream and failed the run at its end ("writing ... failed: Invalid argument"); it is
    dropped (and said so) and the run succeeds."""
    import shutil
    import subprocess

    import av

    from tests.conftest import CARPHONE

    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg command to write a timecode track")
    source = tmp_path / "camera.mov"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(CARPHONE), "-frames:v", "10", "-c", "copy", "-timecode", "01:00:00:00", str(source)], check=True)
    with av.open(str(source)) as container:
        assert [s.type for s in container.streams] == ["video", "data"]
    assert main([str(source), "-o", str(tmp_path / "out.mov"), "--keep-streams", "data", "-q"]) == 0
    with av.open(str(tmp_path / "out.mov")) as container:
        assert [s.type for s in container.streams] == ["video"]
        assert container.streams.video[0].frames == 10
