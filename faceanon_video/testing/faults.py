"""Fault injection: the documented test seam for fail-closed tests (issue 14).

Set ``FACEANON_FAULTS`` and every detector built by ``detect.build_detector`` (full-frame passes,
re-detection around tracks, the look-back of held frames, shot-change passes) and every anonymizer
built by ``pipeline.build_anonymizer`` raises ``InjectedFault`` when its rule says so. Unset (the
normal case), nothing is wrapped and nothing costs anything. Faults can only make frames fail, and a
failed frame is obscured, so the variable cannot make the tool leak a face: it can only show that
the tool does not.

    FACEANON_FAULTS="detect:calls=40-120"          detector calls 40..120 (counted from 0, all detectors) raise
    FACEANON_FAULTS="detect:every=3"               every 3rd detector call raises
    FACEANON_FAULTS="detect:all;anonymize:frames=10-20"   every detector call; the anonymizer on frames 10..20

    FACEANON_FAULTS="segment:frames=100-100"       the segment (``--jobs``) writing frame 100 fails whole

Rules: ``all``, ``calls=A-B`` and ``every=K`` (by call, counted per process and stage across threads),
``frames=A-B`` (by ``Frame.index``; calls given a bare image, such as re-detection crops, do not fail).
``reset()`` restarts the call counts (tests running several runs in one process).
"""

from __future__ import annotations

import os
import threading
from collections import Counter

from faceanon_video.errors import ConfigError

__all__ = ["ENV", "InjectedFault", "inject", "reset"]

ENV = "FACEANON_FAULTS"
STAGES = ("detect", "anonymize", "segment")
_calls: Counter[str] = Counter()
_lock = threading.Lock()


class InjectedFault(RuntimeError):
    """Raised by a stage whose ``FACEANON_FAULTS`` rule fires."""


def reset() -> None:
    with _lock:
        _calls.clear()


def _rules(spec: str) -> dict[str, tuple[str, int, int]]:
    rules = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        stage, _, rule = part.partition(":")
        kind, _, value = rule.partition("=")
        try:
            if stage not in STAGES or kind not in ("all", "calls", "every", "frames"):
                raise ValueError(part)
            if kind == "all":
                rules[stage] = ("all", 0, 0)
            elif kind == "every":
                rules[stage] = ("every", int(value), 0)
            else:
                low, _, high = value.partition("-")
                rules[stage] = (kind, int(low), int(high or low))
        except ValueError as exc:
            raise ConfigError(f"{ENV}={spec!r}: cannot read {part!r} (see faceanon_video/testing/faults.py)") from exc
    return rules


def _fires(stage: str, rule: tuple[str, int, int], frame_index: int | None) -> bool:
    kind, a, b = rule
    if kind == "frames":
        return frame_index is not None and a <= frame_index <= b
    with _lock:
        call = _calls[stage]
        _calls[stage] += 1
    return kind == "all" or (kind == "calls" and a <= call <= b) or (kind == "every" and a > 0 and call % a == a - 1)


class _Faulty:
    """Wraps a detector (``detect``) or an anonymizer (``apply``); everything else passes through."""

    def __init__(self, inner, stage: str, rule: tuple[str, int, int]) -> None:
        self._inner = inner
        self._stage = stage
        self._rule = rule

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def _check(self, image) -> None:
        if _fires(self._stage, self._rule, getattr(image, "index", None)):
            raise InjectedFault(f"injected {self._stage} fault ({ENV})")

    def detect(self, image):
        self._check(image)
        return self._inner.detect(image)

    def apply(self, frame, faces):
        self._check(frame)
        return self._inner.apply(frame, faces)


def inject(stage: str, inner):
    """``inner`` itself, or wrapped to fail as ``FACEANON_FAULTS`` says for ``stage``."""
    spec = os.environ.get(ENV)
    if not spec:
        return inner
    rule = _rules(spec).get(stage)
    return inner if rule is None else _Faulty(inner, stage, rule)


def segment_fault(first_index: int, last_index: int) -> None:
    """Raise ``InjectedFault`` in a segment-parallel worker (``segments``) whose frames
    ``first_index..last_index`` meet a ``segment:frames=A-B`` rule (``segment:all``: every segment)."""
    spec = os.environ.get(ENV)
    rule = _rules(spec).get("segment") if spec else None
    if rule is None:
        return
    kind, a, b = rule
    if kind == "all" or (kind == "frames" and a <= last_index and first_index <= b):
        raise InjectedFault(f"injected segment fault ({ENV})")
