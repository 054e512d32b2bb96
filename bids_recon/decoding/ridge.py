"""Exact multi-target ridge regression in dual form, alpha chosen per layer by cross-validation.

With centred voxels X (n × p) and K = X Xᵀ = U diag(s) Uᵀ, the ridge prediction with intercept
for test samples is ``mean(Y) + A (Y − mean(Y))`` with ``A = K_test U diag(1/(s+α)) Uᵀ``: a small
(n_test × n) matrix. Decoded features are thus weighted sums of training features, so they can
be accumulated while training images stream through the network, without a voxels × units weight
matrix. The cross-validation error of every alpha needs only ``G = Y Yᵀ`` (n × n), through the
per-fold quantities computed once in :class:`DualRidge` (docs/design.md, "The decoding trick").

Everything here is pure array code (torch, CPU or CUDA); :class:`RidgeDecoder` wraps it as a
scikit-learn estimator for in-memory use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import GroupKFold, KFold

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-1, 7, 33))  # 0.1-1e7, quarter decades
GRAM_CHUNK = 1 << 16  # feature columns per step when forming a Gram matrix YYᵀ


def as_tensor(
    array: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """An array as a torch tensor on ``device`` (read-only arrays, e.g. memory maps, copied)."""
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        array = np.array(array)
    return torch.as_tensor(array, dtype=dtype, device=device)


def cv_folds(
    n_samples: int,
    cv: int,
    groups: Sequence[int] | np.ndarray | None,
    labels: Sequence[str] | np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) index pairs: folds of whole groups (runs), or of samples.

    Samples are split when there are fewer than two groups. With ``labels`` (the stimulus of
    each sample), the fitting part of a fold loses every sample whose label also occurs in its
    validation part, so no image is seen on both sides (as bdpy's ``cvindex_groupwise`` with
    ``exclusive``): when images repeat across runs, plain run folds would fit on the very images
    they validate on and choose too little regularization. Folds left with fewer than two
    fitting samples are dropped.
    """
    index = np.arange(n_samples)
    if groups is not None and len(np.unique(groups)) >= 2:
        splitter = GroupKFold(n_splits=min(cv, len(np.unique(groups))))
        folds = list(splitter.split(index, groups=groups))
    else:
        folds = list(KFold(n_splits=min(cv, n_samples)).split(index))
    if labels is None:
        return folds
    labels = np.asarray(labels)
    exclusive = [(train[~np.isin(labels[train], labels[valid])], valid) for train, valid in folds]
    return [(train, valid) for train, valid in exclusive if len(train) >= 2]


@dataclass
class _Fold:
    """What one CV fold needs from the voxels (computed once, reused for every layer)."""

    train: torch.Tensor  # indices T
    valid: torch.Tensor  # indices V
    eigenvalues: torch.Tensor  # s of the fold-centred K_TT
    q: torch.Tensor  # Uᵀ H  (|T| × |T|)
    c: torch.Tensor  # centred K_VT U  (|V| × |T|)
    e: torch.Tensor  # Cᵀ C


