"""``--vault`` in segment-parallel runs (``faceanon_video.segments``): each segment writes a vault part of
its own frames, the driver merges them into one vault bound to the joined video, which restores
exactly like a single run's; nothing at the destination when a segment fails; blacked-out segments
are listed in the vault as missing."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from faceanon_video import segments
from faceanon_video.cli import main
from faceanon_video.config import RunConfig
from faceanon_video.errors import FaceanonError
from faceanon_video.io.decode import VideoReader, video_sha256
from faceanon_video.keys import load_key
from faceanon_video.pipeline import process_file
from faceanon_video.track.tracks_io import read_tracks
from faceanon_video.types import Detections, Frame
from faceanon_video.vault import VaultReader, VaultWriteError, VaultWriter
from tests.conftest import CARPHONE
from tests.test_segments_people import _with_keyframes

FRAMES = 120  # 4.8 s at 25 fps, a keyframe every 0.6 s: cut into 4 segments of 30 frames (MAX_SEGMENT_S patched)


@pytest.fixture
def short_segments(monkeypatch):
    monkeypatch.setattr(segments, "MAX_SEGMENT_S", 1.2)
    monkeypatch.setattr(segments, "OVERLAP_S", 0.5)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("segments_vault")
    key = tmp / "key"
    key.write_bytes(b"k" * 32)
    return _with_keyframes(CARPHONE, tmp / "carphone-gop.mp4"), key


def _config(tmp: Path, key: Path, **extra) -> RunConfig:
    return RunConfig(jobs=2, progress=False, vault=str(tmp / "out.favault"), key_file=str(key), vault_quality="exact", **extra)


def _restore(video: Path, vault: Path, key: Path, out: Path) -> None:
    assert main(["restore", str(video), "--vault", str(vault), "--key-file", str(key), "-o", str(out), "--crf", "0", "-q"]) == 0


def test_segmented_exact_vault_restores_bit_for_bit(clip, tmp_path, short_segments):
    source, key = clip
    plan = segments.plan_segments(source, 2)
    assert [(s.start_index, s.end_index) for s in plan.segments] == [(0, 30), (30, 60), (60, 90), (90, 120)]
    video = tmp_path / "out.mp4"
    summary = process_file(source, video, _config(tmp_path, key, save_tracks=str(tmp_path / "tracks.jsonl")))
    assert summary.frames == FRAMES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.favault", "out.mp4", "tracks.jsonl"]  # no parts or work folder left
    vault = tmp_path / "out.favault"
    with VaultReader(vault, load_key(key)) as stored, VideoReader(source) as reader:
        assert stored.frames == FRAMES and stored.info["video_sha256"] == video_sha256(video) and stored.missing == []
        before = list(reader)
        records = list(stored)
    # Every segment contributed records: the merged stream restarts at each part's keyframe.
    assert all(any(s.start_index <= r.frame_index < s.end_index for r in records) for s in plan.segments)
    # Track ids are the joined video's (the track file's), not each segment's own.
    tracks = {r.frame_index: sorted(r.faces.track_id.tolist()) for r in read_tracks(tmp_path / "tracks.jsonl") if len(r.faces)}
    assert {r.frame_index: sorted(f.track_id for f in r.faces) for r in records} == tracks
    faces = [(r.frame_index, f) for r in records for f in r.faces]
    assert len(faces) >= 100
    for index, face in faces:
        assert np.array_equal(face.bgr, before[index].crop_bgr(*face.xyxy))
    restored = tmp_path / "restored.mkv"
    _restore(video, vault, key, restored)
    with VideoReader(restored) as back:
        after = list(back)
    assert len(after) == FRAMES
    for index, face in faces:
        assert np.array_equal(after[index].crop_bgr(*face.xyxy), before[index].crop_bgr(*face.xyxy))


def test_failed_segment_leaves_no_vault_and_resume_reuses_the_parts(clip, tmp_path, short_segments, monkeypatch):
    source, key = clip
    config = _config(tmp_path, key)
    monkeypatch.setenv("FACEANON_FAULTS", "segment:frames=70-70")  # segment 2 (frames 60..89)
    with pytest.raises(FaceanonError, match="segment 2 failed twice"):
        process_file(source, tmp_path / "out.mp4", config)
    work = next(tmp_path.glob(".out.segments-*"))
    assert [p.name for p in tmp_path.iterdir() if p != work] == []  # no video, vault or temporary file
    assert sorted(p.name for p in work.glob("*.favault")) == ["segment-0000.favault", "segment-0001.favault", "segment-0003.favault"]
    monkeypatch.delenv("FACEANON_FAULTS")
    process_file(source, tmp_path / "out.mp4", RunConfig(**{**vars(config), "resume": True}))
    _restore(tmp_path / "out.mp4", tmp_path / "out.favault", key, tmp_path / "restored.mkv")
    assert not work.exists()


def test_blacked_out_segment_is_listed_as_missing_in_the_vault(clip, tmp_path, short_segments, monkeypatch, caplog):
    source, key = clip
    monkeypatch.setenv("FACEANON_FAULTS", "segment:frames=70-70")  # segment 2 (frames 60..89), on both attempts
    process_file(source, tmp_path / "out.mp4", _config(tmp_path, key, on_segment_failure="black"))
    with VaultReader(tmp_path / "out.favault", load_key(key)) as stored:
        assert stored.frames == FRAMES and stored.missing == [(60, 89)]
        indices = stored.frame_indices
    assert not any(60 <= i <= 89 for i in indices) and any(i < 60 for i in indices) and any(i > 89 for i in indices)
    with caplog.at_level(logging.WARNING, logger="faceanon_video.commands.restore"):
        _restore(tmp_path / "out.mp4", tmp_path / "out.favault", key, tmp_path / "restored.mkv")
    assert any("frames 60-89 were blacked out" in r.getMessage() for r in caplog.records)
    with VideoReader(tmp_path / "restored.mkv") as back:
        assert sum(1 for _ in back) == FRAMES


def test_plan_render_in_segments_writes_one_vault(clip, tmp_path, short_segments):
    """Phase 2 (``--plan``): the render tasks write the parts; ids are the plan's."""
    source, key = clip
    plan = tmp_path / "plan.json"
    process_file(source, plan, RunConfig(jobs=2, progress=False, save_plan=str(plan)))
    video = tmp_path / "out.mp4"
    process_file(source, video, _config(tmp_path, key, plan=str(plan), save_tracks=str(tmp_path / "tracks.jsonl")))
    tracks = {r.frame_index: sorted(r.faces.track_id.tolist()) for r in read_tracks(tmp_path / "tracks.jsonl") if len(r.faces)}
    with VaultReader(tmp_path / "out.favault", load_key(key)) as stored, VideoReader(source) as reader:
        before = list(reader)
        records = list(stored)
        assert stored.frames == FRAMES and stored.info["video_sha256"] == video_sha256(video)
    assert {r.frame_index: sorted(f.track_id for f in r.faces) for r in records} == tracks and len(records) >= 100
    assert all(np.array_equal(f.bgr, before[r.frame_index].crop_bgr(*f.xyxy)) for r in records for f in r.faces)


