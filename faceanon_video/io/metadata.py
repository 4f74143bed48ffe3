"""What an output carries besides the anonymized pixels: one allow-list policy for every writer.

Phones, action cameras and dashcams put the place (GPS in QuickTime ``location``/``location-eng``
and ``com.apple.quicktime.location.ISO6709`` keys, XMP, Matroska ``RECORDING_LOCATION`` tags),
the device (make, model, serial number, software), the owner (author, artist, comment, title,
copyright) and the time of filming next to the video, at file and at stream level, plus whole
streams: telemetry (GoPro GPMF, DJI, dashcam GPS) as data or subtitle tracks, subtitles and captions
(names, speech), chapter titles, and cover pictures and attachments (which can be a photo of a face).

So nothing is copied unless it is on an allow-list of what playback needs, or the user asked for it:

* **tags**: only the audio/subtitle ``language`` of copied streams (the frames are rotated upright
  when decoded, so no rotation tag is needed; the time base and the colour layout are stream
  parameters, not tags). ``--keep-metadata KEY[,KEY...]`` adds keys (``all``: every input tag, and
  the chapters).
* **streams**: the anonymized video and the audio (voices are out of scope, see README). Subtitles,
  data and attachments only with ``--keep-streams``. Cover pictures (attached pictures) are never
  copied: they may show a face and are not anonymized. Further video streams (other angles) are never
  copied either: they are not anonymized.
* **what the muxer adds itself**: FFmpeg's ``bitexact`` flag stops muxers writing their version
  (``encoder=Lavf62...``), a creation time and random UIDs; what remains is structural and the same
  for every file (``major_brand``, ``handler_name=VideoHandler``, ``DURATION``...).

``ScrubRecord`` lists what was removed and kept, by key and stream, never by value: the report must
not carry the GPS position it removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import av

log = logging.getLogger(__name__)

#: Stream kinds the user may keep (``--keep-streams``); audio is kept unless ``--no-audio``.
OPTIONAL_STREAMS = ("subtitles", "data", "attachments")
#: Stream tags playback needs: the language of audio and subtitle tracks (players pick tracks by it).
PLAYBACK_STREAM_TAGS = frozenset({"language"})
#: Container options every output is opened with: no muxer version, creation time or random UIDs.
MUXER_OPTIONS = {"fflags": "+bitexact"}
#: ``--keep-metadata`` value that keeps every tag and the chapters.
ALL = "all"
#: ``--keep-metadata`` value that keeps the chapters (their titles are tags too).
CHAPTERS = "chapters"


def stream_kind(stream) -> str:
    """'video', 'audio', 'subtitles', 'data', 'attachments' or 'cover' (an attached picture)."""
    if stream.type == "video":
        return "cover" if stream.disposition & av.stream.Disposition.attached_pic else "video"
    return {"subtitle": "subtitles", "attachment": "attachments"}.get(stream.type, stream.type)


def stream_label(stream) -> dict:
    """How a stream is named in the report: index, kind and codec (no tags, no file names)."""
    context = stream.codec_context if stream.type != "attachment" else None
    return {"index": stream.index, "kind": stream_kind(stream), "codec": context.name if context is not None else None}


def _matches(tag: str, wanted: str) -> bool:
    """A kept key also covers its language variants (``location`` -> ``location-eng``), its
    QuickTime reverse-DNS spelling (``make`` -> ``com.apple.quicktime.make``) and Matroska's upper case."""
    tag, wanted = tag.lower(), wanted.lower()
    return tag == wanted or tag.startswith(wanted + "-") or tag.endswith("." + wanted)


