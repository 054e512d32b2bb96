"""Reconstruction: real photographs from true features with the built-in net; optimizers."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from bids_recon.evaluation.metrics import pairwise_identification
from bids_recon.features.networks import build_network
from bids_recon.recon.generator import FC7Generator, GeneratorPrior, crop
from bids_recon.recon.loss import feature_loss, layer_weights
from bids_recon.recon.reconstruct import ReconSettings, display_image, reconstruct

PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "coins",
    "clock",
    "brick",
    "retina",
)


@pytest.fixture(scope="module")
def photos():
    network = build_network("builtin")
    size = network.preprocessing.size
    images = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in PHOTOS]
    originals = np.stack(
        [np.asarray(i.resize((size, size), Image.Resampling.BICUBIC)) for i in images]
    ).astype(np.float64)
    x = torch.stack([network.preprocessing.image_to_tensor(i) for i in images])
    with torch.no_grad():
        targets = {k: v.flatten(1).numpy() for k, v in network(x).items()}
    return network, originals, targets


@pytest.mark.parametrize("method", ["lbfgs", "gd"])
def test_true_features_reconstruct_real_photographs(photos, method):
    network, originals, targets = photos
    result = reconstruct(network, targets, ReconSettings(method, 30, batch_size=12), "cpu")
    r = [
        np.corrcoef(result.images[i].ravel(), originals[i].ravel())[0, 1]
        for i in range(len(PHOTOS))
    ]
    assert np.mean(r) > 0.8  # the start (the mean colour) has no correlation at all
    accuracy = pairwise_identification(result.images, originals).mean()
    assert accuracy > 0.9


def test_losses_decrease(photos):
    network, _, targets = photos
    few = {k: v[:4] for k, v in targets.items()}
    lbfgs = reconstruct(network, few, ReconSettings("lbfgs", 15, batch_size=4), "cpu")
    for curve in lbfgs.curves:
        assert all(b <= a + 1e-9 for a, b in zip(curve, curve[1:], strict=False))
        assert curve[-1] < 0.1 * curve[0]
    gd = reconstruct(network, few, ReconSettings("gd", 40, batch_size=4), "cpu")
    mean_curve = np.mean(gd.curves, axis=0)
    steps = np.diff(mean_curve)
    assert mean_curve[-1] < 0.1 * mean_curve[0] and (steps < 0).mean() > 0.8


@pytest.mark.parametrize("method", ["lbfgs", "gd"])
def test_batch_equals_single(photos, method):
    network, _, targets = photos
    few = {k: v[:3] for k, v in targets.items()}
    batch = reconstruct(network, few, ReconSettings(method, 10, batch_size=3), "cpu")
    single = reconstruct(network, few, ReconSettings(method, 10, batch_size=1), "cpu")
    # float32 convolutions differ in the last bits between batch sizes, and L-BFGS's line search
    # can amplify that; the images must still agree to a fraction of a grey level
    difference = np.abs(batch.raw - single.raw)
    assert difference.mean() < 0.5
    for b, o in zip(batch.raw, single.raw, strict=True):
        assert np.corrcoef(b.ravel(), o.ravel())[0, 1] > 0.999
    final_b = np.array([c[-1] for c in batch.curves])
    final_s = np.array([c[-1] for c in single.curves])
    assert np.allclose(final_b, final_s, rtol=0.05)


def test_layer_weights_sum_to_one_and_scale_inversely():
    targets = {"a": torch.ones(2, 4), "b": 3 * torch.ones(2, 4)}
    weights = layer_weights(targets)
    assert torch.allclose(weights["a"] + weights["b"], torch.ones(2))
    assert torch.allclose(weights["a"] / weights["b"], torch.full((2,), 9.0))
    features = {"a": torch.zeros(2, 4), "b": 3 * torch.ones(2, 4)}
    assert torch.allclose(feature_loss(features, targets, weights), weights["a"] * 4)


def test_display_image_clips_percentiles():
    rgb = np.linspace(-100, 400, 300).reshape(10, 10, 3)
    out = display_image(rgb)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    low, high = np.percentile(rgb, [2, 98])
    assert (out[rgb <= low] == 0).all() and (out[rgb >= high] == 255).all()


def test_generator_shapes_gradients_determinism():
    torch.manual_seed(0)
    generator = FC7Generator().eval()
    latent = torch.zeros(2, 4096, requires_grad=True)
    images = generator(latent + 0.1)
    assert images.shape == (2, 3, 256, 256)
    assert crop(images, 224).shape == (2, 3, 224, 224)
    images.square().mean().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    torch.manual_seed(0)
    again = FC7Generator().eval()
    with torch.no_grad():
        assert torch.equal(again(latent.detach() + 0.1), generator(latent.detach() + 0.1))


def test_generator_reconstruction_runs_with_random_weights(photos):
    network, _, targets = photos
    torch.manual_seed(0)
    generator = FC7Generator().eval()
    few = {k: v[:2] for k, v in targets.items()}
    prior = GeneratorPrior(generator, None, "0 <= latent")
    result = reconstruct(network, few, ReconSettings("generator", 3, batch_size=2), "cpu", prior)
    assert result.images.shape == (2, 64, 64, 3) and len(result.curves[0]) == 3


def test_pairwise_identification_equals_loop():
    rng = np.random.default_rng(0)
    recon, true = rng.normal(size=(7, 5, 5)), rng.normal(size=(7, 5, 5))
    recon[3] = true[3] + 0.01
    expected = []
    for i in range(7):
        own = np.corrcoef(recon[i].ravel(), true[i].ravel())[0, 1]
        others = [np.corrcoef(recon[i].ravel(), true[j].ravel())[0, 1] for j in range(7) if j != i]
        expected.append(np.mean([own > o for o in others]))
    assert np.allclose(pairwise_identification(recon, true), expected)
    tie = np.ones((3, 4)) * np.arange(4)
    assert np.allclose(pairwise_identification(tie, tie), 0.0)  # ties are failures


def test_tv_prior_smooths_and_jitter_is_seeded(photos):
    network, _, targets = photos
    few = {k: v[:2] for k, v in targets.items()}
    plain = reconstruct(network, few, ReconSettings("gd", 15, batch_size=2), "cpu")
    smooth = reconstruct(network, few, ReconSettings("gd", 15, batch_size=2, tv_weight=50.0), "cpu")
    tv = lambda raw: np.abs(np.diff(raw, axis=1)).mean()  # noqa: E731
    assert tv(smooth.raw) < tv(plain.raw)
    jitter = ReconSettings("gd", 5, batch_size=2, jitter=2)
    first = reconstruct(network, few, jitter, "cpu")
    again = reconstruct(network, few, ReconSettings("gd", 5, batch_size=1, jitter=2), "cpu")
    assert np.abs(first.raw - again.raw).max() < 1e-2
