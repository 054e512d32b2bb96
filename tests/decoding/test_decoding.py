"""Decoders against brute-force references on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from bids_recon.decoding import RidgeDecoder, VoxelSelectionDecoder
from bids_recon.decoding.correction import correct_sd, feature_sd
from bids_recon.decoding.ridge import DualRidge, cv_folds
from bids_recon.evaluation.metrics import pattern_correlation, profile_correlation

RNG = np.random.default_rng(0)


def tiny(n=48, p=30, units=12, m=6):
    X = RNG.normal(2.0, 1.5, size=(n, p))  # not centred: the intercept must be handled
    Y = X[:, :4] @ RNG.normal(size=(4, units)) + RNG.normal(size=(n, units)) + 3.0
    return X, Y, RNG.normal(2.0, 1.5, size=(m, p))


@pytest.mark.parametrize("alpha", [0.01, 1.0, 50.0, 1e4])
def test_dual_form_equals_primal_sklearn_ridge(alpha):
    X, Y, X_test = tiny()
    ours = RidgeDecoder(alphas=[alpha]).fit(X, Y).predict(X_test)
    assert np.allclose(ours, Ridge(alpha=alpha).fit(X, Y).predict(X_test), atol=1e-9)


def brute_force_cv(X, Y, folds, alphas):
    errors = []
    for alpha in alphas:
        total = 0.0
        for train, valid in folds:
            model = Ridge(alpha=alpha).fit(X[train], Y[train])
            total += ((model.predict(X[valid]) - Y[valid]) ** 2).sum()
        errors.append(total)
    return np.array(errors)


def test_cv_errors_from_gram_equal_brute_force_and_pick_the_same_alpha():
    X, Y, _ = tiny()
    groups = np.repeat(np.arange(8), 6)  # 8 runs of 6 blocks
    alphas = [0.1, 1.0, 10.0, 100.0, 1000.0, 1e4]
    folds = cv_folds(len(X), 4, groups)
    ours = DualRidge(X, folds).cv_errors(Y @ Y.T, alphas)
    brute = brute_force_cv(X, Y, folds, alphas)
    assert np.allclose(ours, brute, rtol=1e-8)
    decoder = RidgeDecoder(alphas=alphas, cv=4).fit(X, Y, groups=groups)
    assert decoder.alpha_ == alphas[int(np.argmin(brute))]
    for train, valid in folds:  # folds keep runs whole
        assert not set(groups[train]) & set(groups[valid])


def test_streamed_accumulation_equals_in_memory():
    X, Y, X_test = tiny()
    model = DualRidge(X)
    weights = model.weights(X_test, 10.0)
    streamed = sum(
        weights[:, rows] @ torch.as_tensor(Y[rows])
        for rows in (slice(0, 7), slice(7, 30), slice(30, 48))
    )
    in_memory = RidgeDecoder(alphas=[10.0]).fit(X, Y).predict(X_test)
    assert np.allclose(streamed.numpy(), in_memory)


def test_estimator_api():
    decoder = RidgeDecoder(alphas=[1.0, 2.0], cv=3)
    assert decoder.get_params() == {"alphas": [1.0, 2.0], "cv": 3, "device": "cpu"}
    X, Y, _ = tiny()
    assert decoder.fit(X, Y).score(X, Y) > 0.5


def naive_voxel_selection(X, Y, X_test, alpha, n_voxels):
    """FastL2LiR's loop: per unit, top-|r| voxels + bias, ridge with the bias penalized."""
    x1 = np.column_stack([X, np.ones(len(X))])
    t1 = np.column_stack([X_test, np.ones(len(X_test))])
    out = np.zeros((len(X_test), Y.shape[1]))
    for u in range(Y.shape[1]):
        r = np.array([np.corrcoef(X[:, v], Y[:, u])[0, 1] for v in range(X.shape[1])])
        chosen = list(np.argsort(-np.abs(r))[:n_voxels]) + [X.shape[1]]
        a = x1[:, chosen]
        w = np.linalg.solve(a.T @ a + alpha * np.eye(len(chosen)), a.T @ Y[:, u])
        out[:, u] = t1[:, chosen] @ w
    return out


@pytest.mark.parametrize("chunk", [3, 100])
def test_voxel_selection_equals_naive_loop(chunk):
    X, Y, X_test = tiny()
    ours = VoxelSelectionDecoder(alpha=5.0, n_voxels=7, chunk_size=chunk).fit(X, Y)
    assert np.allclose(ours.predict(X_test), naive_voxel_selection(X, Y, X_test, 5.0, 7))
    assert ours.index_.shape == (Y.shape[1], 8)


def test_sd_correction_matches_its_formula():
    conv = torch.as_tensor(RNG.normal(size=(3, 4, 5, 5)))
    expected = np.array([np.mean([c.std() for c in image]) for image in conv.numpy()])
    assert np.allclose(feature_sd(conv).numpy(), expected)
    corrected = correct_sd(conv, 2.5)
    assert np.allclose(feature_sd(corrected).numpy(), 2.5)
    assert np.allclose((corrected / conv).numpy()[0], (2.5 / expected[0]))
    fc = torch.as_tensor(RNG.normal(size=(2, 10)))
    assert np.allclose(feature_sd(fc).numpy(), fc.numpy().std(axis=1))


