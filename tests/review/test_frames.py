"""FrameSource: frame N is exactly the N-th frame a run decodes, whatever order frames are asked in."""

from __future__ import annotations

import random

import numpy as np
import pytest

from faceanon_video.io.decode import VideoReader
from faceanon_video.review.frames import FrameSource
from tests.conftest import HAMILTON


@pytest.fixture(scope="module")
def hamilton_frames():
    with VideoReader(HAMILTON) as reader:
        return [frame.bgr.copy() for frame in reader]


def test_random_sequential_and_backward_requests_match_the_runs_frames(hamilton_frames):
    source = FrameSource(HAMILTON, cache_bytes=0)  # no cache beyond the reorder window: every jump decodes
    try:
        assert source.frame_count == len(hamilton_frames) == 275
        assert (source.width, source.height) == (640, 360)
        order = random.Random(3).sample(range(275), 30) + list(range(100, 130)) + list(range(140, 120, -1)) + [274, 0, 274]
        for index in order:
            np.testing.assert_array_equal(source.bgr(index), hamilton_frames[index], err_msg=f"frame {index}")
    finally:
        source.close()


def test_playback_decodes_forward_without_seeking():
    source = FrameSource(HAMILTON)
    try:
        source.bgr(150)
        seeks = source.seeks
        for index in range(151, 200):
            source.bgr(index)
        assert source.seeks == seeks
        source.bgr(10)  # behind the decoder: one seek back
        assert source.seeks == seeks + 1
        with pytest.raises(IndexError):
            source.bgr(275)
    finally:
        source.close()


def encode(frames, destination) -> None:
    """H.264 with B-frames and a keyframe every 30 frames, in the container ``destination`` names."""
    import av

    with av.open(str(destination), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.codec_context.gop_size = 30
        stream.options = {"preset": "veryfast", "bf": "3", "sc_threshold": "0"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())


@pytest.mark.parametrize("container", ["ts", "avi", "mkv"])
def test_containers_with_imprecise_seeking_or_no_timestamps(tmp_path, container, hamilton_frames):
    # MPEG-TS seeks land near, not on, a keyframe; AVI has no presentation times (frames are counted).
    path = tmp_path / f"clip.{container}"
    encode(hamilton_frames[:100], path)
    with VideoReader(path) as reader:
        frames = [frame.bgr.copy() for frame in reader]
    source = FrameSource(path, cache_bytes=0)
    try:
        assert source.frame_count == len(frames)
        for index in random.Random(5).sample(range(len(frames)), 12) + [len(frames) - 1, 61, 60, 59]:
            np.testing.assert_array_equal(source.bgr(index), frames[index], err_msg=f"frame {index}")
    finally:
        source.close()