def test_append_part_reseals_renumbers_and_decodes_across_the_parts(tmp_path):
    """Unit: two parts (each its own H.264 stream with B-frames) merged with a missing span between
    them; the merged vault gives every face back bit for bit, track ids mapped, frames counted."""
    key = b"k" * 32
    rng = np.random.default_rng(0)
    i420 = [rng.integers(0, 256, (96, 64), np.uint8) for _ in range(30)]  # 64x64 frames
    faces = Detections(xyxy=np.array([[8.0, 8.0, 40.0, 48.0]]), score=np.array([0.9]), track_id=np.array([1]))
    parts = []
    for number, frames in enumerate((range(12), range(12, 20), range(20, 30))):
        parts.append(tmp_path / f"part{number}.favault")
        writer = VaultWriter(parts[-1], key, mask_scale=1.0, quality="exact")
        for index in frames:
            writer.write(Frame(i420=i420[index], index=index, pts=index, time_base=Fraction(1, 25)), faces)
        writer.close()
    merged = VaultWriter(tmp_path / "merged.favault", key, mask_scale=1.0, quality="exact")
    with VaultReader(parts[0], key) as part:
        merged.append_part(part, {1: 5})
    merged.add_missing(12, 19)
    with VaultReader(parts[2], key) as part:
        merged.append_part(part, {1: 7})
        with pytest.raises(VaultWriteError, match="comes after"):
            merged.append_part(part, {})  # its frames again: out of order
    merged.close()
    with VaultReader(tmp_path / "merged.favault", key) as stored:
        assert stored.frames == 30 and stored.missing == [(12, 19)] and stored.info["first_pts_s"] == 0.0
        records = list(stored)
    assert [r.frame_index for r in records] == [*range(12), *range(20, 30)]
    assert [r.faces[0].track_id for r in records] == [5] * 12 + [7] * 10
    for record in records:
        assert np.array_equal(record.faces[0].bgr, Frame(i420=i420[record.frame_index]).crop_bgr(8, 8, 40, 48))
    with VaultReader(parts[1], key) as part:
        other = VaultWriter(tmp_path / "other.favault", key, mask_scale=1.0, quality="high")
        with pytest.raises(VaultWriteError, match="other settings"):
            other.append_part(part, {})  # an exact part in a high vault
        other.close(success=False)
    assert not (tmp_path / "other.favault").exists()
