"""From BOLD runs to samples: per-run cleaning, haemodynamic shift, block averaging.

Pure functions on arrays (time × voxels); the samples workflow streams runs through them one
at a time. docs/method.md §1 gives the defaults (linear detrend, per-run z-score, 4-s shift,
average of the volumes inside each block, test repetitions averaged).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nilearn.signal import clean


def detrend_linear(series: np.ndarray) -> np.ndarray:
    """Remove each voxel's least-squares line over time, keeping its mean."""
    t = np.arange(len(series), dtype=np.float64)
    t -= t.mean()
    slope = (t @ (series - series.mean(axis=0))) / max(t @ t, 1e-12)
    return series - np.outer(t, slope)


def clean_run(
    series: np.ndarray,
    tr: float,
    detrend: str = "linear",
    high_pass: float = 0.01,
    normalize: str = "zscore",
    baseline_volumes: int = 0,
    confounds: np.ndarray | None = None,
) -> np.ndarray:
    """Clean one run: detrend (or high-pass), regress confounds, normalize per voxel.

    Parameters
    ----------
    series : ndarray, shape (n_volumes, n_voxels)
        BOLD time series of one run.
    tr : float
        Repetition time in seconds.
    detrend : {"linear", "highpass"}
        Remove a linear trend, or high-pass filter at ``high_pass`` Hz (cosine drift basis).
    normalize : {"zscore", "psc"}
        z-score each voxel over the run, or percent signal change relative to the mean of the
        first ``baseline_volumes`` volumes (the initial rest).
    confounds : ndarray, shape (n_volumes, n_confounds), optional
        Nuisance regressors (e.g. fMRIPrep motion parameters) to regress out.

    Returns
    -------
    ndarray, shape (n_volumes, n_voxels)
        Voxels constant over the run are 0.
    """
    series = np.asarray(series, dtype=np.float64)
    mean = series.mean(axis=0)
    centred = detrend_linear(series) - mean if detrend == "linear" else series - mean
    if confounds is not None or detrend == "highpass":
        centred = clean(
            centred,
            detrend=False,
            standardize=None,
            confounds=confounds,
            high_pass=high_pass if detrend == "highpass" else None,
            t_r=tr,
            filter="cosine" if detrend == "highpass" else False,
        )
    cleaned = centred + mean
    if normalize == "zscore":
        sd = cleaned.std(axis=0)
        return np.where(sd > 0, (cleaned - cleaned.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)
    n_base = max(1, min(baseline_volumes, len(cleaned)))
    base = cleaned[:n_base].mean(axis=0)
    safe = np.where(np.abs(base) > 1e-12, base, 1.0)
    return np.where(np.abs(base) > 1e-12, 100.0 * (cleaned - base) / safe, 0.0)


def block_windows(
    onsets: Sequence[float],
    durations: Sequence[float],
    n_volumes: int,
    tr: float,
    delay: float,
    start_time: float = 0.0,
) -> np.ndarray:
    """Averaging weights of the volumes inside each block, shifted by the haemodynamic delay.

    Volume ``k`` is taken at ``k * tr + start_time``; it belongs to a block when
    ``onset + delay <= time < onset + duration + delay`` (4 volumes for an 8-s block at TR 2 s).

    Returns
    -------
    ndarray, shape (n_blocks, n_volumes)
        Row ``b`` holds ``1 / n`` on the ``n`` volumes of block ``b`` and 0 elsewhere; a block
        whose window has no volume in the run has an all-zero row.
    """
    onsets = np.asarray(onsets, dtype=float)[:, None] + delay
    ends = onsets + np.asarray(durations, dtype=float)[:, None]
    times = np.arange(n_volumes)[None, :] * tr + start_time
    inside = (times >= onsets - 1e-9) & (times < ends - 1e-9)
    counts = inside.sum(axis=1, keepdims=True)
    return inside / np.maximum(counts, 1)


def block_samples(cleaned: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """One sample per block: the mean of its volumes, ``windows @ cleaned``."""
    return windows @ cleaned


def average_by_label(samples: np.ndarray, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Average the rows that share a label (test repetitions of one stimulus).

    Returns
    -------
    unique : list of str
        Labels in order of first appearance.
    averaged : ndarray, shape (n_unique, n_voxels)
    """
    unique = list(dict.fromkeys(labels))
    position = {label: k for k, label in enumerate(unique)}
    index = np.array([position[label] for label in labels])
    sums = np.zeros((len(unique), samples.shape[1]), dtype=np.float64)
    np.add.at(sums, index, samples)
    return unique, sums / np.bincount(index, minlength=len(unique))[:, None]


def standardize_by_training(
    train: np.ndarray, min_sd: float = 1e-8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training-sample mean and SD per voxel (ddof=1) and the voxels worth keeping.

    Returns
    -------
    mean, sd : ndarray, shape (n_voxels,)
    keep : ndarray of bool, shape (n_voxels,)
        False for voxels with (near) zero variance over the training samples.
    """
    mean = train.mean(axis=0)
    sd = train.std(axis=0, ddof=1) if len(train) > 1 else np.zeros(train.shape[1])
    return mean, sd, sd > min_sd
