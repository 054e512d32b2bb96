"""The feature-matching loss of the paper (docs/method.md §4.1).

``L = Σ_l w_l Σ_units (φ_l(x) − f_l)²`` with ``w_l ∝ 1 / ‖f_l‖²`` normalized to sum 1, computed
per image so that images optimized together in a batch do not influence each other.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def layer_weights(
    targets: Mapping[str, torch.Tensor], user: Mapping[str, float] | None = None
) -> dict[str, torch.Tensor]:
    """Per-image layer weights ∝ user weight / ‖f_l‖², normalized to sum 1: layer → (batch,)."""
    raw = {}
    for layer, target in targets.items():
        norm2 = target.flatten(1).pow(2).sum(dim=1).clamp_min(1e-12)
        raw[layer] = (user or {}).get(layer, 1.0) / norm2
    total = torch.stack(list(raw.values())).sum(dim=0)
    return {layer: w / total for layer, w in raw.items()}


def feature_loss(
    features: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    """Weighted squared error per image: (batch,)."""
    total = None
    for layer, target in targets.items():
        error = (features[layer].flatten(1) - target.flatten(1)).pow(2).sum(dim=1)
        term = weights[layer] * error
        total = term if total is None else total + term
    return total
