"""Encoding with PyAV: ``Frame``s -> encoded video, other streams' packets copied as they are.

Every output, file or live, goes through ``VideoWriter``, and so through one metadata policy
(``io.metadata``): input tags, streams and chapters are copied only as far as it allows, and muxers
are opened ``bitexact`` so they add no version string or creation time of their own.

The output is written to a hidden temporary file next to the destination and renamed only when
``close()`` is called after success, so a crash, a Ctrl-C or a bad input never leaves a
half-written file where the user expects a finished one.
"""

from __future__ import annotations

import errno
import logging
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from faceanon_video.errors import FaceanonError, InputError, OutputError, describe_os_error
from faceanon_video.io import codec_threads
from faceanon_video.io.metadata import MUXER_OPTIONS, MetadataPolicy, ScrubRecord
from faceanon_video.io.decode import video_sha256
from faceanon_video.io.outputs import AtomicOutput, temporary_path  # noqa: F401 - re-exported (older imports)
from faceanon_video.types import Frame

log = logging.getLogger(__name__)

#: Video codec by output extension. H.264 everywhere it is allowed; WebM only takes VP8/VP9/AV1.
CODEC_BY_EXTENSION = {".webm": "libvpx-vp9"}
DEFAULT_CODEC = "libx264"


def to_av_frame(frame: Frame, width: int, height: int) -> av.VideoFrame:
    """A yuv420p ``av.VideoFrame`` of ``frame`` cropped to (width, height) (4:2:0 needs even sizes).

    An I420 frame is handed over without a copy (the encoder copies it in); a BGR one is converted
    with OpenCV, the inverse of the decoder's conversion (see ``io.decode.to_bgr``). Reads only, so
    other consumers of the same frame (live sinks) may read it at the same time.
    """
    if (frame.width, frame.height) != (width, height):
        frame = frame.with_image(np.ascontiguousarray(frame.read_bgr()[:height, :width]))
    if height % 4:
        # PyAV's from_numpy_buffer takes the height of a yuv420p array as rows * 2 / 3 rounded down to
        # a multiple of 4 (a 362-row frame became 360 and its chroma was misread); copy instead.
        return av.VideoFrame.from_ndarray(frame.read_i420(), format="yuv420p")
    return av.VideoFrame.from_numpy_buffer(frame.read_i420(), format="yuv420p")


#: Extensions written by FFmpeg's MOV/MP4 muxer, which keeps reverse-DNS QuickTime keys
#: (``com.apple.quicktime.make``) only with ``movflags=use_metadata_tags``.
MOV_EXTENSIONS = {".mp4", ".m4v", ".mov", ".3gp"}


def muxer_options(container_options: dict | None, destination: str | Path, format_tags: dict) -> dict:
    """``container_options`` with the policy's muxer flags added (flag values are combined), and the
    MOV flag that writes QuickTime keys when the user kept some (``--keep-metadata make``)."""
    options = dict(container_options or {})
    wanted = dict(MUXER_OPTIONS)
    if Path(str(destination)).suffix.lower() in MOV_EXTENSIONS and any("." in key for key in format_tags):
        wanted["movflags"] = "+use_metadata_tags"
    for key, value in wanted.items():
        options[key] = f"{options[key]}{value}" if key in options and value.startswith("+") else options.get(key, value)
    return options


#: The colour description OpenCV's BGR -> I420 conversion (``types.bgr_to_i420``) writes: the
#: BT.601 matrix (FFmpeg's ``smpte170m``, AVCOL_SPC 6) in limited ("tv", AVCOL_RANGE 1) range.
OPENCV_COLOURSPACE, TV_RANGE = 6, 1
#: FFmpeg's "unspecified" (and "reserved") value of each codec-context colour attribute.
UNKNOWN = {"color_range": (0,), "colorspace": (2, 3), "color_primaries": (0, 2, 3), "color_trc": (0, 2, 3)}


