"""The one rule every output of a run follows (video, vault, tracks, run file, stats, images):

* refused if it exists, unless ``--overwrite``;
* written under a hidden temporary name next to the destination, renamed into place only on success;
* on failure or interruption the temporary file is removed, and a failed write is reported as the
  folder's problem ("no space left on DIR", "read-only DIR"), never as an internal error;
* the outputs of one input (video, vault, tracks, people sidecar, reports, plan) form one ``OutputSet``:
  each is written in full under its temporary name, and only when all of them are complete are they
  renamed into place, one after the other; a run that fails anywhere leaves none of them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path

from faceanon_video.errors import ConfigError, InputError, OutputError, describe_os_error

__all__ = ["AtomicOutput", "OutputSet", "refuse_clashes", "refuse_existing", "refuse_unwritable", "temporary_path", "with_output_set", "write_atomic"]

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


def refuse_clashes(outputs: list[tuple[str, Path]], inputs: list[tuple[str, Path]]) -> None:
    """Refuse (before any work, even with ``--overwrite``) an output that is one of the run's inputs
    (the video, the key...: it would be replaced) and one path given for two outputs (their writers
    would share one temporary file). ``outputs``/``inputs``: (option name, path) pairs."""
    seen: dict[Path, str] = {}
    for option, path in outputs:
        for input_option, input_path in inputs:
            if _same_file(path, input_path):
                what = "the input" if input_option.startswith("INPUT") else f"the {input_option} file"
                raise InputError(f"{path}: {option} names {what}; refusing to overwrite it")
        where = Path(os.path.realpath(path))
        if where in seen:
            raise ConfigError(f"{path}: given for both {seen[where]} and {option}; give each output its own file")
        seen[where] = option


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path after symlinks, or hard links of one file."""
    try:
        return os.path.realpath(a) == os.path.realpath(b) or os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): different files
        return False


def refuse_unwritable(destination: str | Path) -> None:
    """``OutputError`` when ``destination``'s folder takes no files (read-only, /proc): found before
    any work rather than after the video is encoded. A missing folder is ``refuse_existing``'s."""
    folder = Path(destination).parent
    if not folder.is_dir():
        return
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".faceanon-check-"):
            pass
    except OSError as exc:
        raise OutputError(describe_os_error(exc, Path(destination))) from exc


