"""The plan file: what a render anonymizes, decided before anything is encoded.

``faceanon-video INPUT --save-plan PLAN.json`` analyses a video (decode, detect, track, link people)
and writes a plan; a person checks and edits it (``faceanon-video review``, or any JSON editor);
``faceanon-video INPUT --plan PLAN.json -o OUT`` renders exactly what it says, without detecting
anything. The same two steps run in memory for a normal file run in a seeded mode (diffusion), so
every track of one person gets the person's seed (``people.seeds``): one fake face per person.

Schema (JSON, UTF-8; the README's "Plan files" section is the user-facing copy)::

    {"format": "faceanon-video plan", "version": 1,
     "input": {"name": "clip.mp4", "sha256": "<64 hex>", "frame_count": 250,
               "width": 1280, "height": 720, "fps": 29.97, "time_base": "1/30000",
               "start_s": null, "end_s": null},
     "settings": {"detector": "yunet", "thresh": 0.5, ...},          # what the analysis used
     "persons": [{"person_id": 1, "decision": "anonymize" | "spare", "track_ids": [1, 4],
                  "gallery_id": null}],
     "tracks": [{"track_id": 1, "person_id": 1, "frames": [
                   {"frame": 0, "xyxy": [x0, y0, x1, y1], "landmarks": [[x, y] x 5] | null,
                    "score": 0.91, "detected": true}, ...]}],
     "regions": [{"region_id": 1, "keyframes": [{"frame": 10, "xyxy": [...]}, ...],
                  "mode": "interpolate" | "hold", "end_frame": null, "decision": "anonymize"}],
     "blackouts": [{"start_frame": 100, "end_frame": 120}],
     "obscured": [{"start_frame": 40, "end_frame": 40, "reason": "RuntimeError: ..."}],
     "candidates": [{"frame": 12, "xyxy": [...], "score": 0.31, "source": "low_score" | "second_detector"}]}

Units: frames are 0-based indices of the decoded frames (of the ``start_s``..``end_s`` span when the
analysis had one), spans are inclusive at both ends, boxes and landmarks are pixels of the upright
frame (x right, y down, float), scores are the detector's 0..1. ``detected`` is false where the box
was predicted by the motion model (detector missed the face, or skipped the frame). A track's frames
are strictly increasing; a track belongs to exactly one person and ``persons[].track_ids`` lists
exactly the tracks naming it.

* ``regions``: boxes a reviewer added (a missed face). ``interpolate``: linear between consecutive
  keyframes; ``hold``: each keyframe's box until the next keyframe. In both modes the last box holds
  until ``end_frame`` (default: the last keyframe). Regions are always anonymized.
* ``blackouts``: frames obscured whole by decision. ``obscured``: frames the analysis could not
  check (detection failed, damaged input); a render obscures them whole too (fail closed).
* ``candidates``: where a face may have been missed. ``source`` ``low_score``: a detection below the
  anonymization threshold that did not become part of any track; ``second_detector``: a face a
  second detector (``settings.second_detector``: CenterFace on every 8th frame) found where no track
  is. Never anonymized by themselves; a reviewer adds a region. ``source`` is optional (plans made
  before it are ``low_score``).

Versioning: ``version`` is an integer bumped on any change a version-1 reader would misread; a reader
refuses a newer version (one line), and ignores keys it does not know (additions do not bump it).
Not in the plan on purpose: seeds (secret-keyed, derived at render time from ``--key-file``) and face
embeddings (the plan is plain text; person embeddings live in the encrypted ``--people`` file).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from faceanon_video.errors import InputError
from faceanon_video.io.outputs import OutputSet, write_atomic
from faceanon_video.types import Detections

__all__ = [
    "CANDIDATE_SOURCES",
    "DECISIONS",
    "FORMAT",
    "Keyframe",
    "Person",
    "Plan",
    "PlanInput",
    "PlanTrack",
    "REGION_MODES",
    "Region",
    "Span",
    "VERSION",
    "analyse",
    "candidate_sources",
    "render",
]

log = logging.getLogger(__name__)

FORMAT = "faceanon-video plan"
VERSION = 1
#: Why a candidate may be a missed face (``Plan.candidates``, ``data["source"]``).
CANDIDATE_SOURCES = ("low_score", "second_detector")
DECISIONS = ("anonymize", "spare")
REGION_MODES = ("interpolate", "hold")
#: Validation stops listing problems after this many (the first one is what the CLI prints).
MAX_PROBLEMS = 50
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Seconds a span may start or end at: a year, far beyond any video, well inside a seek's int64 range.
MAX_SPAN_S = 366 * 86400.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# 1. The parts of a plan.


@dataclass
class PlanInput:
    """The video a plan was made for; a render refuses any other (``Plan.check_source``)."""

    name: str  # the file's name, not its path: plans are shared
    sha256: str
    frame_count: int  # frames decoded by the analysis (of the start_s..end_s span)
    width: int
    height: int
    fps: float
    time_base: str  # "num/den" seconds
    start_s: float | None = None
    end_s: float | None = None


@dataclass
class Person:
    person_id: int
    decision: str = "anonymize"
    track_ids: list[int] = field(default_factory=list)
    #: The person's id in the ``--gallery`` (seeds are derived from it when set, see people.seeds).
    gallery_id: str | None = None


@dataclass(eq=False)
class PlanTrack:
    """One track's faces, as parallel arrays (one row per frame it is on screen, frames increasing)."""

    track_id: int
    person_id: int
    frames: np.ndarray  # (n,) int64
    xyxy: np.ndarray  # (n, 4) float32
    landmarks: np.ndarray  # (n, 5, 2) float32, NaN where unknown
    score: np.ndarray  # (n,) float32
    detected: np.ndarray  # (n,) bool

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, np.int64).reshape(-1)
        n = len(self.frames)
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(n, 4)
        self.landmarks = np.asarray(self.landmarks, np.float32).reshape(n, 5, 2)
        self.score = np.asarray(self.score, np.float32).reshape(n)
        self.detected = np.asarray(self.detected, bool).reshape(n)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def first_frame(self) -> int:
        return int(self.frames[0])

    @property
    def last_frame(self) -> int:
        return int(self.frames[-1])

    def row(self, frame_index: int) -> int | None:
        """The row of ``frame_index``, or None when the track is not on that frame."""
        i = int(np.searchsorted(self.frames, frame_index))
        return i if i < len(self.frames) and self.frames[i] == frame_index else None

    def take(self, rows) -> PlanTrack:
        return PlanTrack(self.track_id, self.person_id, self.frames[rows], self.xyxy[rows], self.landmarks[rows], self.score[rows], self.detected[rows])