def colour_of(stream) -> dict:
    """The colour description the output must carry for frames decoded from ``stream``: the input's
    primaries and transfer always (no conversion touches them). Its matrix and range only when the
    decoder hands 4:2:0 frames over as they are (``io.decode.to_frame``; OpenCV's round trip of a
    rotated one is exact too): other pixel formats (full range, 10-bit, 4:4:4) go through BGR and
    come out of OpenCV's conversion as BT.601 limited range, whatever they were. Unknown values
    (``UNKNOWN``) are left out, so the encoder's default stays."""
    context = stream.codec_context
    colour = {"color_primaries": context.color_primaries, "color_trc": context.color_trc}
    passthrough = context.format is not None and context.format.name == "yuv420p" and context.width % 2 == 0 and context.height % 2 == 0
    if passthrough:
        colour.update(colorspace=context.colorspace, color_range=context.color_range)
    else:
        colour.update(colorspace=OPENCV_COLOURSPACE, color_range=TV_RANGE)
    return {name: int(value) for name, value in colour.items() if value is not None and int(value) not in UNKNOWN[name]}


def from_input(reader) -> dict:
    """What a ``VideoWriter`` may copy from a ``VideoReader``'s input (the policy decides how much),
    and the colour description its frames keep (``colour_of``)."""
    return {
        "templates": reader.copy_streams + reader.other_streams,
        "metadata": dict(reader.container.metadata),
        "chapters": reader.container.chapters(),
        "video_template": reader.video_stream,
        "colour": colour_of(reader.video_stream),
    }