class AtomicOutput:
    """A destination path that only appears once the writer says it is complete."""

    def __init__(self, destination: str | Path, overwrite: bool = True) -> None:
        self.destination = Path(destination)
        refuse_existing(self.destination, overwrite)
        # A destination that is not there now is never replaced at the end: another run (same -o,
        # started at the same time) may have written it meanwhile (``_move_into_place``).
        self.existed = os.path.lexists(self.destination)
        self.temp = temporary_path(self.destination)
        self.group: OutputSet | None = None  # set by OutputSet.add: the set renames it, with the others
        self.complete = False

    def commit(self) -> None:
        """The temporary file is complete: rename it into place, or, when the output belongs to an
        ``OutputSet``, leave that to the set (``OutputSet.commit`` renames all of them together)."""
        self.complete = True
        if self.group is not None:
            return
        try:
            _move_into_place(self)
        except OSError as exc:
            self.discard()
            raise OutputError(describe_os_error(exc, self.destination)) from exc
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Remove the temporary file. Never raises: it runs while another error is being reported."""
        _remove(self.temp)


def write_atomic(destination: str | Path, data: bytes | str, overwrite: bool = True, outputs: OutputSet | None = None) -> None:
    """Write a small file in one go under the rule above (with ``outputs``: renamed by that set)."""
    output = AtomicOutput(destination, overwrite=overwrite)
    if outputs is not None:
        outputs.add(output)
    try:
        with open(output.temp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename: a crash then leaves the old file or the new one
    except OSError as exc:
        output.discard()
        raise OutputError(describe_os_error(exc, output.destination)) from exc
    except BaseException:
        output.discard()
        raise
    output.commit()


class OutputSet:
    """The outputs of one input, committed together: nothing appears at any destination unless every
    one of them was written in full.

    ``add`` an ``AtomicOutput`` or a writer (``VideoWriter``, ``VaultWriter``, ``TrackWriter``: each
    owns one as ``.output``; ``write_atomic(..., outputs=)`` adds its own). The writers complete
    their files as usual (``close(success=True)``, which then only marks the output complete);
    ``commit`` renames them all. As a context manager: committed when the block succeeds, every
    temporary file removed when it fails.

    What is guaranteed: a failure while any output is being written (disk full, a writer's error,
    Ctrl-C) leaves every destination as it was. A rename that fails during ``commit`` (rare: the
    folder changed under the run) puts back the outputs already renamed: removed when they were new,
    the user's previous file restored when ``--overwrite`` replaced one (it is kept under a hidden
    ``.NAME.previous-PID`` name until the set is complete). What is not: a crash of the machine or
    a SIGKILL in the middle of ``commit``'s renames (milliseconds) can leave some outputs new, some
    old, and a ``.previous-`` file beside them.
    """

    def __init__(self) -> None:
        self.outputs: list[AtomicOutput] = []

    def add(self, item):
        """Add an ``AtomicOutput``, or a writer that owns one as ``.output``; returns ``item``."""
        output: AtomicOutput = getattr(item, "output", item)
        output.group = self
        self.outputs.append(output)
        return item

    def commit(self) -> None:
        """Rename every output into place, in the order added; all or none (see the class)."""
        incomplete = [o.destination for o in self.outputs if not o.complete]
        if incomplete:
            self.discard()
            raise RuntimeError(f"{incomplete[0]}: committed before it was complete")
        with _signals_deferred():
            self._rename_all()

    def _rename_all(self) -> None:
        renamed: list[tuple[AtomicOutput, Path | None]] = []  # with the user's previous file, if any
        for output in self.outputs:
            # The last rename needs no way back: when it fails, nothing of it changed.
            keep_previous = output.existed and output is not self.outputs[-1] and output.destination.exists()
            previous = _previous_path(output.destination) if keep_previous else None
            try:
                if previous is not None:
                    os.replace(output.destination, previous)
                _move_into_place(output)
            except BaseException as exc:
                if previous is not None and previous.exists():
                    renamed.append((output, previous))  # moved aside but not replaced: put it back too
                _roll_back(renamed)
                self.discard()
                if isinstance(exc, OSError):
                    raise OutputError(describe_os_error(exc, output.destination)) from exc
                raise
            renamed.append((output, previous))
        for _, previous in renamed:
            if previous is not None:
                _remove(previous)
        self.outputs = []

    def discard(self) -> None:
        """Remove every temporary file of the set. Never raises."""
        for output in self.outputs:
            output.discard()
        self.outputs = []

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def with_output_set(run):
    """Give ``run`` (a function with an ``outputs`` keyword) an ``OutputSet``: the caller's, which
    the caller commits, or, when it passes none, a new one committed when ``run`` returns and
    discarded when it raises. A run that calls another (a plan render calls ``process_video``)
    passes its set on, so all the outputs of one input are committed together, once."""

    @functools.wraps(run)
    def wrapper(*args, outputs: OutputSet | None = None, **kwargs):
        if outputs is not None:
            return run(*args, outputs=outputs, **kwargs)
        with OutputSet() as own:
            return run(*args, outputs=own, **kwargs)

    return wrapper


def _move_into_place(output: AtomicOutput) -> None:
    """Rename ``output``'s temporary file to its destination; one that did not exist when the output
    was opened is linked into place instead, which fails rather than replace a file another run
    created meanwhile (``OutputError``: nothing of this run's is kept, the other's file stays)."""
    if output.existed:
        os.replace(output.temp, output.destination)
        return
    try:
        os.link(output.temp, output.destination)
    except FileExistsError:
        raise OutputError(f"{output.destination}: written by another run meanwhile (the same output?); this run's outputs were not kept") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise
        os.replace(output.temp, output.destination)  # no hard links here (FAT, some network file systems)
        return
    _remove(output.temp)


@contextlib.contextmanager
def _signals_deferred():
    """Ctrl-C and SIGTERM (a ``KeyboardInterrupt``: cli) wait until the block is done, then arrive.
    Raised between two renames, or just after the last, it would leave the set half old, half new
    (an interrupt after a rename cannot be told from a failed rename). Only the main thread can set
    handlers; elsewhere (Ray workers...) the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda signum, _frame: received.append(signum)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in received[:1]:
            signal.raise_signal(signum)  # to the handler the run had: KeyboardInterrupt, a live run's own


def _previous_path(destination: Path) -> Path:
    return destination.with_name(f".{destination.stem}.previous-{os.getpid()}{destination.suffix}")


def _roll_back(renamed: list[tuple[AtomicOutput, Path | None]]) -> None:
    """Undo ``OutputSet.commit``'s renames so far: the previous file back, or the new one removed. Never raises."""
    for output, previous in reversed(renamed):
        try:
            if previous is not None:
                os.replace(previous, output.destination)
            else:
                output.destination.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not put back %s: %s", output.destination, exc.strerror or exc)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        if not os.path.lexists(path):  # never created: a read-only folder answers EROFS, not ENOENT
            return
        log.warning("could not remove %s: %s", path, exc.strerror or exc)
