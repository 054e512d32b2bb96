"""The known encoding model behind the simulated BOLD signal.

Early visual voxels (V1-hV4) respond to the image through Gaussian receptive fields over
luminance and colour-opponent channels plus local contrast energy; higher visual voxels (LOC, FFA,
PPA, HVC) respond to sparse mixtures of global image features. Each stimulus block drives a
voxel's neural response, which is convolved with the SPM canonical HRF and sampled every TR,
then scaled to percent signal change over a voxel baseline, with linear and slow drift and AR(1)
noise added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.stats import gamma

FIELD = 32  # images are analysed at 32 x 32 pixels covering the visual field [-1, 1]^2


@dataclass(frozen=True)
class NoiseModel:
    """Signal and noise amplitudes, in percent of the voxel baseline."""

    signal_pct: float = 1.0
    noise_pct: float = 2.5
    ar_coefficient: float = 0.3
    drift_pct: float = 1.0


def image_field(image: Image.Image) -> np.ndarray:
    """The image as the visual field sees it: (FIELD, FIELD, 3) floats in [-0.5, 0.5]."""
    small = image.convert("RGB").resize((FIELD, FIELD), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float64) / 255.0 - 0.5


def _channels(field: np.ndarray) -> np.ndarray:
    """Luminance, red-green, blue-yellow and contrast-energy maps: (..., FIELD, FIELD, 4)."""
    r, g, b = field[..., 0], field[..., 1], field[..., 2]
    luminance = (r + g + b) / 3
    gy, gx = np.gradient(luminance, axis=(-2, -1))
    energy = np.sqrt(gx**2 + gy**2)
    return np.stack([luminance, r - g, b - (r + g) / 2, energy], axis=-1)


def global_features(fields: np.ndarray) -> np.ndarray:
    """Global image features for higher visual areas: (n_images, n_features).

    Coarse 8x8 luminance layout, quadrant colour means and oriented edge energy on a 4x4 grid.
    """
    n = len(fields)
    channels = _channels(fields)
    luminance = channels[..., 0]
    layout = luminance.reshape(n, 8, FIELD // 8, 8, FIELD // 8).mean(axis=(2, 4)).reshape(n, -1)
    quadrants = fields.reshape(n, 2, FIELD // 2, 2, FIELD // 2, 3).mean(axis=(2, 4)).reshape(n, -1)
    gy, gx = np.gradient(luminance, axis=(1, 2))
    orientations = []
    for angle in np.arange(4) * np.pi / 4:
        edge = np.abs(np.cos(angle) * gx + np.sin(angle) * gy)
        orientations.append(edge.reshape(n, 4, FIELD // 4, 4, FIELD // 4).mean(axis=(2, 4)))
    edges = np.stack(orientations, axis=1).reshape(n, -1)
    return np.concatenate([layout, quadrants, edges], axis=1)


def _zscore_columns(values: np.ndarray) -> np.ndarray:
    sd = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def early_responses(
    fields: np.ndarray, centres: np.ndarray, sizes: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Responses of receptive-field voxels to images: (n_images, n_voxels), z-scored per voxel."""
    grid = (np.arange(FIELD) + 0.5) / FIELD * 2 - 1
    gx, gy = np.meshgrid(grid, -grid)  # y up, as the visual field
    dx = gx[None] - centres[:, 0, None, None]
    dy = gy[None] - centres[:, 1, None, None]
    rf = np.exp(-(dx**2 + dy**2) / (2 * sizes[:, None, None] ** 2))
    rf /= rf.sum(axis=(1, 2), keepdims=True)
    # channel weights: mostly luminance, some colour opponency, some contrast energy
    weights = np.column_stack(
        [
            rng.choice([-1.0, 1.0], len(sizes)),
            rng.normal(0, 0.5, len(sizes)),
            rng.normal(0, 0.5, len(sizes)),
            rng.uniform(0.5, 1.5, len(sizes)) * 4,
        ]
    )
    pooled = np.einsum("nhwc,vhw->nvc", _channels(fields), rf)
    return _zscore_columns(np.einsum("nvc,vc->nv", pooled, weights))


def higher_responses(
    features: np.ndarray, n_voxels: int, rng: np.random.Generator, n_mixed: int = 8
) -> np.ndarray:
    """Responses of feature-mixing voxels: (n_images, n_voxels), z-scored per voxel."""
    standardized = _zscore_columns(features)
    weights = np.zeros((features.shape[1], n_voxels))
    for v in range(n_voxels):
        chosen = rng.choice(features.shape[1], size=n_mixed, replace=False)
        weights[chosen, v] = rng.normal(0, 1, n_mixed)
    return _zscore_columns(np.tanh(standardized @ weights / np.sqrt(n_mixed)))


def canonical_hrf(dt: float, length: float = 32.0) -> np.ndarray:
    """SPM's double-gamma HRF (peak 6 s, undershoot 16 s, ratio 1/6) sampled every ``dt``."""
    t = np.arange(0, length, dt)
    hrf = gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6
    return hrf / hrf.sum()


def event_regressors(
    onsets: np.ndarray, durations: np.ndarray, n_volumes: int, tr: float, dt: float = 0.1
) -> np.ndarray:
    """HRF-convolved boxcars of events, sampled at volume onsets: (n_volumes, n_events)."""
    n_fine = int(round(n_volumes * tr / dt))
    t = np.arange(n_fine) * dt
    boxcars = (t[:, None] >= onsets[None]) & (t[:, None] < (onsets + durations)[None])
    hrf = canonical_hrf(dt)
    convolved = np.stack(
        [np.convolve(col, hrf)[:n_fine] for col in boxcars.T.astype(float)], axis=1
    )
    sample = np.round(np.arange(n_volumes) * tr / dt).astype(int)
    return convolved[sample] / max(convolved.max(), 1e-12)


def synthesize_run(
    regressors: np.ndarray,
    amplitudes: np.ndarray,
    baseline: np.ndarray,
    tr: float,
    noise: NoiseModel,
    rng: np.random.Generator,
) -> np.ndarray:
    """BOLD time series of one run: (n_volumes, n_voxels).

    Parameters
    ----------
    regressors : ndarray, shape (n_volumes, n_events)
        From :func:`event_regressors`.
    amplitudes : ndarray, shape (n_events, n_voxels)
        Neural response of each voxel to each event, in units of ``noise.signal_pct``.
    baseline : ndarray, shape (n_voxels,)
        Mean image intensity per voxel.

    """
    n_volumes, n_voxels = regressors.shape[0], baseline.shape[0]
    t = np.arange(n_volumes) * tr
    signal = noise.signal_pct * (regressors @ amplitudes)
    slope = rng.normal(0, noise.drift_pct, n_voxels)
    period = rng.uniform(120, 300, n_voxels)
    phase = rng.uniform(0, 2 * np.pi, n_voxels)
    drift = np.outer(t / max(t[-1], tr), slope) + 0.5 * noise.drift_pct * np.sin(
        2 * np.pi * t[:, None] / period + phase
    )
    innovations = rng.normal(0, noise.noise_pct, (n_volumes, n_voxels))
    ar = np.empty_like(innovations)
    ar[0] = innovations[0]
    for k in range(1, n_volumes):
        ar[k] = noise.ar_coefficient * ar[k - 1] + innovations[k]
    return baseline * (1 + (signal + drift + ar) / 100)
