"""Linking tracks into people: track id -> person id.

Offline (files, the whole video in view): complete-linkage agglomerative clustering of the tracks'
quality-weighted mean embeddings, cut at ``LINK_SIMILARITY`` (``complete_linkage``: hand-written
because importing ``scipy.cluster.hierarchy`` alone costs ~0.4 s CPU, more than clustering a
video's tracks and ~5 % of a short 720p ``--people`` run; it gives scipy's clusters, see its test). Two
tracks that are on screen in the same frame are never one person: their distance is set above any
cut, and since complete linkage scores a group by its *farthest* pair, no group can ever contain
them. Complete linkage is also "when in doubt keep apart": a group holds only tracks that are all
pairwise similar, so one ambiguous track cannot chain two people together (single linkage would).
Tracks without an embedding (too small, too turned, never detected with landmarks) stay alone.

Online (live streams): ``OnlineLinker`` keeps a bounded gallery of recent people (mean embedding,
frames on screen) and gives a new track the person it matches, or a new person; a track's person is
decided from its first embeddings and may be re-decided (moved to a better match) until it has
``settle_after`` of them.

Person ids are 1, 2, ... in order of first appearance, so the same video and tracks give the same
ids on every run (and, through ``seeds.PersonSeeder``, the same seeds).

Threshold: SFace cosine similarity, measured on this project's identity photos (see
``spare.py`` for the numbers): same person 0.55-0.96 (5th percentile 0.63), different people
<= 0.35 (99th percentile 0.29). Track means are less noisy than single photos, but video faces are
smaller and blurrier than photo chips, so the cut sits between the two clouds, nearer the
strangers' side than the published single-pair threshold would put it only by a margin.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from faceanon_video.people.embed import MIN_LINK_WEIGHT, TrackFaces

__all__ = ["LINK_SIMILARITY", "complete_linkage", "link_tracks", "OnlineLinker", "TrackSpan"]

log = logging.getLogger(__name__)

#: Cosine similarity of two tracks' mean embeddings at or above which they may be one person.
LINK_SIMILARITY = 0.45
# Tracks need at least MIN_LINK_WEIGHT total embedding weight (sum of face qualities) to be linked
# at all (``embed``: below it their faces are not even embedded).
_APART = 4.0  # a cosine distance above any cut (cosine distance is at most 2)


@dataclass(frozen=True)
class TrackSpan:
    """What linking needs of a track: when it was on screen and its mean embedding."""

    track_id: int
    first_frame: int
    last_frame: int
    mean: np.ndarray | None
    weight: float = 0.0
    #: Frames the track was on screen in, when known exactly (else first..last is used).
    frames: frozenset[int] | None = None

    @classmethod
    def of(cls, track: TrackFaces) -> TrackSpan:
        return cls(track.track_id, track.first_frame, track.last_frame, track.mean, track.weight)


def _overlap(a: TrackSpan, b: TrackSpan) -> bool:
    if a.frames is not None and b.frames is not None:
        return not a.frames.isdisjoint(b.frames)
    return a.first_frame <= b.last_frame and b.first_frame <= a.last_frame


def link_tracks(tracks: list[TrackSpan] | dict[int, TrackFaces], min_similarity: float = LINK_SIMILARITY) -> dict[int, int]:
    """Track id -> person id (1, 2, ... in order of first appearance) for a whole video."""
    spans = [t if isinstance(t, TrackSpan) else TrackSpan.of(t) for t in (tracks.values() if isinstance(tracks, dict) else tracks)]
    spans.sort(key=lambda t: (t.first_frame, t.track_id))
    linkable = [t for t in spans if t.mean is not None and t.weight >= MIN_LINK_WEIGHT]
    cluster_of: dict[int, int] = {}
    if len(linkable) >= 2:
        means = np.stack([t.mean for t in linkable]).astype(np.float64)
        distance = np.clip(1.0 - means @ means.T, 0.0, 2.0)
        for i in range(len(linkable)):
            for j in range(i + 1, len(linkable)):
                if _overlap(linkable[i], linkable[j]):
                    distance[i, j] = distance[j, i] = _APART
        labels = complete_linkage(distance, 1.0 - min_similarity)
        cluster_of = {t.track_id: int(label) for t, label in zip(linkable, labels)}
    person_of_cluster: dict[int, int] = {}
    result: dict[int, int] = {}
    for t in spans:  # in order of first appearance
        cluster = cluster_of.get(t.track_id)
        if cluster is None:
            result[t.track_id] = len(person_of_cluster) + 1
            person_of_cluster[-t.track_id - 1] = result[t.track_id]  # a singleton's own slot
        else:
            result[t.track_id] = person_of_cluster.setdefault(cluster, len(person_of_cluster) + 1)
    people = len(set(result.values()))
    log.info("linked %d tracks into %d people", len(result), people)
    return result


def complete_linkage(distance: np.ndarray, max_distance: float) -> np.ndarray:
    """A cluster label per row of a symmetric distance matrix: clusters merged closest pair first
    while their complete-linkage distance (that of their farthest members) is <= ``max_distance``;
    what ``fcluster(linkage(..., "complete"), max_distance, "distance")`` gives, up to label names.

    Each row caches its nearest cluster; a merge only moves clusters apart (complete linkage keeps
    the larger distance), so only the rows whose nearest was one of the two merged are rescanned.
    """
    n = len(distance)
    d = np.array(distance, np.float64)
    np.fill_diagonal(d, np.inf)
    labels = np.arange(n)
    nearest = d.argmin(axis=1) if n else np.zeros(0, int)
    nearest_d = d[np.arange(n), nearest] if n else np.zeros(0)
    while n > 1:
        i = int(np.argmin(nearest_d))
        j = int(nearest[i])
        if nearest_d[i] > max_distance:
            break
        d[i] = d[:, i] = np.maximum(d[i], d[j])  # cluster j joins cluster i
        d[i, i] = np.inf
        d[j] = d[:, j] = np.inf
        nearest_d[j] = np.inf
        labels[labels == j] = i
        for k in np.flatnonzero((nearest == i) | (nearest == j) | (np.arange(n) == i)):
            if k != j:
                nearest[k] = int(np.argmin(d[k]))
                nearest_d[k] = d[k, nearest[k]]
    return labels


@dataclass
class _Person:
    person_id: int
    mean: np.ndarray
    weight: float
    on_screen: set[int]  # track ids of this person currently on screen


class OnlineLinker:
    """Track -> person for live streams, with a bounded gallery of the ``capacity`` most recently
    seen people (older ones are forgotten: a person who comes back after that gets a new id).

    Call ``update(track_id, track_faces)`` whenever a track gains an embedding and ``end(track_id)``
    when it ends; ``person_of(track_id)`` gives the current decision (a new person until matched).
    """

    def __init__(self, capacity: int = 64, min_similarity: float = LINK_SIMILARITY, settle_after: int = 3) -> None:
        self.capacity = capacity
        self.min_similarity = min_similarity
        self.settle_after = settle_after
        self._people: OrderedDict[int, _Person] = OrderedDict()
        self._track_person: dict[int, int] = {}
        self._track_contrib: dict[int, tuple[np.ndarray, float]] = {}
        self._settled: set[int] = set()
        self._next_id = 1

    def person_of(self, track_id: int) -> int:
        person = self._track_person.get(track_id)
        if person is None:
            person = self._track_person[track_id] = self._new_person(track_id, None, 0.0)
        return person

    def update(self, track_id: int, track: TrackFaces) -> int:
        current = self.person_of(track_id)
        mean = track.mean
        if mean is None or track_id in self._settled or track.weight < MIN_LINK_WEIGHT:
            return current
        self._withdraw(track_id)
        best, best_similarity = None, self.min_similarity
        for person in self._people.values():
            if person.weight <= 0 or person.on_screen - {track_id}:
                continue  # a person already on screen in another track is someone else
            similarity = float(mean @ person.mean)
            if similarity >= best_similarity:
                best, best_similarity = person, similarity
        if best is None:
            best = self._people[current] if current in self._people and not (self._people[current].on_screen - {track_id}) else None
            if best is None:
                current = self._new_person(track_id, None, 0.0)
                best = self._people[current]
        self._assign(track_id, best, mean, track.weight)
        if len(track.embeddings) >= self.settle_after:
            self._settled.add(track_id)
        return best.person_id

    def end(self, track_id: int) -> None:
        person = self._people.get(self._track_person.get(track_id, -1))
        if person is not None:
            person.on_screen.discard(track_id)
        self._settled.discard(track_id)

    def _new_person(self, track_id: int, mean, weight) -> int:
        person = _Person(self._next_id, np.zeros(0, np.float32) if mean is None else mean, weight, {track_id})
        self._next_id += 1
        self._people[person.person_id] = person
        self._track_person[track_id] = person.person_id
        while len(self._people) > self.capacity:
            oldest = next(iter(self._people))
            self._people.pop(oldest)
        return person.person_id

    def _withdraw(self, track_id: int) -> None:
        """Take back what this track added to its person's mean, before re-deciding."""
        person = self._people.get(self._track_person.get(track_id, -1))
        contrib = self._track_contrib.pop(track_id, None)
        if person is None:
            return
        person.on_screen.discard(track_id)
        if contrib is not None:
            mean, weight = contrib
            rest = person.weight - weight
            if rest > 1e-6:
                person.mean = _unit(person.mean * person.weight - mean * weight)
                person.weight = rest
            else:
                person.mean, person.weight = np.zeros(0, np.float32), 0.0

    def _assign(self, track_id: int, person: _Person, mean: np.ndarray, weight: float) -> None:
        if person.weight > 0:
            person.mean = _unit(person.mean * person.weight + mean * weight)
        else:
            person.mean = mean
        person.weight += weight
        person.on_screen.add(track_id)
        self._track_person[track_id] = person.person_id
        self._track_contrib[track_id] = (mean, weight)
        self._people.move_to_end(person.person_id)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / max(float(np.linalg.norm(x)), 1e-12)).astype(np.float32)