class DualRidge:
    """Dual-form ridge from training voxels to any number of targets.

    Parameters
    ----------
    X : array, shape (n_samples, n_voxels)
        Training samples.
    folds : list of (train, validation) index arrays, optional
        Cross-validation folds for :meth:`cv_errors`.
    device : torch device
        Where the n × n algebra runs.
    dtype : torch dtype
        Its precision (float64 by default; float32 halves memory and is within 1e-4).
    """

    def __init__(
        self,
        X: np.ndarray | torch.Tensor,
        folds: Sequence[tuple] = (),
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ):
        x = as_tensor(X, device, dtype)
        self.device, self.dtype = device, dtype
        self.n = x.shape[0]
        self.x_mean = x.mean(dim=0)
        self.xc = x - self.x_mean
        gram = self.xc @ self.xc.T
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(gram)
        self.eigenvalues = self.eigenvalues.clamp_min(0)
        self.folds = [self._fold(gram, train, valid) for train, valid in folds]

    def _fold(self, gram: torch.Tensor, train: np.ndarray, valid: np.ndarray) -> _Fold:
        t = torch.as_tensor(train, device=self.device)
        v = torch.as_tensor(valid, device=self.device)
        k_tt, k_vt = gram[t][:, t], gram[v][:, t]
        n_t = len(train)
        centre = torch.eye(n_t, dtype=gram.dtype, device=self.device) - 1.0 / n_t
        s, u = torch.linalg.eigh(centre @ k_tt @ centre)
        k_vt_c = (k_vt - k_tt.mean(dim=0, keepdim=True)) @ centre
        c = k_vt_c @ u
        return _Fold(t, v, s.clamp_min(0), u.T @ centre, c, c.T @ c)

    def weights(self, X_test: np.ndarray | torch.Tensor, alpha: float) -> torch.Tensor:
        """W (n_test × n) such that predictions are ``W @ Y`` (intercept included)."""
        k_test = (as_tensor(X_test, self.device, self.dtype) - self.x_mean) @ self.xc.T
        u, s = self.eigenvectors, self.eigenvalues
        a = (k_test @ u) / (s + alpha) @ u.T
        a = a - a.mean(dim=1, keepdim=True)  # exact: centring of Y over the training samples
        return a + 1.0 / self.n

    def cv_errors(self, gram_y: np.ndarray | torch.Tensor, alphas: Sequence[float]) -> np.ndarray:
        """Sum over folds, validation samples and targets of squared errors, per alpha.

        Parameters
        ----------
        gram_y : array, shape (n_samples, n_samples)
            ``Y Yᵀ`` of the targets (or an unbiased estimate of it).
        alphas : sequence of float

        Returns
        -------
        ndarray, shape (n_alphas,)
        """
        g = as_tensor(gram_y, self.device, self.dtype)
        alpha = torch.as_tensor(alphas, dtype=g.dtype, device=self.device)
        total = torch.zeros_like(alpha)
        for fold in self.folds:
            t, v = fold.train, fold.valid
            # residual = L Y − C diag(d) Q Y_T, with L Y = Y_V − mean_T(Y)
            g_vv, g_vt, g_tt = g[v][:, v], g[v][:, t], g[t][:, t]
            mean_row = g_tt.mean(dim=0)
            l_g_l = g_vv.trace() - 2 * g_vt.mean(dim=1).sum() + len(v) * mean_row.mean()
            l_g_t = g_vt - mean_row  # (|V| × |T|): L G S_Tᵀ
            b = ((fold.q @ l_g_t.T) * fold.c.T).sum(dim=1)
            g_hat = fold.q @ g_tt @ fold.q.T
            f = g_hat * fold.e
            d = 1.0 / (fold.eigenvalues[None, :] + alpha[:, None])  # (n_alphas × |T|)
            total += l_g_l - 2 * d @ b + ((d @ f) * d).sum(dim=1)
        return total.cpu().numpy()


class RidgeDecoder(RegressorMixin, BaseEstimator):
    """Multi-target ridge regression, dual form, one alpha for all targets chosen by CV.

    Equivalent to ``sklearn.linear_model.Ridge(alpha, fit_intercept=True)`` for the chosen alpha,
    but the cost depends on the number of samples, not of targets or voxels.

    Parameters
    ----------
    alphas : sequence of float
        Candidate regularization strengths.
    cv : int
        Number of cross-validation folds (whole groups when ``groups`` is given to ``fit``).
    device : str
        ``cpu`` or ``cuda``.
    """

    def __init__(self, alphas: Sequence[float] = DEFAULT_ALPHAS, cv: int = 5, device: str = "cpu"):
        self.alphas = alphas
        self.cv = cv
        self.device = device

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        groups: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> RidgeDecoder:
        """Fit on training samples X (n × p) and targets Y (n × units); pick alpha by CV.

        ``groups`` (runs) make the folds; ``labels`` (stimulus names) keep a stimulus out of a
        fold's fitting part when it is in its validation part (:func:`cv_folds`).
        """
        Y = np.asarray(Y, dtype=np.float64)
        alphas = list(self.alphas)
        folds = cv_folds(len(X), self.cv, groups, labels) if len(alphas) > 1 else []
        self.model_ = DualRidge(X, folds, self.device)
        if len(alphas) > 1:
            y = as_tensor(Y.reshape(len(Y), -1), self.device)
            self.cv_errors_ = self.model_.cv_errors(y @ y.T, alphas)
            self.alpha_ = alphas[int(np.argmin(self.cv_errors_))]
        else:
            self.cv_errors_, self.alpha_ = np.full(1, np.nan), alphas[0]
        self.y_train_ = as_tensor(Y.reshape(len(Y), -1), self.device)
        self._target_shape = Y.shape[1:]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted targets for samples X."""
        out = self.model_.weights(X, self.alpha_) @ self.y_train_
        return out.cpu().numpy().reshape((len(X), *self._target_shape))
