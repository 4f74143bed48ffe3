"""What the person layer's embeddings cost: SFace runs off the frame-order thread with the same
result, and no SFace run for a face that would be dropped anyway."""

from __future__ import annotations

import dataclasses

import numpy as np

from faceanon_video.people.embed import MIN_LINK_WEIGHT, FaceEmbedder, TrackEmbeddings
from faceanon_video.types import Frame

from .conftest import cut_clip


class CountingEmbedder(FaceEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.features = 0

    def feature(self, aligned_bgr):
        self.features += 1
        return super().feature(aligned_bgr)


def _embed(clip, tracked, embedder, background):
    acc = TrackEmbeddings(embedder, background=background)
    for index, (bgr, faces) in enumerate(zip(clip.frames, tracked)):
        acc.add(Frame(bgr=bgr, index=index), faces)
    return acc.tracks


def test_background_embeddings_equal_inline_ones_and_skip_unkept_faces():
    clip, tracked, _ = cut_clip()
    inline_embedder, background_embedder = CountingEmbedder(), CountingEmbedder()
    inline = _embed(clip, tracked, inline_embedder, background=False)
    background = _embed(clip, tracked, background_embedder, background=True)
    assert inline.keys() == background.keys() and len(inline) >= 6
    kept = 0
    for track_id, a in inline.items():
        b = background[track_id]
        assert a.embedded_frames == b.embedded_frames and a.weights == b.weights
        assert all(isinstance(e, np.ndarray) for e in b.embeddings)
        for x, y in zip(a.embeddings, b.embeddings):
            assert np.array_equal(x, y)
        kept += len(a.embeddings)
    # One SFace run per embedding still kept or replaced later, none for faces not kept at all.
    assert inline_embedder.features == background_embedder.features >= kept > 0
    assert inline_embedder.features <= sum(t.embeds_run for t in inline.values())


def test_a_face_too_dark_to_identify_costs_no_sface_run():
    clip, tracked, _ = cut_clip()
    index = next(i for i, f in enumerate(tracked) if len(f))
    faces = tracked[index]
    embedder = CountingEmbedder()
    dark = (clip.frames[index] // 16).astype(np.uint8)  # grey spread far below MIN_CONTRAST
    embedding, quality = embedder.embed(dark, faces.xyxy[0], faces.landmarks[0])
    assert embedding is None and quality == 0.0 and embedder.features == 0
    embedding, quality = embedder.embed(clip.frames[index], faces.xyxy[0], faces.landmarks[0])
    assert embedding is not None and quality > 0 and embedder.features == 1
    assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-5


def test_a_track_too_weak_to_link_costs_no_sface_run():
    """Faces are embedded only once a track's kept weights reach MIN_LINK_WEIGHT; a track that never
    gets there has no embedding and cost no SFace run."""
    clip, tracked, _ = cut_clip()
    # Scores scaled down so that each face weighs ~0.1-0.2: a track needs a few of them.
    weak = [dataclasses.replace(f, score=f.score * 0.03) for f in tracked]
    for frames in (1, 9, len(weak)):  # one face per track, two (some tracks reach it), all
        embedder = CountingEmbedder()
        acc = TrackEmbeddings(embedder, min_quality=0.0, background=False)
        for index in range(frames):
            acc.add(Frame(bgr=clip.frames[index], index=index), weak[index])
        tracks = acc.tracks
        embedded = [t for t in tracks.values() if t.embeddings]
        waiting = [t for t in acc._tracks.values() if t.weights and t.track_id not in {e.track_id for e in embedded}]
        assert all(t.weight >= MIN_LINK_WEIGHT and len(t.embeddings) == len(t.weights) for t in embedded)
        assert all(t.weight < MIN_LINK_WEIGHT and not tracks[t.track_id].weights for t in waiting)
        assert embedder.features == sum(len(t.embeddings) for t in embedded)  # none wasted, none replaced
        if frames == 1:
            assert waiting and not embedded and embedder.features == 0
        else:
            assert embedded and embedder.features > 0
        if frames == 9:
            assert waiting  # a track one face short of linking: its two faces cost no SFace run
