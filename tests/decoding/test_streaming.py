"""StreamingRidge (features fed in blocks) against the in-memory decoders and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from bids_recon.decoding import RidgeDecoder
from bids_recon.decoding.ridge import DualRidge, cv_folds
from bids_recon.decoding.streaming import StreamingRidge, image_gram

ALPHAS = [0.1, 1.0, 10.0, 100.0, 1000.0]


def problem(n_images=20, repeats=3, p=25, units=14, m=5, seed=0):
    """Training samples that show each image ``repeats`` times (in shuffled runs)."""
    rng = np.random.default_rng(seed)
    image_of_sample = np.concatenate([rng.permutation(n_images) for _ in range(repeats)])
    F = rng.normal(size=(n_images, units)) * rng.uniform(0.5, 3, units) + 2.0
    X = F[image_of_sample] @ rng.normal(size=(units, p)) + 2 * rng.normal(
        size=(n_images * repeats, p)
    )
    runs = np.repeat(np.arange(repeats * 2), n_images // 2)
    return X, F, image_of_sample, runs, rng.normal(size=(m, p))


def row_blocks(F, size):
    return [(slice(s, s + size), slice(None), F[s : s + size]) for s in range(0, len(F), size)]


def column_blocks(F, size):
    cols = [slice(s, s + size) for s in range(0, F.shape[1], size)]
    return [(slice(None), c, F[:, c]) for c in cols]


@pytest.mark.parametrize("blocks", [row_blocks, column_blocks])
def test_streamed_decoder_equals_ridge_decoder_and_sklearn(blocks):
    X, F, image_of_sample, runs, X_test = problem()
    Y = F[image_of_sample]  # targets per sample
    folds = cv_folds(len(X), 3, runs, image_of_sample)
    reference = RidgeDecoder(alphas=ALPHAS, cv=3).fit(X, Y, groups=runs, labels=image_of_sample)

    features = torch.as_tensor(F, dtype=torch.float32)
    gram = image_gram(chunk for _, _, chunk in column_blocks(features, 4))
    model = StreamingRidge(DualRidge(X, folds), image_of_sample, *F.shape).fit(gram, ALPHAS)
    assert model.alpha_ == reference.alpha_
    np.testing.assert_allclose(model.cv_errors_, reference.cv_errors_, rtol=1e-5)

    model.start_predict({"test": X_test})
    for rows, cols, block in blocks(features, 6):
        model.partial_predict(rows, cols, block)
    sklearn = Ridge(alpha=model.alpha_).fit(X, Y).predict(X_test)
    np.testing.assert_allclose(model.decoded_["test"].numpy(), sklearn, rtol=1e-4, atol=1e-4)


def test_one_alpha_needs_no_gram():
    X, F, image_of_sample, _, X_test = problem(seed=1)
    model = StreamingRidge(DualRidge(X), image_of_sample, *F.shape).fit(None, [5.0])
    assert model.alpha_ == 5.0
    model.start_predict({"a": X_test, "b": X_test[:2]})
    model.partial_predict(slice(None), slice(None), torch.as_tensor(F, dtype=torch.float32))
    expected = Ridge(alpha=5.0).fit(X, F[image_of_sample]).predict(X_test)
    np.testing.assert_allclose(model.decoded_["a"].numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.decoded_["b"].numpy(), expected[:2], rtol=1e-4, atol=1e-4)


def test_image_gram_sums_chunks_in_float64():
    F = torch.randn(7, 50)
    gram = image_gram([F[:, :20], F[:, 20:]])
    assert gram.dtype == torch.float64
    torch.testing.assert_close(gram, (F.double() @ F.double().T), rtol=1e-5, atol=1e-4)