def test_profile_and_pattern_correlation_equal_loops():
    decoded, true = RNG.normal(size=(6, 3, 4)), RNG.normal(size=(6, 3, 4))
    d, t = decoded.reshape(6, -1), true.reshape(6, -1)
    profile = [np.corrcoef(d[:, u], t[:, u])[0, 1] for u in range(12)]
    pattern = [np.corrcoef(d[i], t[i])[0, 1] for i in range(6)]
    assert np.allclose(profile_correlation(decoded, true), profile)
    assert np.allclose(pattern_correlation(decoded, true), pattern)
    mean, sd = RNG.normal(size=12), RNG.uniform(0.5, 2, 12)
    z = [np.corrcoef((d[i] - mean) / sd, (t[i] - mean) / sd)[0, 1] for i in range(6)]
    assert np.allclose(pattern_correlation(decoded, true, mean, sd), z)
    constant = profile_correlation(np.ones((6, 2)), t[:, :2])
    assert np.isnan(constant).all()


def test_ssim_equals_scikit_image():
    from skimage.metrics import structural_similarity

    from bids_recon.evaluation.metrics import ssim

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (32, 40, 3)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 40, a.shape), 0, 255)
    expected = structural_similarity(
        a,
        b,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=True,
        data_range=255,
    )
    assert np.isclose(ssim(a, b), expected, rtol=1e-6)
    assert np.isclose(ssim(a, a), 1.0)


def test_bootstrap_ci_and_chance_test():
    from bids_recon.evaluation.metrics import above_chance_p, bootstrap_ci

    values = np.random.default_rng(0).uniform(0.6, 1.0, 40)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high and high - low < 0.1
    assert above_chance_p(values) < 1e-6
    assert above_chance_p(np.full(10, 0.5) + np.linspace(-0.1, 0.1, 10)) > 0.3
    # tied identification rates: the normal approximation, same conclusion as SciPy's permutation
    # test (0.0025 vs 0.0015 for these 12; equal for 28 values)
    from scipy.stats import wilcoxon

    for tied in (
        np.array([1.0, 1.0, 0.9, 0.9, 0.9, 0.8, 0.6, 0.4, 1.0, 0.7, 0.45, 0.9]),
        np.repeat([1.0, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3], 4),
    ):
        permutation = wilcoxon(tied - 0.5, alternative="greater").pvalue
        assert above_chance_p(tied) < 0.01 and permutation < 0.01
        assert 0.5 < above_chance_p(tied) / permutation < 2


def test_cv_folds_never_put_one_image_in_fitting_and_validation():
    runs = np.repeat(np.arange(10), 6)  # 10 runs of 6 blocks; 20 images shown 3 times each,
    labels = np.empty(60, dtype=object)  # each time in another run
    for presentation in range(3):
        for image in range(20):
            run = (image + 3 * presentation) % 10
            slot = np.flatnonzero((runs == run) & (labels == None))[0]  # noqa: E711
            labels[slot] = f"img{image}"
    labels = labels.astype(str)
    assert all(len(set(runs[labels == f"img{k}"])) == 3 for k in range(20))
    plain = cv_folds(60, 5, runs)
    assert any(set(labels[t]) & set(labels[v]) for t, v in plain)  # run folds alone leak
    exclusive = cv_folds(60, 5, runs, labels)
    assert len(exclusive) == len(plain)
    for (train, valid), (plain_train, plain_valid) in zip(exclusive, plain, strict=True):
        assert np.array_equal(valid, plain_valid)  # the runs still make the folds
        assert not set(labels[train]) & set(labels[valid])
        assert not set(runs[train]) & set(runs[valid])
        kept = plain_train[~np.isin(labels[plain_train], labels[valid])]
        assert np.array_equal(train, kept)  # only the shared images are dropped


def test_ridge_decoder_cv_with_labels_equals_brute_force_on_exclusive_folds():
    rng = np.random.default_rng(1)
    runs = np.repeat(np.arange(4), 12)
    labels = np.array([f"img{k % 16}" for k in rng.permutation(48)])
    X, Y = rng.normal(size=(48, 30)), rng.normal(size=(48, 7))
    alphas = [0.1, 10.0, 1000.0]
    model = RidgeDecoder(alphas, cv=4).fit(X, Y, groups=runs, labels=labels)
    expected = np.zeros(len(alphas))
    for train, valid in cv_folds(48, 4, runs, labels):
        for k, alpha in enumerate(alphas):
            fitted = Ridge(alpha=alpha).fit(X[train], Y[train])
            expected[k] += ((fitted.predict(X[valid]) - Y[valid]) ** 2).sum()
    np.testing.assert_allclose(model.cv_errors_, expected, rtol=1e-6)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-8), (torch.float32, 1e-3)])
def test_dual_ridge_in_each_precision_and_device(device, dtype, tolerance):
    X, Y, X_test = tiny()
    groups = np.repeat(np.arange(8), 6)
    alphas = [0.1, 10.0, 1000.0]
    folds = cv_folds(len(X), 4, groups)
    model = DualRidge(X, folds, device, dtype)
    predicted = model.weights(X_test, 10.0) @ torch.as_tensor(Y, dtype=dtype, device=device)
    expected = Ridge(alpha=10.0).fit(X, Y).predict(X_test)
    scale = np.abs(expected).max()
    assert np.abs(predicted.cpu().numpy() - expected).max() <= tolerance * scale
    errors = model.cv_errors(Y @ Y.T, alphas)
    np.testing.assert_allclose(errors, brute_force_cv(X, Y, folds, alphas), rtol=tolerance)
