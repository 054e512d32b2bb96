"""The paper's decoder (FastL2LiR): per unit, ridge on the voxels most correlated with it.

For each unit the ``n_voxels`` voxels with the largest absolute Pearson correlation with the unit
over the training samples are selected, and a ridge regression with a bias (the bias penalized
too, as FastL2LiR does) is solved on them. The systems of a chunk of units are gathered from one
(p+1) × (p+1) Gram matrix and solved together by batched Cholesky factorization on CPU or CUDA.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin

from bids_recon.decoding.ridge import as_tensor

SOLVE_CHUNK = 2048  # units whose systems are gathered and solved together


def correlation(X: torch.Tensor, Y: torch.Tensor, min_var: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of every voxel with every unit: (n_voxels × n_units).

    Voxels with (near) zero variance get 0, as in FastL2LiR.
    """
    xc = X - X.mean(dim=0)
    yc = Y - Y.mean(dim=0)
    x_norm = xc.norm(dim=0)
    y_norm = yc.norm(dim=0)
    corr = (xc.T @ yc) / (x_norm[:, None] * y_norm[None, :]).clamp_min(1e-30)
    corr[X.var(dim=0) < min_var] = 0.0
    return corr


def select_and_solve(
    X: torch.Tensor, Y: torch.Tensor, alpha: float, n_voxels: int, chunk_size: int = SOLVE_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the voxel-selection ridge for every unit (column) of Y.

    Returns
    -------
    index : tensor of int, shape (n_units, n_voxels + 1)
        Selected voxel columns of ``[X, 1]`` per unit (the last is the bias column).
    weights : tensor, shape (n_units, n_voxels + 1)
    """
    n, p = X.shape
    k = min(n_voxels, p)
    x1 = torch.cat([X, torch.ones(n, 1, dtype=X.dtype, device=X.device)], dim=1)
    gram = x1.T @ x1 + alpha * torch.eye(p + 1, dtype=X.dtype, device=X.device)
    cross = x1.T @ Y  # (p+1) × units
    corr = correlation(X, Y)
    bias = torch.full((1,), p, dtype=torch.long, device=X.device)
    indices, weights = [], []
    for start in range(0, Y.shape[1], chunk_size):
        units = torch.arange(start, min(start + chunk_size, Y.shape[1]), device=X.device)
        # sorted indices: the gather below reads each row of the Gram matrix in order
        top = corr[:, units].abs().topk(k, dim=0).indices.T.sort(dim=1).values  # (chunk × k)
        index = torch.cat([top, bias.expand(len(units), 1)], dim=1)
        systems = gram[index[:, :, None], index[:, None, :]]
        rhs = cross[index, units[:, None]]
        # symmetric positive definite (alpha > 0): Cholesky, half the work of LU
        factor, info = torch.linalg.cholesky_ex(systems)
        if bool(info.any()):
            raise FloatingPointError("voxel-selection systems are not positive definite")
        indices.append(index)
        weights.append(torch.cholesky_solve(rhs[..., None], factor)[..., 0])
    return torch.cat(indices), torch.cat(weights)


def predict_selected(
    X: torch.Tensor, index: torch.Tensor, weights: torch.Tensor, chunk_size: int = SOLVE_CHUNK
) -> torch.Tensor:
    """Predictions (n_samples × n_units) of a fitted voxel-selection model."""
    x1 = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype, device=X.device)], dim=1)
    out = []
    for start in range(0, len(index), chunk_size):
        idx, w = index[start : start + chunk_size], weights[start : start + chunk_size]
        out.append(torch.einsum("nck,ck->nc", x1[:, idx], w))
    return torch.cat(out, dim=1)


class VoxelSelectionDecoder(RegressorMixin, BaseEstimator):
    """Per-unit voxel selection + ridge (FastL2LiR's protocol: 500 voxels, alpha 100, bias).

    Like FastL2LiR, it does not normalize: give z-scored voxels and targets, as the paper's
    pipeline does (the participant workflow does).

    Parameters
    ----------
    alpha : float
        Ridge penalty (also on the bias).
    n_voxels : int
        Voxels selected per unit.
    chunk_size : int
        Units solved per batch (bounds memory: chunk × (n_voxels+1)² values).
    device : str
        ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        alpha: float = 100.0,
        n_voxels: int = 500,
        chunk_size: int = SOLVE_CHUNK,
        device: str = "cpu",
    ):
        self.alpha = alpha
        self.n_voxels = n_voxels
        self.chunk_size = chunk_size
        self.device = device

    def fit(self, X: np.ndarray, Y: np.ndarray) -> VoxelSelectionDecoder:
        """Select voxels and solve each unit's ridge."""
        y = as_tensor(np.asarray(Y).reshape(len(Y), -1), self.device)
        self.index_, self.coef_ = select_and_solve(
            as_tensor(X, self.device), y, self.alpha, self.n_voxels, self.chunk_size
        )
        self._target_shape = np.asarray(Y).shape[1:]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted targets for samples X."""
        out = predict_selected(as_tensor(X, self.device), self.index_, self.coef_, self.chunk_size)
        return out.cpu().numpy().reshape((len(X), *self._target_shape))