class VideoWriter:
    """Writes frames with H.264 (by default) and copies the audio (and, if ``policy`` allows, the
    subtitle/data/attachment) streams of ``templates``, the input's tags (``metadata`` for the file,
    each template's own, ``video_template``'s for the video) and ``chapters`` as far as ``policy``
    allows; ``scrub`` records what was removed and kept. See ``io.metadata``. ``colour`` (codec
    context attribute -> FFmpeg enum value, see ``colour_of``) tags the encoded video.

    Timestamps are copied from the input frames (``Frame.pts`` in ``time_base``), so variable frame
    rate, the start offset and the duration are kept. The encoder is opened on the first frame,
    whose size (after rotation to upright) defines the output's.

    Settings:
        crf: x264/x265/VP9 quality; lower is better and bigger (18 is visually lossless, 23 x264's default).
        preset: x264 speed/size trade-off. ``ultrafast`` (the default) costs ~8 ms CPU per 720p frame on
            one core of the development machine, ``veryfast`` ~30 ms for files about half the size:
            on 2 cores the encoder would otherwise take more CPU than detection.
    """

    def __init__(
        self,
        destination: str | Path,
        fps: Fraction,
        time_base: Fraction,
        templates: list = (),
        codec: str | None = None,
        crf: int = 20,
        preset: str = "ultrafast",
        metadata: dict | None = None,
        container_format: str | None = None,
        container_options: dict | None = None,
        atomic: bool = True,
        policy: MetadataPolicy | None = None,
        chapters: list = (),
        video_template=None,
        colour: dict | None = None,
    ) -> None:
        self.output = AtomicOutput(destination) if atomic else None
        self.destination = Path(str(destination))
        path = self.output.temp if atomic else destination
        self.fps = Fraction(fps)
        self.time_base = Fraction(time_base)
        self.suffix = Path(str(destination)).suffix.lower()
        self.codec = codec or CODEC_BY_EXTENSION.get(self.suffix, DEFAULT_CODEC)
        self.crf = crf
        self.preset = preset
        self.policy = policy or MetadataPolicy()
        self.colour = dict(colour or {})
        self.scrub = ScrubRecord()
        format_tags = self.scrub.filter_tags(self.policy, dict(metadata or {}), "format")
        options = muxer_options(container_options, destination, format_tags)
        try:
            self.container = av.open(str(path), mode="w", format=container_format, options=options)
        except (ValueError, av.error.FFmpegError) as exc:
            if self.output:
                self.output.discard()
            if isinstance(exc, OSError) and exc.errno not in (None, errno.EINVAL):
                raise OutputError(describe_os_error(exc, destination)) from exc
            raise InputError(f"{destination}: cannot write this kind of file ({exc})") from exc
        self.container.metadata.update(format_tags)
        self._video_tags = self.scrub.filter_tags(self.policy, dict(video_template.metadata), f"stream {video_template.index}") if video_template is not None else {}
        self._copy_chapters(list(chapters))
        self.video = None
        self.stream_map: dict[int, av.stream.Stream] = {}
        self.transcoders: dict[int, tuple] = {}
        # The copied streams are added after the video stream (``_open_video``), so that the video
        # is stream 0 as tools that take "the first stream" expect; their packets wait until then.
        self._templates = list(templates)
        self._pending_packets: list = []
        self._last_pts: int | None = None
        self.first_pts: int | None = None
        self.frames_written = 0
        self._finished = False
        self._copied_video = False  # video packets remuxed as they are (``copy_video``), not encoded here

    def _copy_chapters(self, chapters: list) -> None:
        if not chapters:
            return
        if not self.policy.keeps_chapters:
            self.scrub.chapters_removed = len(chapters)
            return
        try:
            self.container.set_chapters(chapters)
            self.scrub.chapters_kept = len(chapters)
        except (ValueError, av.error.FFmpegError) as exc:
            log.warning("chapters dropped: %s", exc)
            self.scrub.chapters_removed = len(chapters)

    def _add_copied_streams(self, templates) -> None:
        for stream in templates:
            kept, reason = self.policy.keeps_stream(stream)
            if kept:
                out, reason = self._add_copied_stream(stream, reason)
                kept = out is not None
                if kept and stream.type != "attachment":
                    out.metadata.update(self.scrub.filter_tags(self.policy, dict(stream.metadata), f"stream {stream.index}"))
                    out.disposition = stream.disposition
            self.scrub.note_stream(stream, kept, reason)

    def _add_copied_stream(self, stream, reason: str) -> tuple[av.stream.Stream | None, str]:
        """The output stream for a kept input stream (None if this container cannot hold it), and why."""
        if stream.type == "attachment":
            # Name and MIME type are what Matroska requires of an attachment; the user asked to keep it.
            return self.container.add_attachment(stream.name, stream.mimetype, stream.data), reason
        name = stream.codec_context.name if stream.codec_context else getattr(stream, "name", None)
        # Data streams (bin_data) are muxed by their codec tag ('gpmd' in MP4), which only the same
        # kind of container is sure to accept: another one would fail at its header, after the work.
        same_container = Path(str(stream.container.name)).suffix.lower() == self.suffix
        if stream.type == "data" and "timecode" in stream.metadata:
            # A QuickTime timecode track (tmcd, in camera MOVs): FFmpeg's MOV muxer fails at the
            # trailer on a copied one ("Invalid argument"), after the work.
            log.warning("data stream %d (timecode track) dropped: it cannot be copied", stream.index)
            return None, "a timecode track cannot be copied"
        if self._holds(name) or (stream.type == "data" and same_container):
            try:
                out = self.stream_map[stream.index] = self.container.add_stream_from_template(stream)
                return out, reason
            except (ValueError, av.error.FFmpegError) as exc:
                log.warning("stream %d (%s) cannot be copied: %s", stream.index, name, exc)
        if stream.type == "audio":
            # The container cannot hold this audio codec as is: re-encode rather than lose the audio.
            out = self._audio_transcoder(stream)
            log.warning("audio stream %d (%s) re-encoded as %s: %s cannot hold it", stream.index, name, out.codec_context.name, self.container.format.name)
            return out, f"{reason}; re-encoded as {out.codec_context.name}"
        log.warning("%s stream %d (%s) dropped: %s cannot hold it", stream.type, stream.index, name, self.container.format.name)
        return None, f"{self.container.format.name} cannot hold {name}"

    def _holds(self, codec_name: str | None) -> bool:
        """Whether this container can hold ``codec_name`` as is. PyAV's ``supported_codecs`` says MP4
        holds PCM, but FFmpeg's MP4 muxer has no tag for it and fails at the header, after the work."""
        if codec_name and codec_name.startswith("pcm_") and "mp4" in self.container.format.name.split(","):
            return False
        return codec_name in self.container.supported_codecs

    def _audio_transcoder(self, stream) -> av.stream.Stream:
        """An output stream in the container's default audio codec for ``stream``, opened, with the
        resampler its frames go through (``self.transcoders``): the codec's sample format, a sample
        rate it accepts (Opus only takes 8/12/16/24/48 kHz, so 44.1 kHz AAC becomes 48 kHz) and, for
        codecs with a fixed frame size (Opus 960, AAC 1024 samples), frames of exactly that size."""
        source = stream.codec_context
        codec = av.Codec(self.container.default_audio_codec, "w")
        rates = sorted(codec.audio_rates or [])
        rate = source.sample_rate
        if rates and rate not in rates:
            rate = next((r for r in rates if r >= rate), rates[-1])  # never lose bandwidth when avoidable
        out = self.container.add_stream(codec.name, rate=rate)
        formats = [f.name for f in (codec.audio_formats or [])]
        if formats and out.codec_context.format.name not in formats:
            out.codec_context.format = formats[0]
        # By channel count: a PCM stream may carry no channel order ("2 channels"), which encoders
        # refuse; more than two channels are downmixed (not every codec takes them).
        out.codec_context.layout = "mono" if source.layout.nb_channels == 1 else "stereo"
        out.codec_context.time_base = Fraction(1, rate)
        try:
            out.codec_context.open()
        except (ValueError, av.error.FFmpegError) as exc:
            raise InputError(f"audio stream {stream.index} ({source.name}) cannot be re-encoded as {codec.name} for {self.container.format.name}: {exc}") from exc
        frame_size = out.codec_context.frame_size or None
        resampler = av.AudioResampler(format=out.codec_context.format, layout=out.codec_context.layout, rate=rate, frame_size=frame_size)
        self.transcoders[stream.index] = (out, resampler)
        return out

    def _open_video(self, frame: Frame) -> None:
        stream = self.container.add_stream(self.codec, rate=self.fps)
        stream.width = frame.width - frame.width % 2  # 4:2:0 needs even sizes
        stream.height = frame.height - frame.height % 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = self.time_base
        stream.time_base = self.time_base
        options = {"crf": str(self.crf)}
        if self.codec in ("libx264", "libx265"):
            options["preset"] = self.preset
        elif self.codec == "libvpx-vp9":
            options.update({"b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"})
        stream.codec_context.options = options
        stream.codec_context.thread_count = codec_threads(stream.width, stream.height)
        for name, value in self.colour.items():
            # Not identifying, and without it a BT.709 or full-range input plays with shifted colours.
            setattr(stream.codec_context, name, value)
        stream.metadata.update(self._video_tags)
        self.video = stream
        self._add_copied_after_video()

    def _add_copied_after_video(self) -> None:
        self._add_copied_streams(self._templates)
        for packet in self._pending_packets:
            self._mux_copied(packet)
        self._pending_packets.clear()

    def write(self, frame: Frame) -> None:
        if self.video is None:
            self._open_video(frame)
        av_frame = to_av_frame(frame, self.video.width, self.video.height)
        pts = frame.pts
        if pts is not None and frame.time_base is not None and frame.time_base != self.time_base:
            pts = round(pts * frame.time_base / self.time_base)
        if pts is None:
            pts = round(self.frames_written / self.fps / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders reject repeated timestamps
        if self._last_pts is None:
            self.first_pts = pts
        self._last_pts = pts
        av_frame.pts = pts
        av_frame.time_base = self.time_base
        self._mux(self.video.encode(av_frame))
        self.frames_written += 1

    def copy_video(self, template) -> None:
        """Take already encoded video packets (``write_video_packet``) in the codec of ``template``, an
        input stream, instead of encoding frames: the join of segment-parallel runs (``segments``)."""
        stream = self.container.add_stream_from_template(template)
        stream.time_base = self.time_base
        stream.metadata.clear()
        stream.metadata.update(self._video_tags)
        self.video = stream
        self._copied_video = True
        self._add_copied_after_video()

    def write_video_packet(self, packet: av.Packet) -> None:
        """Remux one encoded video packet (after ``copy_video``); its timestamps are kept as they are."""
        pts = round(packet.pts * packet.time_base / self.time_base) if packet.pts is not None else None
        if pts is not None:
            self.first_pts = pts if self.first_pts is None else min(self.first_pts, pts)
            self._last_pts = pts if self._last_pts is None else max(self._last_pts, pts)
        packet.stream = self.video
        self._mux([packet])
        self.frames_written += 1

    def write_packet(self, packet: av.Packet) -> None:
        """Copy a packet of an audio/subtitle/data stream given in ``templates``."""
        if self.video is None:
            if any(packet.stream.index == t.index for t in self._templates):
                self._pending_packets.append(packet)  # the header is written with the first video frame
            return
        self._mux_copied(packet)

    def _mux_copied(self, packet: av.Packet) -> None:
        index = packet.stream.index
        if index not in self.stream_map and index not in self.transcoders:
            return  # not kept (policy) or not holdable by this container
        if index in self.transcoders:
            out, resampler = self.transcoders[index]
            for audio in packet.decode():
                for resampled in resampler.resample(audio):
                    self._mux(out.encode(resampled))
            return
        packet.stream = self.stream_map[index]
        self._mux([packet])

    def _mux(self, packets) -> None:
        try:
            self.container.mux(packets)
        except av.error.FFmpegError as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: Exception) -> FaceanonError:
        destination = self.output.destination if self.output else "output"
        if isinstance(exc, OSError) and exc.errno not in (None, errno.EINVAL):
            return OutputError(describe_os_error(exc, destination))
        return FaceanonError(f"writing {destination} failed: {exc}")

    def finish(self) -> None:
        """Flush the encoders and close the file, still under its temporary name (``close`` renames it)."""
        if self._finished:
            return
        if self.video is None:
            raise InputError("no video frame to write")
        if not self._copied_video:
            self._mux(self.video.encode())
        for out, resampler in self.transcoders.values():
            for resampled in resampler.resample(None):  # the samples still held for a partial frame
                self._mux(out.encode(resampled))
            self._mux(out.encode())
        try:
            self.container.close()
        except (OSError, av.error.FFmpegError) as exc:
            raise self._write_error(exc) from exc
        self._finished = True

    def video_sha256(self) -> str:
        """Hex SHA-256 of the written video stream's packets (``io.decode.video_sha256``; after ``finish``).
        Read back from the file: muxers rewrite packets (MP4 turns H.264 start codes into lengths)."""
        return video_sha256(self.output.temp if self.output else self.destination)

    def close(self, success: bool = True) -> None:
        """Flush and finalise; with ``success=False`` (or on a failed flush) the partial file is removed.
        ``close(success=False)`` never raises: it runs while the real error is on its way to the user."""
        if not success:
            self._discard()
            return
        try:
            self.finish()
        except BaseException:
            self._discard()
            raise
        if self.output:
            self.output.commit()

    def _discard(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - already failing; the partial file is removed below either way
            pass
        if self.output:
            self.output.discard()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close(success=True)
        else:
            self._discard()
