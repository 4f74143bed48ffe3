"""``--save-tracks FILE.jsonl``: one JSON line per frame with every track the anonymizer was given.

Line format (keys are stable; readers should ignore keys they do not know)::

    {"frame": 12, "pts_s": 0.48, "tracks": [
        {"id": 3, "xyxy": [x0, y0, x1, y1], "landmarks": [[x, y] x 5] | null,
         "score": 0.91, "detected": true}]}

With ``--people`` / ``--gallery`` the file ends with one more line, the person of every track
(``people.people.identify_people``; the same person id for one person's tracks across exits and cuts)::

    {"people": [{"track": 3, "person": 1}, ...]}

``detected`` is false where the box was predicted by the motion model (the detector missed the face or
did not run on that frame); ``score`` is then the track's last detection score. Seeds are left out on
purpose: they are secret-keyed and the file is meant to be shareable. A line is written for every
frame, with an empty list when there were no faces, so frame gaps in the file mean dropped frames.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceanon_video.errors import InputError, OutputError, describe_os_error
from faceanon_video.io.outputs import AtomicOutput
from faceanon_video.types import Detections

__all__ = ["TrackWriter", "TrackRecord", "read_tracks", "tracks_path_for"]

log = logging.getLogger(__name__)

# Sub-pixel precision is noise for a mask; 2 decimals keeps lines short and diffable.
_DECIMALS = 2


def _round(a: np.ndarray) -> list:
    return np.round(a.astype(np.float64), _DECIMALS).tolist()


class TrackWriter:
    """Writes one JSON line per frame; use as a context manager or call ``close()``.

    >>> import io, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.jsonl")
    >>> with TrackWriter(path) as w:
    ...     w.write(0, 0.0, Detections(xyxy=[[1, 2, 3, 4]], score=[0.9], track_id=[1], predicted=[False]))
    >>> read_tracks(path)[0].faces.track_id.tolist()
    [1]
    """

    def __init__(self, path: str | Path, overwrite: bool = True) -> None:
        self.path = Path(path)
        # Like every output: a temporary name until the run succeeds (see io.outputs).
        self.output = AtomicOutput(self.path, overwrite=overwrite)
        try:
            self._file = self.output.temp.open("w", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"tracks file {self.path}: {describe_os_error(exc, self.path)}") from exc
        self.lines = 0

    def write(self, frame_index: int, pts_s: float | None, faces: Detections) -> None:
        n = len(faces)
        ids = faces.track_id if faces.track_id is not None else np.full(n, -1, np.int64)
        predicted = faces.predicted if faces.predicted is not None else np.zeros(n, bool)
        known = faces.has_landmarks
        tracks = [
            {
                "id": int(ids[i]),
                "xyxy": _round(faces.xyxy[i]),
                "landmarks": _round(faces.landmarks[i]) if known[i] else None,
                "score": round(float(faces.score[i]), 4),
                "detected": not bool(predicted[i]),
            }
            for i in range(n)
        ]
        pts = None if pts_s is None else round(float(pts_s), 6)
        try:
            self._file.write(json.dumps({"frame": int(frame_index), "pts_s": pts, "tracks": tracks}) + "\n")
        except OSError as exc:
            raise OutputError(f"tracks file {self.path}: {describe_os_error(exc, self.path)}") from exc
        self.lines += 1

    def write_people(self, person_of_track: dict[int, int]) -> None:
        """The last line: track id -> person id in this video."""
        rows = [{"track": int(t), "person": int(p)} for t, p in sorted(person_of_track.items())]
        try:
            self._file.write(json.dumps({"people": rows}) + "\n")
        except OSError as exc:
            raise OutputError(f"tracks file {self.path}: {describe_os_error(exc, self.path)}") from exc

    def close(self, success: bool = True) -> None:
        """With ``success``, put the file in place; otherwise remove it (never raises then)."""
        if self._file.closed:
            return
        try:
            self._file.close()
        except OSError as exc:
            self.output.discard()
            if success:
                raise OutputError(f"tracks file {self.path}: {describe_os_error(exc, self.path)}") from exc
            return
        if not success:
            self.output.discard()
            return
        self.output.commit()
        log.info("wrote %d frames of tracks to %s", self.lines, self.path)

    def __enter__(self) -> TrackWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(success=exc_type is None)


def tracks_path_for(save_tracks: str | Path, source: str | Path, suffix: str = ".tracks.jsonl") -> Path:
    """Where one input's tracks (or other per-input sidecar) go: ``save_tracks`` itself, or
    ``STEM{suffix}`` inside it when it is an existing folder (several inputs), or with ``{stem}``
    replaced by the input's name."""
    target = Path(save_tracks)
    stem = Path(str(source)).stem or "stream"
    if target.is_dir():
        return target / f"{stem}{suffix}"
    if str(save_tracks).endswith(("/", os.sep)):  # Path drops the "/": a folder would become a file of its name
        from faceanon_video.errors import ConfigError

        raise ConfigError(f"{save_tracks}: folder does not exist")
    if "{stem}" in target.name:
        return target.with_name(target.name.replace("{stem}", stem))
    return target


@dataclass(frozen=True)
class TrackRecord:
    frame_index: int
    pts_s: float | None
    faces: Detections


def read_tracks(path: str | Path) -> list[TrackRecord]:
    """Parse a ``--save-tracks`` file back into per-frame ``Detections`` (``seed`` is None)."""
    path = Path(path)
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read tracks file {path}: {exc.strerror or exc}") from exc
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "people" in row and "frame" not in row:
                continue  # the closing line of person ids (see the module docstring)
            tracks = row["tracks"]
            nan5 = [[np.nan, np.nan]] * 5
            faces = Detections(
                xyxy=np.array([t["xyxy"] for t in tracks], np.float32).reshape(-1, 4),
                score=[t["score"] for t in tracks],
                landmarks=np.array([t["landmarks"] or nan5 for t in tracks], np.float32).reshape(-1, 5, 2),
                track_id=[t["id"] for t in tracks],
                predicted=[not t["detected"] for t in tracks],
            )
            records.append(TrackRecord(int(row["frame"]), row.get("pts_s"), faces))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}:{line_no}: not a tracks line ({exc})") from exc
    return records