@dataclass(frozen=True)
class MetadataPolicy:
    """Which tags and streams an output keeps. The default keeps only what playback needs."""

    keep_keys: tuple[str, ...] = ()  # extra tag keys to keep, or ("all",)
    keep_streams: tuple[str, ...] = ()  # subset of OPTIONAL_STREAMS
    keep_audio: bool = True

    @classmethod
    def from_config(cls, config) -> MetadataPolicy:
        return cls(keep_keys=tuple(config.keep_metadata), keep_streams=tuple(config.keep_streams), keep_audio=config.keep_audio)

    @property
    def keeps_all_tags(self) -> bool:
        return ALL in self.keep_keys

    @property
    def keeps_chapters(self) -> bool:
        return self.keeps_all_tags or CHAPTERS in self.keep_keys

    def keeps_tag(self, key: str, stream_level: bool) -> bool:
        if self.keeps_all_tags or (stream_level and key.lower() in PLAYBACK_STREAM_TAGS):
            return True
        return any(_matches(key, wanted) for wanted in self.keep_keys)

    def keeps_stream(self, stream) -> tuple[bool, str]:
        """Whether a non-video stream of the input is copied, and why (for the report)."""
        kind = stream_kind(stream)
        if kind == "cover":
            if "attachments" in self.keep_streams:
                log.warning("cover picture (stream %d) dropped even with --keep-streams attachments: it may show a face, and covers are not anonymized", stream.index)
            return False, "cover picture: may show a face and is not anonymized"
        if kind == "video":
            return False, "another video stream: only the first is anonymized"
        if not self.keep_audio:
            return False, "--no-audio"
        if kind == "audio":
            return True, "audio is kept (voices are not anonymized)"
        if kind in self.keep_streams:
            return True, f"--keep-streams {kind}"
        return False, f"{kind} may carry identity (keep with --keep-streams {kind})"


@dataclass
class ScrubRecord:
    """What one output's writer removed and kept: tag keys by place ('format', 'stream 1'...) and streams."""

    removed_tags: dict[str, list[str]] = field(default_factory=dict)
    kept_tags: dict[str, list[str]] = field(default_factory=dict)
    removed_streams: list[dict] = field(default_factory=list)
    kept_streams: list[dict] = field(default_factory=list)
    chapters_removed: int = 0
    chapters_kept: int = 0

    def filter_tags(self, policy: MetadataPolicy, tags: dict, where: str) -> dict:
        """The tags ``policy`` keeps, noting the keys of the rest."""
        stream_level = where != "format"
        kept = {k: v for k, v in tags.items() if policy.keeps_tag(k, stream_level)}
        removed = sorted(k for k in tags if k not in kept)
        if removed:
            self.removed_tags.setdefault(where, []).extend(removed)
        if kept:
            self.kept_tags.setdefault(where, []).extend(sorted(kept))
        return kept

    def note_stream(self, stream, kept: bool, reason: str) -> None:
        (self.kept_streams if kept else self.removed_streams).append({**stream_label(stream), "reason": reason})

    @property
    def removed_tag_count(self) -> int:
        return sum(len(keys) for keys in self.removed_tags.values())

    def summary(self, policy: MetadataPolicy) -> str:
        """One line for the CLI: what was removed, and what was kept because the user asked."""
        parts = [f"metadata removed: {self.removed_tag_count} tags"]
        if self.chapters_removed:
            parts[0] += f", {self.chapters_removed} chapters"
        if self.removed_streams:
            parts.append("streams removed: " + ", ".join(f"{s['index']} ({s['kind']})" for s in self.removed_streams))
        asked = [k for keys in self.kept_tags.values() for k in keys if k.lower() not in PLAYBACK_STREAM_TAGS or policy.keeps_all_tags]
        if asked or policy.keep_keys:
            parts.append("kept on request: " + (ALL if policy.keeps_all_tags else ", ".join(sorted(set(asked))) or "nothing matched"))
        kept_optional = [f"{s['index']} ({s['kind']})" for s in self.kept_streams if s["kind"] in OPTIONAL_STREAMS]
        if kept_optional:
            parts.append("streams kept on request: " + ", ".join(kept_optional))
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {
            "tags_removed": self.removed_tags,
            "tags_kept": self.kept_tags,
            "streams_removed": self.removed_streams,
            "streams_kept": self.kept_streams,
            "chapters_removed": self.chapters_removed,
            "chapters_kept": self.chapters_kept,
        }


def output_tags(path) -> dict:
    """What actually landed in a finished file, read back (tags by place, chapters), for the report."""
    with av.open(str(path)) as container:
        found = {"format": dict(container.metadata)}
        for stream in container.streams:
            found[f"stream {stream.index} ({stream_kind(stream)})"] = dict(stream.metadata)
        found["chapters"] = len(container.chapters())
    return found
