"""Video files and streams in and out (PyAV): ``decode.VideoReader``, ``encode.VideoWriter``."""

from __future__ import annotations

import math
import os

#: Frame size one codec thread handles in real time with room to spare (decode ~5 ms, x264
#: ultrafast ~8 ms per 1280x720 frame on this project's 2-core machine).
PIXELS_PER_CODEC_THREAD = 1280 * 720


def codec_threads(width: int, height: int) -> int:
    """Threads for decoding or encoding frames of this size: one per 720p worth of pixels.

    Codec threads do not make the work smaller, they add hand-off costs (measured here: +2 ms CPU per
    720p frame to decode with frame threads, +2.4 ms to encode with x264's default of 1.5 per core),
    and on a busy machine the other pipeline stages want those cores. One thread is enough while it
    keeps ahead of detection; larger frames get more so that decoding or encoding never becomes
    the slowest stage.
    """
    return max(1, min(os.cpu_count() or 1, math.ceil(width * height / PIXELS_PER_CODEC_THREAD)))
