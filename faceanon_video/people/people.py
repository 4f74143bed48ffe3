"""A video's people: tracks linked into persons, their mean embeddings, seeds and gallery ids.

``identify_people(track_faces, gallery)`` is what a file run calls once all tracks are known (the
second pass, before anything is encoded); ``People.seeds_for`` then replaces per-track seeds, and
``People.sidecar`` is what ``--people FILE`` stores for ``verify --face``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceanon_video.people.embed import TrackFaces
from faceanon_video.people.gallery import IdentityGallery, PersonStore, StoredPerson
from faceanon_video.people.link import LINK_SIMILARITY, link_tracks
from faceanon_video.people.seeds import PersonSeeder

__all__ = ["People", "identify_people"]


@dataclass
class People:
    person_of_track: dict[int, int]  # track id -> person id in this video (1, 2, ...)
    means: dict[int, np.ndarray] = field(default_factory=dict)  # person -> unit mean embedding
    weights: dict[int, float] = field(default_factory=dict)
    gallery_ids: dict[int, str] = field(default_factory=dict)  # person -> gallery id (with --gallery)

    def tracks_of(self, person: int) -> list[int]:
        return sorted(t for t, p in self.person_of_track.items() if p == person)

    def seed_label(self, person: int) -> int | str:
        """What a person's seed is derived from: its gallery id when it has one, else its id here."""
        return self.gallery_ids.get(person, person)

    def seeds_for(self, seeder: PersonSeeder, track_ids: np.ndarray) -> np.ndarray:
        labels = {t: self.seed_label(p) for t, p in self.person_of_track.items()}
        return seeder.seeds_for_tracks(track_ids, labels)

    def sidecar(self, info: dict | None = None) -> PersonStore:
        """The people of this video as a ``PersonStore`` (encrypt it with ``write_store``)."""
        persons = [
            StoredPerson(self.gallery_ids.get(p, f"video-{p}"), self.means[p], self.weights[p], self.tracks_of(p), p)
            for p in sorted(self.means)
        ]
        return PersonStore("people", persons, dict(info or {}))


def identify_people(tracks: dict[int, TrackFaces], gallery: IdentityGallery | None = None, min_similarity: float = LINK_SIMILARITY) -> People:
    """Link a whole video's tracks into people and, with a gallery, give them their stored ids."""
    person_of_track = link_tracks(tracks, min_similarity)
    people = People(person_of_track)
    for person in sorted(set(person_of_track.values())):
        members = [tracks[t] for t in people.tracks_of(person) if t in tracks and tracks[t].embeddings]
        if not members:
            continue
        embeddings = np.concatenate([np.stack(m.embeddings) for m in members])
        weights = np.concatenate([m.weights for m in members])
        mean = np.average(embeddings, axis=0, weights=np.maximum(weights, 1e-6))
        people.means[person] = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        people.weights[person] = float(weights.sum())
    if gallery is not None and people.means:
        order = sorted(people.means)
        ids = gallery.resolve([people.means[p] for p in order], [people.weights[p] for p in order])
        people.gallery_ids = dict(zip(order, ids))
    return people
