"""Per-person seeds: seed = HMAC(HKDF(key, "person-seed"), person label), in place of the track id.

A person's label is its id within the video (``link.link_tracks``: 1, 2, ... in order of first
appearance, so the same video and key give the same seeds) or, with ``--gallery``, the gallery's
random id of that person (``gallery.IdentityGallery``), so the same person gets the same seed, and
a seeded anonymizer the same fake face, in every video processed with that key and gallery: the
key-driven virtual identity of KFAAR (Wang et al., arXiv 2409.03434). Another key gives other seeds
for the same people, and the seeds reveal nothing of the key.
"""

from __future__ import annotations

import numpy as np

from faceanon_video.track.seeds import TrackSeeder

__all__ = ["PersonSeeder"]

# Versioned domain separation from the per-track seeds of the same key.
_HKDF_INFO = b"faceanon-video/person-seed/v1"


class PersonSeeder:
    """Person -> uint64 seed under a secret key.

    >>> s = PersonSeeder(b"k" * 32)
    >>> s.seed_for(1) == PersonSeeder(b"k" * 32).seed_for(1) != s.seed_for(2)
    True
    >>> s.seed_for("3f2a") != s.seed_for(1)
    True
    """

    def __init__(self, key: bytes) -> None:
        self._seeder = TrackSeeder(key, info=_HKDF_INFO)
        self._cache: dict[int | str, int] = {}

    def seed_for(self, person: int | str) -> int:
        """An int person id (within one video) or a str gallery id (across videos)."""
        seed = self._cache.get(person)
        if seed is None:
            label = b"video:%d" % person if isinstance(person, (int, np.integer)) else b"gallery:" + str(person).encode()
            seed = self._cache[person] = self._seeder.seed_for_label(label)
        return seed

    def seed_for_region(self, region_id: int) -> int:
        """A reviewer's manual region of a plan (``faceanon_video.plan``): a seed of its own."""
        return self._seeder.seed_for_label(b"region:%d" % int(region_id))

    def seeds_for_tracks(self, track_ids: np.ndarray, person_of_track: dict[int, int | str]) -> np.ndarray:
        """(n,) uint64 seeds for (n,) track ids through their persons (a track without a person
        keeps a seed of its own, in a label space no person uses)."""
        out = np.empty(len(track_ids), np.uint64)
        for i, track in enumerate(np.asarray(track_ids).tolist()):
            person = person_of_track.get(track)
            out[i] = self.seed_for(person) if person is not None else self._seeder.seed_for_label(b"track:%d" % track)
        return out