@dataclass
class Keyframe:
    frame: int
    xyxy: tuple[float, float, float, float]


@dataclass
class Region:
    """A box a reviewer added; always anonymized (see the module docstring for ``mode``)."""

    region_id: int
    keyframes: list[Keyframe]
    mode: str = "interpolate"
    end_frame: int | None = None

    @property
    def first_frame(self) -> int:
        return self.keyframes[0].frame

    @property
    def last_frame(self) -> int:
        return max(self.keyframes[-1].frame, self.end_frame if self.end_frame is not None else -1)

    def box_on(self, frame_index: int) -> np.ndarray | None:
        """(4,) float32 box on ``frame_index``, or None when the region is not on that frame."""
        if not self.first_frame <= frame_index <= self.last_frame:
            return None
        frames = [k.frame for k in self.keyframes]
        i = int(np.searchsorted(frames, frame_index, side="right")) - 1  # last keyframe <= frame_index
        before = np.asarray(self.keyframes[i].xyxy, np.float64)
        if self.mode == "hold" or i + 1 >= len(self.keyframes) or frames[i] == frame_index:
            return before.astype(np.float32)
        after = np.asarray(self.keyframes[i + 1].xyxy, np.float64)
        t = (frame_index - frames[i]) / (frames[i + 1] - frames[i])
        return (before + t * (after - before)).astype(np.float32)


@dataclass
class Span:
    """Frames ``start_frame``..``end_frame``, inclusive."""

    start_frame: int
    end_frame: int
    reason: str | None = None  # obscured spans: why the analysis could not check them

    def __contains__(self, frame_index: int) -> bool:
        return self.start_frame <= frame_index <= self.end_frame


# 2. The plan.


