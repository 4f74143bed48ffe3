"""The one rule every output of a run follows (video, vault, tracks, run file, stats, images):

* refused if it exists, unless ``--overwrite``;
* written under a hidden temporary name next to the destination, renamed into place only on success;
* on failure or interruption the temporary file is removed, and a failed write is reported as the
  folder's problem ("no space left on DIR", "read-only DIR"), never as an internal error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from faceanon_video.errors import InputError, OutputError, describe_os_error

__all__ = ["AtomicOutput", "refuse_existing", "temporary_path", "write_atomic"]

log = logging.getLogger(__name__)


def temporary_path(destination: Path) -> Path:
    """Hidden sibling of ``destination`` with the same extension (the muxer picks the format from it)."""
    return destination.with_name(f".{destination.stem}.partial-{os.getpid()}{destination.suffix}")


def refuse_existing(destination: str | Path, overwrite: bool) -> None:
    """``InputError`` when ``destination`` exists and may not be replaced, or its folder is missing."""
    path = Path(destination)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (use --overwrite to replace it)")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a file")
    if not path.parent.is_dir():
        raise InputError(f"{path}: output folder does not exist")


class AtomicOutput:
    """A destination path that only appears once the writer says it is complete."""

    def __init__(self, destination: str | Path, overwrite: bool = True) -> None:
        self.destination = Path(destination)
        refuse_existing(self.destination, overwrite)
        self.temp = temporary_path(self.destination)

    def commit(self) -> None:
        try:
            os.replace(self.temp, self.destination)
        except OSError as exc:
            self.discard()
            raise OutputError(describe_os_error(exc, self.destination)) from exc

    def discard(self) -> None:
        """Remove the temporary file. Never raises: it runs while another error is being reported."""
        try:
            self.temp.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", self.temp, exc.strerror or exc)


def write_atomic(destination: str | Path, data: bytes | str, overwrite: bool = True) -> None:
    """Write a small file in one go under the rule above."""
    output = AtomicOutput(destination, overwrite=overwrite)
    try:
        if isinstance(data, str):
            output.temp.write_text(data, encoding="utf-8")
        else:
            output.temp.write_bytes(data)
    except OSError as exc:
        output.discard()
        raise OutputError(describe_os_error(exc, output.destination)) from exc
    except BaseException:
        output.discard()
        raise
    output.commit()
