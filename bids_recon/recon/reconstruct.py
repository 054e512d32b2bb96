"""Batched reconstruction of many target images at once, and the display transform."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bids_recon.features.networks import TappedNetwork
from bids_recon.log import progress
from bids_recon.recon.generator import LATENT_SIZE, GeneratorPrior, to_network_input
from bids_recon.recon.loss import feature_loss, layer_weights
from bids_recon.recon.optimize import GDSchedule, Objective, gradient_descent, lbfgs

METHODS = ("lbfgs", "gd", "generator")
FAST_ITERATIONS = {"builtin": 50}  # the built-in demo network converges sooner


def default_iterations(network: str) -> int:
    """Iterations without ``--recon-iterations``: the paper's 200, fewer for the built-in net."""
    return FAST_ITERATIONS.get(network, 200)


@dataclass(frozen=True)
class ReconSettings:
    """How to reconstruct: optimizer, iterations, batch size, seed, optional image priors.

    ``tv_weight`` and ``l2_weight`` add a total-variation and a squared-norm penalty of the
    image (in network input units, per pixel) to the feature loss; ``jitter`` shifts the image
    randomly by up to that many pixels at each gradient-descent step. The paper uses none.
    """

    method: str = "lbfgs"
    iterations: int = 200
    batch_size: int = 8
    seed: int = 0
    tv_weight: float = 0.0
    l2_weight: float = 0.0
    jitter: int = 0


@dataclass
class ReconResult:
    """Reconstructed images (display RGB uint8), per-image loss curves, passes and time."""

    images: np.ndarray  # (n, H, W, 3) uint8
    raw: np.ndarray  # (n, H, W, 3) float RGB before the display transform
    curves: list[list[float]]
    passes: list[int]  # network passes (loss and gradient) spent on each image
    seconds: float


def display_image(rgb: np.ndarray, percent: float = 4.0) -> np.ndarray:
    """Clip to the [2, 98] percentiles and stretch to 0-255 (the paper's display transform)."""
    low, high = np.percentile(rgb, [percent / 2, 100 - percent / 2])
    clipped = np.clip(rgb, low, high)
    span = max(high - low, 1e-12)
    return np.round((clipped - low) / span * 255).astype(np.uint8)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels, per image: (batch,)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).pow(2).flatten(1).mean(dim=1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).pow(2).flatten(1).mean(dim=1)
    return dx + dy


def _objective(
    network: TappedNetwork,
    targets: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor],
    prior: GeneratorPrior | None,
    settings: ReconSettings,
) -> Objective:
    """The per-image loss of a batch; ``rows`` picks the targets of a subset of its images."""

    def loss(values: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        images = (
            to_network_input(prior.generator(values), network.preprocessing)
            if prior is not None
            else values
        )
        wanted, scale = targets, weights
        if rows is not None:
            wanted = {layer: target[rows] for layer, target in targets.items()}
            scale = {layer: weight[rows] for layer, weight in weights.items()}
        total = feature_loss(network(images), wanted, scale)
        if settings.tv_weight:
            total = total + settings.tv_weight * total_variation(images)
        if settings.l2_weight:
            total = total + settings.l2_weight * images.pow(2).flatten(1).mean(dim=1)
        return total

    return loss


def reconstruct(
    network: TappedNetwork,
    targets: Mapping[str, np.ndarray],
    settings: ReconSettings,
    device: torch.device | str,
    prior: GeneratorPrior | None = None,
    indices: Sequence[int] | None = None,
) -> ReconResult:
    """Reconstruct images whose features match ``targets`` (layer → (n, units)), in batches.

    Pixel methods start from the mean colour and keep pixels within 0-255; the generator method
    (``prior``) starts from a zero latent kept within the prior's bounds (0 and, with an
    act_range, the per-unit upper limits). ``indices`` number the images (default 0..n-1) for
    their random seeds, so results do not depend on the batch an image falls in.
    """
    network.to(device)
    if prior is not None:
        prior.generator.to(device)
    shapes = network.unit_shapes()
    n = len(next(iter(targets.values())))
    indices = list(range(n)) if indices is None else list(indices)
    size = network.preprocessing.size
    lower, upper = (b.to(device) for b in network.preprocessing.pixel_bounds())
    start = time.perf_counter()
    raws, curves, passes = [], [], []
    for first in progress(range(0, n, settings.batch_size), "reconstruction batches"):
        rows = slice(first, min(first + settings.batch_size, n))
        batch = {
            layer: torch.as_tensor(
                np.asarray(values[rows]), dtype=torch.float32, device=device
            ).reshape(-1, *shapes[layer])
            for layer, values in targets.items()
        }
        objective = _objective(network, batch, layer_weights(batch), prior, settings)
        count = rows.stop - rows.start
        seeds = [settings.seed + k for k in indices[rows]]
        if settings.method == "generator":
            latent = torch.zeros(count, LATENT_SIZE, device=device)
            upper = (
                None
                if prior.upper is None
                else torch.as_tensor(prior.upper, dtype=torch.float32, device=device)
            )
            latent, trace = gradient_descent(
                objective,
                latent,
                GDSchedule(settings.iterations),
                lower=torch.zeros((), device=device),
                upper=upper,
                jitter_seeds=seeds,
            )
            with torch.no_grad():
                x = to_network_input(prior.generator(latent), network.preprocessing)
        else:
            x0 = torch.zeros(count, 3, size, size, device=device)  # the mean colour
            if settings.method == "lbfgs":
                x, trace = lbfgs(objective, x0, settings.iterations, lower, upper)
            else:
                schedule = GDSchedule(
                    settings.iterations,
                    lr_start=2.0,
                    lr_end=1e-10,
                    decay_start=0.2,
                    decay_end=1e-10,
                    jitter=settings.jitter,
                )
                x, trace = gradient_descent(
                    objective, x0, schedule, lower, upper, jitter_seeds=seeds
                )
        raws.append(network.preprocessing.tensor_to_array(x).cpu().numpy())
        curves.extend(trace.curves)
        passes.extend(trace.passes)
    raw = np.concatenate(raws)
    images = np.stack([display_image(image) for image in raw])
    return ReconResult(images, raw, curves, passes, time.perf_counter() - start)
