"""--start/--end on files, end to end through the CLI: the right frames, audio cut to match, in sync."""

from __future__ import annotations

import av
import numpy as np
import pytest

from faceanon_video.cli import main
from faceanon_video.io.decode import VideoReader
from tests.conftest import HAMILTON


def stream_times(path, kind: str) -> list[float]:
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.pts is not None)


@pytest.mark.parametrize(("start_s", "end_s"), [(2.0, 4.0), (None, 1.0), (8.5, None)])
def test_span_selects_frames_and_cuts_audio_with_them(tmp_path, start_s, end_s):
    out = tmp_path / "span.mp4"
    args = [str(HAMILTON), "-o", str(out), "-q"] + (["--start", str(start_s)] if start_s is not None else []) + (["--end", str(end_s)] if end_s is not None else [])
    assert main(args) == 0
    with VideoReader(HAMILTON) as reader:
        offset_s, fps, duration_s = reader.start_offset_s, float(reader.info.fps), reader.info.duration_s
    first_s, last_s = start_s or 0.0, min(end_s if end_s is not None else duration_s, duration_s)
    video, audio = stream_times(out, "video"), stream_times(out, "audio")
    # Spans count from the first video frame (like ffmpeg -ss/-to); the timestamps themselves are kept.
    assert video[0] - offset_s >= first_s - 1e-3 and video[-1] - offset_s <= last_s + 1e-3
    assert abs(len(video) - (last_s - first_s) * fps) <= 2
    # Audio is cut to the same span (the source's audio starts 0.84 s before its video; without --start
    # that lead-in is kept) and keeps its timestamps, so it stays in sync.
    source_audio_start_s = stream_times(HAMILTON, "audio")[0]
    expected_audio_start_s = source_audio_start_s if start_s is None else start_s + offset_s
    assert abs(audio[0] - expected_audio_start_s) < 0.05 and abs(audio[-1] - video[-1]) < 0.1
    # The frames are the source's frames at those times (anonymized, so compare far from the faces: the top rows).
    with VideoReader(HAMILTON, start_s=start_s, end_s=end_s) as reader:
        expected = next(iter(reader)).bgr
    with av.open(str(out)) as container:
        got = next(container.decode(video=0)).to_ndarray(format="bgr24")
    assert np.abs(got[:20].astype(int) - expected[:20].astype(int)).mean() < 4