@dataclass(eq=False)
class Plan:
    """A whole plan in memory. ``Plan.load`` / ``save`` read and write the file (validated; written
    atomically); the other methods are what a render and the review app call."""

    input: PlanInput
    settings: dict = field(default_factory=dict)
    persons: dict[int, Person] = field(default_factory=dict)
    tracks: dict[int, PlanTrack] = field(default_factory=dict)
    regions: dict[int, Region] = field(default_factory=dict)
    blackouts: list[Span] = field(default_factory=list)
    obscured: list[Span] = field(default_factory=list)
    #: Low-confidence detections outside every track: (n,) frames, (n, 4) xyxy, (n,) scores.
    candidates: Detections = field(default_factory=Detections.empty)
    version: int = VERSION

    def __post_init__(self) -> None:
        self._index: dict[int, list[tuple[int, int]]] | None = None  # frame -> [(track id, row)]

    # Reading and writing.

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read and validate a plan file; ``InputError`` (one line: the first problem) otherwise."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")  # a BOM, as some editors save UTF-8, is not an error
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not a plan file (not UTF-8 text)") from exc
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{path}: not a plan file (invalid or truncated JSON: {exc})") from exc
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | Path, overwrite: bool = True, outputs: OutputSet | None = None) -> None:
        """Validate and write the plan atomically (a temporary file renamed into place; with
        ``outputs``, renamed with the run's other outputs)."""
        problems = self.validate()
        if problems:
            raise InputError(f"{path}: refusing to save an invalid plan: {_first(problems)}")
        write_atomic(path, self.to_json(), overwrite=overwrite, outputs=outputs)

    def to_json(self) -> str:
        # Compact: a long video has hundreds of thousands of face rows (one per line would double it).
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False) + "\n"

    def to_dict(self) -> dict:
        c = self.candidates
        return {
            "format": FORMAT,
            "version": self.version,
            "input": dict(vars(self.input)),
            "settings": dict(self.settings),
            "persons": [
                {"person_id": p.person_id, "decision": p.decision, "track_ids": sorted(p.track_ids), "gallery_id": p.gallery_id}
                for p in sorted(self.persons.values(), key=lambda p: p.person_id)
            ],
            "tracks": [_track_to_dict(t) for t in sorted(self.tracks.values(), key=lambda t: t.track_id)],
            "regions": [
                {"region_id": r.region_id, "keyframes": [{"frame": k.frame, "xyxy": _floats(k.xyxy)} for k in r.keyframes],
                 "mode": r.mode, "end_frame": r.end_frame, "decision": "anonymize"}
                for r in sorted(self.regions.values(), key=lambda r: r.region_id)
            ],
            "blackouts": [{"start_frame": s.start_frame, "end_frame": s.end_frame} for s in self.blackouts],
            "obscured": [{"start_frame": s.start_frame, "end_frame": s.end_frame, "reason": s.reason} for s in self.obscured],
            "candidates": [
                {"frame": int(f), "xyxy": _floats(x), "score": _floats([s])[0], "source": str(src)}
                for f, x, s, src in zip(c.data.get("frame", np.zeros(0, np.int64)).tolist(), c.xyxy, c.score, candidate_sources(c))
            ],
        }

    @classmethod
    def from_dict(cls, data, source: str = "plan") -> Plan:
        """Build a plan from parsed JSON; ``InputError`` naming ``source`` and the first problem."""
        problems: list[str] = []
        plan = _parse(data, problems)
        if plan is not None and not problems:
            problems = plan.validate()
        if problems or plan is None:
            raise InputError(f"{source}: {_first(problems or ['not a plan file'])}")
        return plan

    def validate(self) -> list[str]:
        """Every problem of the plan in memory, one line each (empty when it is valid). Checked on
        load and save; the review app can show the whole list."""
        problems: list[str] = []
        add = problems.append
        n = self.input.frame_count

        def frame_ok(frame: int, where: str) -> None:
            if not 0 <= frame < n:
                add(f"{where}: frame {frame} is outside the video (0..{n - 1})")

        for person in self.persons.values():
            if person.decision not in DECISIONS:
                add(f"person {person.person_id}: decision must be one of {', '.join(DECISIONS)}, not {person.decision!r}")
            for track_id in person.track_ids:
                track = self.tracks.get(track_id)
                if track is None:
                    add(f"person {person.person_id}: lists track {track_id}, which is not in the plan")
                elif track.person_id != person.person_id:
                    add(f"person {person.person_id}: lists track {track_id}, which belongs to person {track.person_id}")
        for track in self.tracks.values():
            where = f"track {track.track_id}"
            person = self.persons.get(track.person_id)
            if person is None:
                add(f"{where}: person {track.person_id} is not in the plan")
            elif track.track_id not in person.track_ids:
                add(f"{where}: its person {track.person_id} does not list it in track_ids")
            if not len(track):
                add(f"{where}: has no frames")
                continue
            if np.any(np.diff(track.frames) <= 0):
                add(f"{where}: frames must be strictly increasing")
            frame_ok(track.first_frame, where)
            frame_ok(track.last_frame, where)
            _check_boxes(track.xyxy, where, add)
            if not np.all(np.isfinite(track.score)) or np.any((track.score < 0) | (track.score > 1)):
                add(f"{where}: scores must be between 0 and 1")
        for region in self.regions.values():
            where = f"region {region.region_id}"
            if region.mode not in REGION_MODES:
                add(f"{where}: mode must be one of {', '.join(REGION_MODES)}, not {region.mode!r}")
            if not region.keyframes:
                add(f"{where}: needs at least one keyframe")
                continue
            frames = [k.frame for k in region.keyframes]
            if any(b <= a for a, b in zip(frames, frames[1:])):
                add(f"{where}: keyframes must be in increasing frame order, one per frame")
            for k in region.keyframes:
                frame_ok(k.frame, where)
            _check_boxes(np.asarray([k.xyxy for k in region.keyframes], np.float32), where, add)
            if region.end_frame is not None:
                if region.end_frame < frames[-1]:
                    add(f"{where}: end_frame {region.end_frame} is before its last keyframe {frames[-1]}")
                frame_ok(region.end_frame, where)
        for frame in np.unique(self.candidates.data.get("frame", np.zeros(0, np.int64))).tolist():
            frame_ok(frame, "candidates")
        for name, spans in (("blackout", self.blackouts), ("obscured span", self.obscured)):
            for span in spans:
                where = f"{name} {span.start_frame}..{span.end_frame}"
                if span.end_frame < span.start_frame:
                    add(f"{where}: end_frame is before start_frame")
                frame_ok(span.start_frame, where)
                frame_ok(span.end_frame, where)
        return problems[:MAX_PROBLEMS]

    # What a render (and the review preview) asks of a frame.

    def faces_on(self, frame_index: int, seeder=None) -> Detections:
        """The faces to anonymize on ``frame_index``: the rows of tracks whose person is
        ``anonymize`` (in track id order, as the tracker gives them), then manual regions.

        ``track_id``: the track's (a region's is ``-region_id``); ``predicted``: not ``detected``;
        ``data["person_id"]`` (0 for regions) and ``data["region_id"]`` (0 for tracks); ``seed``:
        with a ``people.seeds.PersonSeeder``, the person's seed (every track of a person the same),
        a region's own; without one, no seeds."""
        rows = [
            (self.tracks[t], row)
            for t, row in self._frame_index().get(frame_index, [])
            if self.persons[self.tracks[t].person_id].decision == "anonymize"
        ]
        boxes = [(r, r.box_on(frame_index)) for r in sorted(self.regions.values(), key=lambda r: r.region_id)]
        boxes = [(r, box) for r, box in boxes if box is not None]
        n_tracks = len(rows)
        faces = Detections(
            xyxy=[t.xyxy[i] for t, i in rows] + [box for _, box in boxes] if rows or boxes else np.zeros((0, 4), np.float32),
            score=[float(t.score[i]) for t, i in rows] + [1.0] * len(boxes),
            landmarks=[t.landmarks[i] for t, i in rows] + [np.full((5, 2), np.nan, np.float32)] * len(boxes) if rows or boxes else None,
            track_id=[t.track_id for t, _ in rows] + [-r.region_id for r, _ in boxes],
            predicted=[not bool(t.detected[i]) for t, i in rows] + [False] * len(boxes),
            data={
                "person_id": np.asarray([t.person_id for t, _ in rows] + [0] * len(boxes), np.int64),
                "region_id": np.asarray([0] * n_tracks + [r.region_id for r, _ in boxes], np.int64),
            },
        )
        if seeder is not None:
            seeds = [seeder.seed_for(self.seed_label(t.person_id)) for t, _ in rows]
            seeds += [seeder.seed_for_region(r.region_id) for r, _ in boxes]
            faces.seed = np.asarray(seeds, np.uint64).reshape(len(faces))
        return faces

    def seed_label(self, person_id: int) -> int | str:
        """What a person's seed is derived from: its gallery id when it has one, else its id."""
        person = self.persons[person_id]
        return person.gallery_id if person.gallery_id is not None else person.person_id

    def is_blacked_out(self, frame_index: int) -> bool:
        """Whether ``frame_index`` is obscured whole: a blackout, or a frame the analysis could not check."""
        return any(frame_index in s for s in self.blackouts) or self.obscure_reason(frame_index) is not None

    def obscure_reason(self, frame_index: int) -> str | None:
        """Why the analysis could not check ``frame_index`` (None when it could)."""
        for span in self.obscured:
            if frame_index in span:
                return span.reason or "not checked by the analysis"
        return None

    # Edits (the review app's actions). Each keeps the plan valid or raises ValueError.

    def set_decision(self, person_id: int, decision: str) -> None:
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        self._person(person_id).decision = decision

    def merge_persons(self, a: int, b: int) -> int:
        """Move every track of person ``b`` to person ``a`` and drop ``b``; returns ``a``. The merged
        person is spared only if both were (privacy first: a merge never un-anonymizes a face)."""
        keep, gone = self._person(a), self._person(b)
        if a == b:
            return a
        for track_id in gone.track_ids:
            self.tracks[track_id].person_id = a
        keep.track_ids = sorted(keep.track_ids + gone.track_ids)
        if gone.decision == "anonymize":
            keep.decision = "anonymize"
        if keep.gallery_id is None:
            keep.gallery_id = gone.gallery_id
        del self.persons[b]
        return a

    def split_track(self, track_id: int, at_frame: int) -> int:
        """Cut a track before ``at_frame``: its rows from ``at_frame`` on become a new track of a new
        person (decision ``anonymize``), e.g. where the tracker jumped from one face to another.
        Returns the new track's id."""
        track = self.tracks.get(track_id)
        if track is None:
            raise ValueError(f"no track {track_id} in the plan")
        later = track.frames >= at_frame
        if not later.any() or later.all():
            raise ValueError(f"track {track_id} spans frames {track.first_frame}..{track.last_frame}: nothing to split at frame {at_frame}")
        new_id = max(self.tracks) + 1
        person_id = max(self.persons) + 1
        tail = track.take(later)
        tail.track_id, tail.person_id = new_id, person_id
        self.tracks[track_id] = track.take(~later)
        self.tracks[new_id] = tail
        self.persons[person_id] = Person(person_id, "anonymize", [new_id])
        self._index = None
        return new_id

    def add_region(self, keyframes, mode: str = "interpolate", end_frame: int | None = None) -> int:
        """Add a manual region from ``keyframes`` (``Keyframe``s or ``(frame, xyxy)`` pairs, any
        order); returns its id. ``ValueError`` if it would make the plan invalid."""
        keys = sorted((k if isinstance(k, Keyframe) else Keyframe(int(k[0]), tuple(float(v) for v in k[1])) for k in keyframes), key=lambda k: k.frame)
        region = Region(max(self.regions, default=0) + 1, keys, mode, end_frame)
        self.regions[region.region_id] = region
        problems = [p for p in self.validate() if p.startswith(f"region {region.region_id}:")]
        if problems:
            del self.regions[region.region_id]
            raise ValueError(problems[0])
        return region.region_id

    def remove_region(self, region_id: int) -> None:
        if self.regions.pop(region_id, None) is None:
            raise ValueError(f"no region {region_id} in the plan")

    def add_blackout(self, start_frame: int, end_frame: int) -> None:
        span = Span(int(start_frame), int(end_frame))
        self.blackouts.append(span)
        problems = [p for p in self.validate() if p.startswith(f"blackout {span.start_frame}..{span.end_frame}:")]
        if problems:
            self.blackouts.remove(span)
            raise ValueError(problems[0])

    def remove_blackout(self, start_frame: int, end_frame: int) -> None:
        before = len(self.blackouts)
        self.blackouts = [s for s in self.blackouts if (s.start_frame, s.end_frame) != (start_frame, end_frame)]
        if len(self.blackouts) == before:
            raise ValueError(f"no blackout {start_frame}..{end_frame} in the plan")

    # Which video.

    def check_source(self, source: str | Path, frame_count: int | None = None, size: tuple[int, int] | None = None) -> None:
        """``InputError`` unless ``source`` is the video this plan was made for (sha256 of the file;
        and, when given, its frame count and (width, height))."""
        from faceanon_video.report import sha256_file

        if size is not None and tuple(size) != (self.input.width, self.input.height):
            raise InputError(f"{source}: is {size[0]}x{size[1]}, the plan was made for a {self.input.width}x{self.input.height} video ({self.input.name})")
        if frame_count is not None and self.input.frame_count and frame_count != self.input.frame_count:
            raise InputError(f"{source}: has {frame_count} frames, the plan was made for one with {self.input.frame_count} ({self.input.name})")
        if sha256_file(source) != self.input.sha256:
            raise InputError(f"{source}: not the video this plan was made for ({self.input.name}, sha256 {self.input.sha256[:12]}...)")

    # Internals.

    def _person(self, person_id: int) -> Person:
        person = self.persons.get(person_id)
        if person is None:
            raise ValueError(f"no person {person_id} in the plan")
        return person

    def _frame_index(self) -> dict[int, list[tuple[int, int]]]:
        if self._index is None:
            index: dict[int, list[tuple[int, int]]] = {}
            for track_id in sorted(self.tracks):
                for row, frame in enumerate(self.tracks[track_id].frames.tolist()):
                    index.setdefault(frame, []).append((track_id, row))
            self._index = index
        return self._index


