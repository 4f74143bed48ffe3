"""Encrypted person embeddings: the identity gallery across videos and the per-video people sidecar.

One file format for both (``PersonStore``)::

    b"FAVPPL01" | salt (16 bytes) | nonce (12 bytes) | AES-256-GCM(JSON payload)

The AES key is derived with HKDF-SHA256 from the user's ``--key-file`` and the file's random salt;
the magic and salt are authenticated as associated data. The payload holds, per person, a random id,
a unit SFace embedding (128 float32, base64) and its weight (how much face evidence it averages);
the sidecar adds the person's track ids in the video. Never a face image: the embedding lets whoever
holds the key *check* a face against it (``faceanon-video verify --face``), not draw one.
Without the key the file reveals its size only (about 700 bytes per person). A wrong key or any
changed byte fails GCM's authentication and is refused with one clear error.

``IdentityGallery.resolve`` is one transaction under an exclusive lock on ``FILE.lock`` (``fcntl``:
POSIX only; the standard library has no portable file lock, and the only other candidate,
``filelock``, is not a dependency): read, match the video's people to the stored ones, add the new
ones, write a temporary file next to it and ``os.replace`` it in. Concurrent runs (Ray workers, two
shells) therefore see each other's people and never leave a torn file; a reader without the lock
sees the old or the new file, whole.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from faceanon_video.errors import ConfigError, InputError
from faceanon_video.io.outputs import OutputSet, write_atomic
from faceanon_video.keys import derive_key
from faceanon_video.people.link import LINK_SIMILARITY

__all__ = ["IdentityGallery", "PersonStore", "StoredPerson", "read_store", "write_store", "GALLERY_SIMILARITY"]

log = logging.getLogger(__name__)

MAGIC = b"FAVPPL01"
_SALT, _NONCE = 16, 12
_HKDF_INFO = b"faceanon-video/people-store/v1"
#: A video's person joins a stored one at this similarity of their mean embeddings (as for linking
#: tracks within a video: a wrong match gives two people one fake face).
GALLERY_SIMILARITY = LINK_SIMILARITY
#: Evidence a stored mean keeps at most, so a person's look can drift slowly over years of videos.
MAX_WEIGHT = 50.0


@dataclass
class StoredPerson:
    person_id: str
    embedding: np.ndarray  # (d,) float32, unit
    weight: float
    tracks: list[int] = field(default_factory=list)  # sidecar only: the person's tracks in its video
    label: int | None = None  # sidecar only: the person id within the video (as in --save-tracks)


@dataclass
class PersonStore:
    kind: str  # "gallery" or "people"
    persons: list[StoredPerson] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # sidecar: the video's name and frame count

    def embeddings(self) -> np.ndarray:
        return np.stack([p.embedding for p in self.persons]) if self.persons else np.zeros((0, 128), np.float32)


def _aead(key: bytes, salt: bytes) -> AESGCM:
    return AESGCM(derive_key(key, _HKDF_INFO, salt))


def _encode(store: PersonStore) -> bytes:
    persons = [
        {"id": p.person_id, "embedding": base64.b64encode(np.asarray(p.embedding, "<f4").tobytes()).decode(), "weight": round(float(p.weight), 4),
         **({"tracks": p.tracks, "label": p.label} if store.kind == "people" else {})}
        for p in store.persons
    ]  # fmt: skip
    return json.dumps({"version": 1, "kind": store.kind, "info": store.info, "persons": persons}).encode()


def _decode(payload: bytes) -> PersonStore:
    doc = json.loads(payload)
    persons = [
        StoredPerson(p["id"], np.frombuffer(base64.b64decode(p["embedding"]), "<f4").astype(np.float32), float(p["weight"]), list(p.get("tracks", [])), p.get("label"))
        for p in doc["persons"]
    ]
    return PersonStore(doc["kind"], persons, doc.get("info", {}))


def write_store(path: str | Path, key: bytes, store: PersonStore, outputs: OutputSet | None = None) -> None:
    """Encrypt ``store`` to ``path`` atomically (a temporary file in the same folder, then replace;
    with ``outputs``, replaced with the run's other outputs: ``io.outputs.OutputSet``)."""
    salt, nonce = secrets.token_bytes(_SALT), secrets.token_bytes(_NONCE)
    header = MAGIC + salt
    write_atomic(path, header + nonce + _aead(key, salt).encrypt(nonce, _encode(store), header), outputs=outputs)


def read_store(path: str | Path, key: bytes, kind: str | None = None) -> PersonStore:
    """Decrypt a gallery or people sidecar; ConfigError for a wrong key or a changed file."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(blob) < len(MAGIC) + _SALT + _NONCE + 16 or not blob.startswith(MAGIC):
        raise InputError(f"{path} is not a faceanon-video gallery or people file")
    salt = blob[len(MAGIC) : len(MAGIC) + _SALT]
    nonce = blob[len(MAGIC) + _SALT : len(MAGIC) + _SALT + _NONCE]
    try:
        payload = _aead(key, salt).decrypt(nonce, blob[len(MAGIC) + _SALT + _NONCE :], MAGIC + salt)
    except InvalidTag:
        raise ConfigError(f"{path}: wrong key, or the file was changed (authentication failed); refusing to use it") from None
    store = _decode(payload)
    if kind is not None and store.kind != kind:
        raise InputError(f"{path} is a {store.kind} file, not a {kind} file")
    return store


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl  # POSIX; see module docstring

    try:
        handle = open(str(path) + ".lock", "a+b")
    except OSError as exc:
        raise ConfigError(f"cannot lock {path}: {exc.strerror or exc}") from exc
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def match_people(stored: np.ndarray, query: np.ndarray, min_similarity: float) -> dict[int, int]:
    """query row -> stored row, one to one (Hungarian on cosine similarity), only pairs at or above
    ``min_similarity``: two people of one video never get one stored identity."""
    if not len(stored) or not len(query):
        return {}
    # Imported here: scipy.optimize costs ~0.1-0.2 s of start-up that a --people run without a
    # gallery never needs.
    from scipy.optimize import linear_sum_assignment

    similarity = query @ stored.T
    rows, cols = linear_sum_assignment(-similarity)
    return {int(r): int(c) for r, c in zip(rows, cols) if similarity[r, c] >= min_similarity}


class IdentityGallery:
    """``--gallery FILE``: persistent, encrypted identities shared by every video processed with it."""

    def __init__(self, path: str | Path, key: bytes, min_similarity: float = GALLERY_SIMILARITY) -> None:
        self.path = Path(path)
        self.key = key
        self.min_similarity = min_similarity
        if self.path.exists():
            read_store(self.path, key, kind="gallery")  # fail early on a wrong key, before any work

    def __len__(self) -> int:
        return len(self.load().persons)

    def load(self) -> PersonStore:
        return read_store(self.path, self.key, kind="gallery") if self.path.exists() else PersonStore("gallery")

    def resolve(self, means: list[np.ndarray], weights: list[float]) -> list[str]:
        """Gallery ids for a video's people (their mean embeddings and weights): the stored person
        each matches, or a new one, added to the file. One locked read-modify-write."""
        with _locked(self.path):
            store = self.load()
            query = np.stack(means).astype(np.float32) if means else np.zeros((0, 128), np.float32)
            matched = match_people(store.embeddings(), query, self.min_similarity)
            ids = []
            for row, (mean, weight) in enumerate(zip(query, weights)):
                if row in matched:
                    person = store.persons[matched[row]]
                    total = person.weight + weight
                    merged = person.embedding * person.weight + mean * weight
                    person.embedding = (merged / max(float(np.linalg.norm(merged)), 1e-12)).astype(np.float32)
                    person.weight = min(total, MAX_WEIGHT)
                else:
                    person = StoredPerson(secrets.token_hex(16), mean.astype(np.float32), min(float(weight), MAX_WEIGHT))
                    store.persons.append(person)
                ids.append(person.person_id)
            write_store(self.path, self.key, store)
        log.info("gallery %s: %d of %d people known before, %d now stored", self.path, len(matched), len(means), len(store.persons))
        return ids
