"""Ridge decoding of feature layers that arrive in blocks, never whole (docs/design.md).

With the dual form of :mod:`bids_recon.decoding.ridge`, what a ridge decoder needs from the
targets — the DNN features of the training images — is only

- the image Gram matrix ``G = F Fᵀ`` (images × images), to choose alpha by cross-validation,
  exact or estimated from a random subset of units;
- sums ``W[:, rows] F[rows, cols]`` over blocks of F, for the decoded test features, where
  ``W`` (test samples × images) maps training images to predictions.

So F can be produced by the network a batch of images at a time (row blocks), or read back from
a store a column chunk at a time, on the CPU or on a GPU, and nothing of size voxels × units is
ever formed. :class:`StreamingRidge` is that estimator for one ROI and one layer; the decode
stage (``workflows/decode.py``) only decides where F comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from bids_recon.decoding.ridge import DualRidge, as_tensor


def image_gram(chunks: Iterable[torch.Tensor]) -> torch.Tensor:
    """``F Fᵀ`` in float64 from column chunks of F (each images × some units).

    Each chunk's product is formed in its own precision (float32: exact to ~1e-7 relative) and
    summed in float64.
    """
    total = None
    for chunk in chunks:
        product = (chunk @ chunk.T).double()
        total = product if total is None else total.add_(product)
    if total is None:
        raise ValueError("image_gram needs at least one chunk")
    return total


class StreamingRidge:
    """Dual-form ridge from one ROI's voxels to one layer's units, fed in blocks of features.

    Parameters
    ----------
    ridge : DualRidge
        The ROI's voxel algebra (training samples and CV folds), shared by all layers.
    image_of_sample : array of int, shape (n_samples,)
        The training image shown in each training sample (images may repeat).
    n_images : int
        Training images (rows of F).
    n_units : int
        Units of the layer (columns of F).

    Attributes
    ----------
    alpha_ : float
        The chosen regularization.
    cv_errors_ : ndarray
        Cross-validation error of each candidate alpha (NaN with one candidate).
    decoded_ : dict of str to tensor
        Decoded features per test set (n_test × n_units, float32), complete once every block of
        F went through :meth:`partial_predict`.
    """

    def __init__(self, ridge: DualRidge, image_of_sample: np.ndarray, n_images: int, n_units: int):
        self.ridge = ridge
        self.image_of_sample = torch.as_tensor(image_of_sample, device=ridge.device)
        self.n_images, self.n_units = n_images, n_units

    def _to_images(self, per_sample: torch.Tensor) -> torch.Tensor:
        """Sum the columns of samples that show the same image: (…, samples) → (…, images)."""
        out = per_sample.new_zeros(per_sample.shape[0], self.n_images)
        return out.index_add_(1, self.image_of_sample, per_sample)

    def fit(self, gram_images: torch.Tensor, alphas: Sequence[float]) -> StreamingRidge:
        """Choose alpha by cross-validation from the image Gram matrix ``F Fᵀ`` (or an estimate).

        With one candidate, it is taken as is and ``gram_images`` is not used.
        """
        if len(alphas) == 1:
            self.alpha_, self.cv_errors_ = float(alphas[0]), np.full(1, np.nan)
            return self
        index = self.image_of_sample
        gram = as_tensor(gram_images, self.ridge.device, self.ridge.dtype)[index][:, index]
        self.cv_errors_ = self.ridge.cv_errors(gram, alphas)
        self.alpha_ = float(alphas[int(np.argmin(self.cv_errors_))])
        return self

    def start_predict(self, tests: Mapping[str, np.ndarray | torch.Tensor]) -> StreamingRidge:
        """Prepare the weights of each test set's samples (n_test × voxels) at ``alpha_``."""
        self.weights_ = {
            name: self._to_images(self.ridge.weights(x, self.alpha_)).float()
            for name, x in tests.items()
        }
        self.decoded_ = {
            name: torch.zeros(len(w), self.n_units, device=w.device)
            for name, w in self.weights_.items()
        }
        return self

    def partial_predict(self, rows: slice, cols: slice, block: torch.Tensor) -> None:
        """Add the contribution of the block ``F[rows, cols]`` (float32) to every test set."""
        for name, weights in self.weights_.items():
            self.decoded_[name][:, cols].addmm_(weights[:, rows], block)
