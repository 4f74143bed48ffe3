"""Face detectors. ``build_detector(name, ...)`` picks one by name."""

from __future__ import annotations

from faceanon_video.detect.base import Detector
from faceanon_video.errors import ConfigError

DETECTORS = ("yunet", "centerface")
#: Score above which each detector reports a face by default (``--thresh`` overrides).
DEFAULT_THRESHOLDS = {"yunet": 0.5, "centerface": 0.3}


def build_detector(name: str = "yunet", threshold: float | None = None, min_face_px: float = 24, tiles: bool = True) -> Detector:
    """A detector by name; ``threshold=None`` uses the detector's own default. ``tiles``: with a
    ``min_face_px``, also look at one enlarged tile of each frame (``detect.tiles``: what makes small
    faces findable at every resolution)."""
    from faceanon_video.testing.faults import inject  # test seam: a no-op unless FACEANON_FAULTS is set

    return inject("detect", _build(name, threshold, min_face_px, tiles))


def _build(name: str, threshold: float | None, min_face_px: float, tiles: bool) -> Detector:
    if tiles and min_face_px > 0:
        from faceanon_video.detect.tiles import TiledDetector

        return TiledDetector(_build(name, threshold, min_face_px, tiles=False), _build(name, threshold, 0, tiles=False), min_face_px=min_face_px)
    kwargs = {"min_face_px": min_face_px}
    if threshold is not None:
        kwargs["threshold"] = threshold
    if name == "yunet":
        from faceanon_video.detect.yunet import YuNetDetector

        return YuNetDetector(**kwargs)
    if name == "centerface":
        from faceanon_video.detect.centerface import CenterFaceDetector

        return CenterFaceDetector(**kwargs)
    raise ConfigError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
