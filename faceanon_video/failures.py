"""Fail closed per frame, but not for ever: a run whose frames nearly all fail the same way stops.

A frame whose detection, tracking or anonymization raises is obscured whole (``FrameProcessor``).
That is right for a glitch, but when a model fails on every frame (a diffusion model whose CLIP
input size is wrong, a detector that cannot run on this machine), obscuring them all would produce
an all-black video and a run that looks successful. ``FailureWatch`` notices and raises one
``ModelError`` naming the error instead.
"""

from __future__ import annotations

import re
from collections import Counter

from faceanon_video.errors import ModelError

__all__ = ["DamagedFrame", "FailureWatch"]


class DamagedFrame(Exception):
    """The input frame was damaged or missing (``io.decode``): obscured, and not a model failure."""


class FailureWatch:
    """Counts per-frame failures by kind.

    * ``check_early``: the first ``early_frames`` frames all failed the same way -> stop now;
    * ``check_final``: more than ``final_fraction`` of the run's frames failed the same way -> fail
      the run (its outputs are discarded) rather than hand over a mostly black video as a success.
    """

    def __init__(self, early_frames: int = 25, final_fraction: float = 0.5) -> None:
        self.early_frames = early_frames
        self.final_fraction = final_fraction
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self.kinds: Counter[str] = Counter()
        self.first_of_kind: dict[str, str] = {}  # the message users see: the first one, digits intact

    def record(self, exc: BaseException | None) -> None:
        """One frame done: ``exc`` is what obscured it (None: it went through normally)."""
        self.frames += 1
        if exc is not None and not isinstance(exc, DamagedFrame):
            # Numbers (frame indices, sizes) vary between frames; the kind of failure does not.
            kind = f"{type(exc).__name__}: {re.sub(r'[0-9]+', 'N', str(exc))[:200]}"
            self.kinds[kind] += 1
            self.first_of_kind.setdefault(kind, f"{type(exc).__name__}: {str(exc)[:200]}")
        if self.frames == self.early_frames:
            self._raise_if(lambda count: count == self.frames)

    def check_final(self) -> None:
        self._raise_if(lambda count: count > self.final_fraction * self.frames)

    def _raise_if(self, too_many) -> None:
        if not self.kinds:
            return
        kind, count = self.kinds.most_common(1)[0]
        if too_many(count):
            raise ModelError(f"{count} of {self.frames} frames failed the same way, so the run stops instead of blacking them all out: {self.first_of_kind[kind]}")