# 3. JSON <-> plan.


def _first(problems: list[str]) -> str:
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _floats(values) -> list[float]:
    """float32 values as the shortest decimals that read back to the same float32, so a plan renders
    the same masks as the run that made it (``tolist()`` would print 17 digits of float64 noise)."""
    return [float(str(v)) for v in np.asarray(values, np.float32).ravel()]


def _track_to_dict(t: PlanTrack) -> dict:
    known = ~np.isnan(t.landmarks).any(axis=(1, 2))
    frames = [
        {"frame": f, "xyxy": _floats(t.xyxy[i]), "landmarks": np.reshape(_floats(t.landmarks[i]), (5, 2)).tolist() if known[i] else None,
         "score": _floats(t.score[i : i + 1])[0], "detected": bool(t.detected[i])}
        for i, f in enumerate(t.frames.tolist())
    ]
    return {"track_id": t.track_id, "person_id": t.person_id, "frames": frames}


def _check_boxes(xyxy: np.ndarray, where: str, add) -> None:
    if not np.all(np.isfinite(xyxy)):
        add(f"{where}: boxes must be finite numbers")
    elif np.any(xyxy[:, 2] < xyxy[:, 0]) or np.any(xyxy[:, 3] < xyxy[:, 1]):
        add(f"{where}: boxes must be [x0, y0, x1, y1] with x1 >= x0 and y1 >= y0")


