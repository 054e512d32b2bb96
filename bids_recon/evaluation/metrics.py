"""Decoding accuracy metrics (vectorized; tested against loops on tiny data)."""

from __future__ import annotations

import numpy as np


def _row_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows of a and b; NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=1) / denominator, np.nan)


def profile_correlation(decoded: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per unit, correlation across stimuli of decoded and true features: (n_units,)."""
    return _row_correlation(decoded.reshape(len(decoded), -1).T, true.reshape(len(true), -1).T)


def pattern_correlation(
    decoded: np.ndarray,
    true: np.ndarray,
    mean: np.ndarray | None = None,
    sd: np.ndarray | None = None,
) -> np.ndarray:
    """Per stimulus, correlation across units: (n_stimuli,).

    With ``mean`` and ``sd`` (per unit, from the training features) both are z-scored first, so
    that units with large values do not dominate (METHOD.md section 5).
    """
    d = decoded.reshape(len(decoded), -1)
    t = true.reshape(len(true), -1)
    if mean is not None and sd is not None:
        scale = np.where(sd.ravel() > 0, sd.ravel(), 1.0)
        d, t = (d - mean.ravel()) / scale, (t - mean.ravel()) / scale
    return _row_correlation(d, t)
