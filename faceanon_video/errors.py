"""Errors the user can act on. The CLI prints these as one line and exits non-zero; anything else
is a bug and is shown as one line too, with the traceback only under ``--debug``."""


class FaceanonError(Exception):
    """Base class: a problem with the input, the settings or the environment, not a bug."""

    exit_code = 1


class InputError(FaceanonError):
    """The input is missing, unreadable, not a video/image, or truncated."""

    exit_code = 2


class ConfigError(FaceanonError):
    """Bad settings: an unknown option value, a missing model directory, a wrong key."""

    exit_code = 2


class ModelError(FaceanonError):
    """A bundled or user-supplied model is missing, corrupted or incompatible."""

    exit_code = 3


class SourceLost(FaceanonError):
    """A live source dropped and could not be reopened."""

    exit_code = 4
