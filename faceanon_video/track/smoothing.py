"""Temporal smoothing of boxes and landmarks, and mask growth with motion.

Raw detector boxes jitter by a few pixels from frame to frame, which makes a blur or a replacement
face visibly wobble. Smoothing removes the jitter but adds lag, and lag uncovers the leading edge of
a moving face. The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) trades the two adaptively: a
low cutoff when the face is still (no jitter), a high one when it moves (little lag). Whatever lag is
left is covered by growing the box in proportion to the face's speed and, while a track coasts
without detections, to the motion model's position uncertainty.

All functions work on whole arrays (one row per track) so the tracker stays well under 1 ms/frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OneEuro", "motion_pad", "hold_pad", "pad_boxes", "move_landmarks"]


def _alpha(cutoff_per_frame: np.ndarray | float) -> np.ndarray:
    # Smoothing factor of a first-order low-pass filter sampled once per frame.
    tau = 1.0 / (2.0 * np.pi * np.asarray(cutoff_per_frame))
    return 1.0 / (1.0 + tau)


@dataclass(frozen=True)
class OneEuro:
    """Vectorised One-Euro filter with speeds measured in face heights per frame.

    Normalising speed by the face's height makes one ``beta`` work for 20 px and 400 px faces alike.
    Rates are per frame rather than per second so a setting means the same at any frame rate of a
    given motion-per-frame.

    >>> f = OneEuro(min_cutoff=0.05, beta=5.0)
    >>> x = np.array([[10.0]]); state = f.start(x)
    >>> y, state = f.step(np.array([[12.0]]), state, scale=np.array([40.0]))
    >>> bool(10.0 < y[0, 0] < 12.0)
    True
    """

    #: Cutoff (cycles/frame) when the face is still. Lower = steadier mask, but slower to follow a
    #: face that starts moving (the motion growth then has to cover more lag).
    min_cutoff: float = 0.03
    #: How fast the cutoff rises with speed (per face-height/frame). Higher = less lag on moving faces,
    #: more jitter passes through while they move.
    beta: float = 2.0
    #: Cutoff (cycles/frame) of the speed estimate itself.
    d_cutoff: float = 0.3

    def start(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Initial state for new rows: the first sample, zero speed."""
        return x.copy(), np.zeros_like(x)

    def step(
        self, x: np.ndarray, state: tuple[np.ndarray, np.ndarray], scale: np.ndarray
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Filter one sample per row. ``x`` is (n, ...); ``scale`` (n,) is the face height in px.

        Rows whose previous value is NaN (e.g. landmarks that were unknown) restart from ``x``; rows
        whose new value is NaN keep NaN and reset.
        """
        x_prev, dx_prev = state
        extra = (1,) * (x.ndim - 1)
        scale = np.maximum(scale, 1.0).reshape(-1, *extra)
        fresh = np.isnan(x_prev)
        x_prev = np.where(fresh, x, x_prev)
        dx_prev = np.where(fresh, 0.0, dx_prev)
        dx = (x - x_prev) / scale
        dx_hat = dx_prev + _alpha(self.d_cutoff) * (dx - dx_prev)
        # One cutoff per row (the fastest coordinate decides) so a box's corners move together.
        speed = np.nanmax(np.abs(dx_hat).reshape(len(x), -1), axis=1, initial=0.0).reshape(-1, *extra)
        a = _alpha(self.min_cutoff + self.beta * speed)
        x_hat = x_prev + a * (x - x_prev)
        return x_hat, (x_hat, dx_hat)


def motion_pad(
    xyxy: np.ndarray,
    velocity_xy: np.ndarray,
    sigma_xy: np.ndarray,
    motion_lead: float,
    sigma_k: float,
    max_growth: float,
) -> np.ndarray:
    """(n, 2) per-side padding in x and y: ``motion_lead`` frames of speed plus ``sigma_k`` position
    standard deviations, capped at ``max_growth`` times the box size so a long-coasting track cannot
    swallow the frame.

    Padding is symmetric: a face can reverse or stop as easily as it speeds up, and an uncovered
    face costs far more than a slightly larger blur.
    """
    size = xyxy[:, 2:] - xyxy[:, :2]
    pad = motion_lead * np.abs(velocity_xy) + sigma_k * sigma_xy
    return np.minimum(pad, max_growth * size)


def hold_pad(pad: np.ndarray, previous: np.ndarray, decay: float) -> np.ndarray:
    """Padding that rises at once but falls by at most ``decay`` per frame (a peak-hold envelope).

    Speed estimates are noisy; padding that followed them frame by frame would make the mask
    breathe. Rising at once keeps the privacy guarantee; falling slowly removes the jitter.
    """
    return np.maximum(pad, decay * previous)


def pad_boxes(xyxy: np.ndarray, pad: np.ndarray) -> np.ndarray:
    return np.concatenate([xyxy[:, :2] - pad, xyxy[:, 2:] + pad], axis=1).astype(np.float32)


def move_landmarks(landmarks: np.ndarray, old_xyxy: np.ndarray, new_xyxy: np.ndarray) -> np.ndarray:
    """Carry (n, 5, 2) landmarks along when a box moves and scales (used while coasting)."""
    old_size = np.maximum(old_xyxy[:, 2:] - old_xyxy[:, :2], 1e-3)
    scale = (new_xyxy[:, 2:] - new_xyxy[:, :2]) / old_size
    return ((landmarks - old_xyxy[:, None, :2]) * scale[:, None, :] + new_xyxy[:, None, :2]).astype(np.float32)
