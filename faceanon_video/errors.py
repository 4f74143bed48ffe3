"""Errors the user can act on. The CLI prints these as one line and exits non-zero; anything else
is a bug and is shown as one line too, with the traceback only under ``--debug``.

Exit codes of ``faceanon-video`` (README "When something fails"):
"""

#: The run completed and every frame was processed normally.
EXIT_OK = 0
#: The run failed (an output could not be written, a disk filled up, ...) or, with several inputs, some did.
EXIT_FAILED = 1
#: Bad input or settings: fix the command line, the run file or the input file.
EXIT_USER = 2
#: A model is missing, broken or incompatible, or fails on (nearly) every frame.
EXIT_MODEL = 3
#: A live source was down longer than --give-up-after.
EXIT_SOURCE_LOST = 4
#: The run completed and wrote its outputs, but some frames were obscured whole after a failure
#: (detection or anonymization raised, a damaged frame in the input): check the summary line.
EXIT_OBSCURED = 5
#: A bug (an unexpected exception): one line, the traceback with --debug.
EXIT_INTERNAL = 70
#: Ctrl-C or SIGTERM on a file run (128 + SIGINT); unfinished outputs were removed.
EXIT_INTERRUPTED = 130


class FaceanonError(Exception):
    """Base class: a problem with the input, the settings or the environment, not a bug."""

    exit_code = EXIT_FAILED


class InputError(FaceanonError):
    """The input is missing, unreadable, not a video/image, or truncated."""

    exit_code = EXIT_USER


class ConfigError(FaceanonError):
    """Bad settings: an unknown option value, a missing model directory, a wrong key."""

    exit_code = EXIT_USER


class ModelError(FaceanonError):
    """A bundled or user-supplied model is missing, corrupted or incompatible."""

    exit_code = EXIT_MODEL


class SourceLost(FaceanonError):
    """A live source dropped and could not be reopened."""

    exit_code = EXIT_SOURCE_LOST


class OutputError(FaceanonError):
    """An output could not be written: no space left, a read-only or vanished folder."""


def describe_os_error(exc: OSError, path) -> str:
    """One line for a failed write, naming the folder: what the user must fix is there, not in the file."""
    import errno
    from pathlib import Path

    folder = Path(path).parent
    if exc.errno == errno.ENOSPC:
        return f"no space left on {folder}"
    if exc.errno == errno.EROFS:
        return f"read-only {folder}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: cannot write in {folder}"
    if exc.errno == errno.ENOENT:
        # An existing folder that takes no files (/proc, some FUSE mounts) also answers ENOENT.
        return f"cannot create files in {folder}" if folder.is_dir() else f"{folder}: folder does not exist"
    return f"cannot write {path}: {exc.strerror or exc}"
