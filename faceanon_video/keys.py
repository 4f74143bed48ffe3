"""The user's secret key (``--key-file``), or a random one per run.

One key serves every keyed feature: per-track seeds (``track.seeds``), the encrypted face vault
(``vault``) and ``restore`` / ``verify``.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from faceanon_video.errors import ConfigError

__all__ = ["MIN_KEY_BYTES", "derive_key", "load_key", "random_key"]

log = logging.getLogger(__name__)

#: 128 bits: below this a key could be brute-forced from the seeds it produced.
MIN_KEY_BYTES = 16


def random_key() -> bytes:
    """A fresh 256-bit key: seeds then differ from run to run (used when no ``--key-file`` is given)."""
    return secrets.token_bytes(32)


def derive_key(key: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    """A 256-bit subkey of ``key`` for one purpose (HKDF-SHA256, RFC 5869): ``info`` keeps the
    derivations of one user key apart (seeds, vault records, gallery, segment fragments)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def load_key(path: str | Path) -> bytes:
    """Read a key file: raw bytes, or text (e.g. ``openssl rand -hex 32 > key``).

    Surrounding whitespace is stripped from text files only, so an editor's trailing newline does not
    silently change every seed; binary files are used byte for byte.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    try:
        raw.decode("ascii")
        key = raw.strip()
    except UnicodeDecodeError:
        key = raw
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"key file {path} holds {len(key)} bytes; need at least {MIN_KEY_BYTES}")
    log.debug("loaded %d-byte track key from %s", len(key), path)
    return key
