"""Live operation: webcams and stream URLs in, anonymized recordings, pushes and previews out.

``LiveSource`` (capture, newest frame only, reconnect) -> ``LiveRunner`` (detect with a deadline,
track, anonymize, fail closed) -> sinks (``FileSink``, ``StreamSink``, ``MjpegPreview``,
``WindowPreview``), each on its own thread. See README.md, "Live: cameras and streams", for the command line.
"""

from faceanon_video.live.runner import DeadlineMissed, LiveRunner, LiveSummary, run_live
from faceanon_video.live.sinks import FileSink, MjpegPreview, Sink, StreamSink, WindowPreview
from faceanon_video.live.sources import Gap, LiveSource, camera_input, is_live_input

__all__ = [
    "DeadlineMissed",
    "FileSink",
    "Gap",
    "LiveRunner",
    "LiveSource",
    "LiveSummary",
    "MjpegPreview",
    "Sink",
    "StreamSink",
    "WindowPreview",
    "camera_input",
    "is_live_input",
    "run_live",
]