class _Bad(Exception):
    """One problem found while parsing (the JSON path and what is wrong)."""


def _get(obj, key: str, where: str, kind, optional: bool = False):
    if not isinstance(obj, dict):
        raise _Bad(f"{where}: must be a JSON object")
    if key not in obj or obj[key] is None:
        if optional:
            return None
        raise _Bad(f"{where}.{key}: missing")
    return _typed(obj[key], f"{where}.{key}", kind)


#: JSON types checked by ``isinstance`` alone, and what to say when a value is not one.
_PLAIN_KINDS = {bool: "true or false", str: "a string", list: "a list", dict: "a JSON object"}


def _typed(value, where: str, kind):
    if kind is int:
        # int64 range: frames and ids go into numpy arrays (a bigger one would be an OverflowError there).
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
            raise _Bad(f"{where}: must be a whole number (got {value!r:.40})")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Bad(f"{where}: must be a number (got {value!r:.40})")
        value = float(value)
    elif not isinstance(value, kind):
        raise _Bad(f"{where}: must be {_PLAIN_KINDS[kind]} (got {value!r:.40})")
    return value


def _numbers(value, where: str, n: int) -> list[float]:
    if not isinstance(value, list) or len(value) != n:
        raise _Bad(f"{where}: must be a list of {n} numbers")
    numbers = [_typed(v, where, float) for v in value]
    if any(abs(v) > FLOAT32_MAX for v in numbers):  # stored as float32: it would become inf (with a numpy warning)
        raise _Bad(f"{where}: out of range (got {max(numbers, key=abs):g})")
    return numbers


