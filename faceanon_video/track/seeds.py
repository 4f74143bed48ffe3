"""Per-track random seeds derived from a user key, so anonymizers are reproducible but unguessable.

Every track gets ``seed_for(track_id)``: a uint64 from HMAC-SHA256 keyed with an HKDF-derived
subkey of the user's key. Same video + same key -> same track ids -> same seeds, so a re-run
produces the same replacement faces; without the key the seeds cannot be predicted (which matters
when the seed drives a generative anonymizer: a known seed would help reproduce its noise).

>>> seeder = TrackSeeder(b"k" * 32)
>>> seeder.seed_for(1) == TrackSeeder(b"k" * 32).seed_for(1) != seeder.seed_for(2)
True
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import hashes, hmac

from faceanon_video.errors import ConfigError
from faceanon_video.keys import MIN_KEY_BYTES, derive_key, load_key, random_key  # re-exported: keys used to live here

__all__ = ["TrackSeeder", "load_key", "random_key", "MIN_KEY_BYTES"]

# Versioned domain-separation label: changing the derivation must change this string.
_HKDF_INFO = b"faceanon-video/track-seed/v1"


class TrackSeeder:
    """Maps track ids to deterministic uint64 seeds under a secret key.

    HKDF (RFC 5869) first turns the key, which may be a passphrase-like text file, into a uniform
    256-bit subkey; HMAC of the track id under that subkey then gives each track an independent seed.
    HKDF objects are single-use, so the per-id step is HMAC rather than one HKDF per track.
    """

    def __init__(self, key: bytes, info: bytes = _HKDF_INFO) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"track key is {len(key)} bytes; need at least {MIN_KEY_BYTES}")
        # ``info`` separates derivations from one key (track seeds, person seeds: ``people.seeds``).
        self._subkey = derive_key(key, info)
        self._cache: dict[int, int] = {}

    def seed_for_label(self, label: bytes) -> int:
        """The seed of any byte label under this key, an int in [0, 2**64)."""
        mac = hmac.HMAC(self._subkey, hashes.SHA256())
        mac.update(label)
        return int.from_bytes(mac.finalize()[:8], "big")

    def seed_for(self, track_id: int) -> int:
        """The seed of one track, an int in [0, 2**64)."""
        track_id = int(track_id)
        seed = self._cache.get(track_id)
        if seed is None:
            seed = self._cache[track_id] = self.seed_for_label(track_id.to_bytes(8, "big", signed=True))
        return seed

    def seeds_for(self, track_ids: np.ndarray) -> np.ndarray:
        """(n,) uint64 seeds for (n,) track ids."""
        return np.fromiter((self.seed_for(t) for t in track_ids), dtype=np.uint64, count=len(track_ids))
