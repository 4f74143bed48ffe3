"""Constant-velocity Kalman filter for face boxes, batched over all tracks.

State per track: ``[cx, cy, w, h, vcx, vcy, vw, vh]`` in pixels and pixels/frame; measurement:
``[cx, cy, w, h]``. Noise is proportional to the box size (as in SORT/ByteTrack/BoT-SORT), so one
setting suits small and large faces.

Why hand-written rather than filterpy: filterpy's ``KalmanFilter`` holds one object per track and
steps each in Python (tens of microseconds per call), is unmaintained since 2018 and is not
installed here. Stacking every track's mean (n, 8) and covariance (n, 8, 8) lets one ``matmul`` and
one batched ``solve`` serve all tracks, which keeps a 10-face update far below 1 ms. The equations
are the textbook ones (Kalman 1960; notation of Welch & Bishop, "An Introduction to the Kalman
Filter"), ~40 lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BoxKalman", "xyxy_to_cxcywh", "cxcywh_to_xyxy"]

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)  # position += velocity (dt = 1 frame)


def xyxy_to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, np.float64)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    return np.concatenate([xyxy[:, :2] + wh / 2, wh], axis=1)


def cxcywh_to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = cxcywh[:, 2:4] / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)


@dataclass(frozen=True)
class BoxKalman:
    """Batched predict/update on arrays of means (n, 8) and covariances (n, 8, 8)."""

    #: Process noise of position, as a fraction of box size per frame. Higher = follows sudden moves
    #: sooner, but coasting boxes grow faster and association gets looser.
    std_position: float = 1 / 20
    #: Process noise of velocity (fraction of box size per frame^2). Higher = adapts to acceleration
    #: sooner, noisier velocity (and hence noisier motion growth).
    std_velocity: float = 1 / 40
    #: Measurement noise (fraction of box size). Higher = smoother boxes, more lag.
    std_measurement: float = 1 / 20

    @staticmethod
    def _scaled(cxcywh: np.ndarray, std: float) -> np.ndarray:
        return std * cxcywh[:, [2, 3, 2, 3]]  # x-like terms scale with width, y-like with height

    def initiate(self, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = xyxy_to_cxcywh(xyxy)
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        # Unknown initial velocity: wide prior so the second detection sets it almost alone.
        std = np.concatenate([self._scaled(z, 2 * self.std_position), self._scaled(z, 10 * self.std_velocity)], axis=1)
        return mean, _diag(std**2)

    def predict(self, mean: np.ndarray, cov: np.ndarray, freeze_size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead. ``freeze_size`` (n,) bool zeroes the size velocity of coasting tracks:
        without measurements a shrinking-box trend would otherwise run on until the box vanishes."""
        mean = mean.copy()
        mean[freeze_size, 6:] = 0.0
        q = np.concatenate([self._scaled(mean, self.std_position), self._scaled(mean, self.std_velocity)], axis=1)
        mean = mean @ _F.T
        cov = _F @ cov @ _F.T + _diag(q**2)
        return mean, cov

    def update(self, mean: np.ndarray, cov: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = xyxy_to_cxcywh(xyxy)
        r = self._scaled(mean, self.std_measurement)
        s = cov[:, :4, :4] + _diag(r**2)  # innovation covariance (H P H^T + R), H = [I 0]
        ph_t = cov[:, :, :4]  # P H^T
        gain = np.linalg.solve(s, ph_t.transpose(0, 2, 1)).transpose(0, 2, 1)  # K = P H^T S^-1 (S symmetric)
        mean = mean + (gain @ (z - mean[:, :4])[:, :, None])[:, :, 0]
        cov = cov - gain @ cov[:, :4, :]
        return mean, cov


def _diag(values: np.ndarray) -> np.ndarray:
    """(n, k) -> (n, k, k) diagonal matrices."""
    return values[:, :, None] * _EYE[values.shape[-1]]


_EYE = {4: np.eye(4), 8: np.eye(8)}