def _parse(data, problems: list[str]) -> Plan | None:
    """The plan in ``data``, appending to ``problems`` what is wrong; None when it cannot be read at all."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        problems.append(f"not a plan file (no \"format\": \"{FORMAT}\")")
        return None
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        problems.append("version: must be a whole number >= 1")
        return None
    if version > VERSION:
        problems.append(f"plan version {version} is newer than this faceanon-video reads ({VERSION}): upgrade faceanon-video")
        return None
    try:
        plan = Plan(input=_parse_input(_get(data, "input", "plan", dict)), settings=_get(data, "settings", "plan", dict, optional=True) or {}, version=version)
        detect_every = plan.settings.get("detect_every", 1)  # the render reports the analysis's coverage with it
        if isinstance(detect_every, bool) or not isinstance(detect_every, int) or detect_every < 1:
            raise _Bad(f"settings.detect_every: must be a whole number >= 1 (got {detect_every!r:.40})")
    except _Bad as exc:
        problems.append(str(exc))
        return None

    def each(key: str, parse) -> None:
        try:
            items = _get(data, key, "plan", list, optional=True) or []
        except _Bad as exc:
            problems.append(str(exc))
            return
        for i, item in enumerate(items):
            try:
                parse(item, f"{key}[{i}]")
            except _Bad as exc:
                problems.append(str(exc))
                if len(problems) >= MAX_PROBLEMS:
                    return

    def person(item, where):
        p = Person(
            _get(item, "person_id", where, int),
            _get(item, "decision", where, str, optional=True) or "anonymize",
            [_typed(t, f"{where}.track_ids", int) for t in _get(item, "track_ids", where, list)],
            _get(item, "gallery_id", where, str, optional=True),
        )
        if p.person_id in plan.persons:
            raise _Bad(f"{where}: person_id {p.person_id} appears twice")
        plan.persons[p.person_id] = p

    def track(item, where):
        track_id, person_id = _get(item, "track_id", where, int), _get(item, "person_id", where, int)
        rows = _get(item, "frames", where, list)
        frames, xyxy, landmarks, score, detected = [], [], [], [], []
        for j, row in enumerate(rows):
            w = f"{where}.frames[{j}]"
            frames.append(_get(row, "frame", w, int))
            xyxy.append(_numbers(_get(row, "xyxy", w, list), f"{w}.xyxy", 4))
            lm = _get(row, "landmarks", w, list, optional=True)
            if lm is None:
                landmarks.append([[math.nan] * 2] * 5)
            else:
                if len(lm) != 5:
                    raise _Bad(f"{w}.landmarks: must be null or 5 [x, y] points")
                landmarks.append([_numbers(p, f"{w}.landmarks", 2) for p in lm])
            score.append(_get(row, "score", w, float))
            detected.append(_get(row, "detected", w, bool))
        if track_id in plan.tracks:
            raise _Bad(f"{where}: track_id {track_id} appears twice")
        plan.tracks[track_id] = PlanTrack(track_id, person_id, frames, xyxy, landmarks, score, detected)

    def region(item, where):
        keys = [
            Keyframe(_get(k, "frame", f"{where}.keyframes[{j}]", int), tuple(_numbers(_get(k, "xyxy", f"{where}.keyframes[{j}]", list), f"{where}.keyframes[{j}].xyxy", 4)))
            for j, k in enumerate(_get(item, "keyframes", where, list))
        ]
        decision = _get(item, "decision", where, str, optional=True) or "anonymize"
        if decision != "anonymize":
            raise _Bad(f"{where}.decision: regions are always anonymized (got {decision!r})")
        r = Region(_get(item, "region_id", where, int), keys, _get(item, "mode", where, str, optional=True) or "interpolate", _get(item, "end_frame", where, int, optional=True))
        if r.region_id in plan.regions:
            raise _Bad(f"{where}: region_id {r.region_id} appears twice")
        plan.regions[r.region_id] = r

    def span(target: list[Span], with_reason: bool):
        def parse(item, where):
            reason = _get(item, "reason", where, str, optional=True) if with_reason else None
            target.append(Span(_get(item, "start_frame", where, int), _get(item, "end_frame", where, int), reason))

        return parse

    candidates: list[tuple[int, list[float], float, str]] = []

    def candidate(item, where):
        source = _get(item, "source", where, str, optional=True) or "low_score"  # plans made before the field
        if source not in CANDIDATE_SOURCES:
            raise _Bad(f"{where}.source: one of {', '.join(CANDIDATE_SOURCES)} (got {source!r:.40})")
        candidates.append((_get(item, "frame", where, int), _numbers(_get(item, "xyxy", where, list), f"{where}.xyxy", 4), _get(item, "score", where, float), source))

    each("persons", person)
    each("tracks", track)
    each("regions", region)
    each("blackouts", span(plan.blackouts, False))
    each("obscured", span(plan.obscured, True))
    each("candidates", candidate)
    plan.candidates = candidates_detections(*(list(column) for column in zip(*candidates))) if candidates else candidates_detections([], [], [])
    return plan


def _parse_input(obj: dict) -> PlanInput:
    where = "input"
    info = PlanInput(
        name=_get(obj, "name", where, str, optional=True) or "",
        sha256=_get(obj, "sha256", where, str),
        frame_count=_get(obj, "frame_count", where, int),
        width=_get(obj, "width", where, int),
        height=_get(obj, "height", where, int),
        fps=_get(obj, "fps", where, float),
        time_base=_get(obj, "time_base", where, str),
        start_s=_get(obj, "start_s", where, float, optional=True),
        end_s=_get(obj, "end_s", where, float, optional=True),
    )
    if not _SHA256.match(info.sha256):
        raise _Bad("input.sha256: must be 64 lowercase hex digits")
    if info.frame_count < 1 or info.width <= 0 or info.height <= 0 or info.fps <= 0:
        # An analysis always decodes a frame; 0 would also switch off every frame-range check.
        raise _Bad("input: frame_count must be >= 1, width, height and fps > 0")
    if any(s is not None and not 0 <= s <= MAX_SPAN_S for s in (info.start_s, info.end_s)):
        raise _Bad(f"input: start_s and end_s must be between 0 and {MAX_SPAN_S:g} seconds")
    try:
        if Fraction(info.time_base) <= 0:
            raise ValueError
    except (ValueError, ZeroDivisionError) as exc:
        raise _Bad(f"input.time_base: must be a positive fraction like \"1/90000\" (got {info.time_base!r:.40})") from exc
    return info


def candidate_sources(candidates: Detections) -> list[str]:
    """Each candidate's source (``CANDIDATE_SOURCES``); ``low_score`` where none is recorded."""
    return list(candidates.data.get("source", ["low_score"] * len(candidates)))


def candidates_detections(frames, xyxy, score, source=None) -> Detections:
    """Candidates as ``Detections`` with ``data["frame"]`` and ``data["source"]`` (one of
    ``CANDIDATE_SOURCES``; default ``low_score``): what ``Plan.candidates`` holds."""
    frames = np.asarray(frames, np.int64).reshape(-1)
    source = np.asarray(["low_score"] * len(frames) if source is None else list(source), dtype=object).reshape(-1)
    return Detections(xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4), score=np.asarray(score, np.float32).reshape(-1), data={"frame": frames, "source": source})


# 4. The runs, importable from here too (they live in ``planning``: they need the file runner).


def analyse(source, config, progress=None) -> Plan:
    """``planning.analyse``: decode, detect, track and link people in ``source``; a ``Plan``."""
    from faceanon_video.planning import analyse as run

    return run(source, config, progress)


def render(source, destination, plan: Plan, config, progress=None):
    """``planning.render``: ``source`` anonymized into ``destination`` exactly as ``plan`` says; a ``RunSummary``."""
    from faceanon_video.planning import render as run

    return run(source, destination, plan, config, progress)
