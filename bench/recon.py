"""Reconstruction benchmark: whole runs against a bare forward+backward pass of the same batch.

    .venv/bin/python bench/recon.py [--network builtin|vgg19] [--batches 1 8 32] [--iterations 200]
                                    [--device cpu]

For each batch size, times the peer (one forward and backward pass of the network on that batch,
with the feature loss) and a whole reconstruction of each optimizer (GD with momentum, L-BFGS
with its line search) at the given iterations, setup included. It prints the time per
iteration of the batch as a ratio to the peer (targets: <= 1.2x on CPU with the built-in net at
batch 32, <= 1.3x on a GPU), the iterations the images took (L-BFGS stops converged images) and
the network passes per image iteration (1 for GD; L-BFGS's line search adds trial steps). The
peer is timed just before and after each run. The targets are the features of random images
plus noise (0.3 of each layer's SD), so that, like decoded features, no image matches them
exactly. VGG19 uses random weights (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from bids_recon.features.networks import build_network
from bids_recon.recon.loss import feature_loss, layer_weights
from bids_recon.recon.reconstruct import ReconSettings, reconstruct
from bids_recon.runtime import resolve_device

NOISE = 0.3  # target noise, in units of each layer's SD


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_pass_seconds(network, targets, batch, device, repeats) -> float:
    """Seconds of one forward+backward pass with the feature loss on ``batch`` images."""
    size = network.preprocessing.size
    x = torch.zeros(batch, 3, size, size, device=device, requires_grad=True)
    shapes = network.unit_shapes()
    t = {
        k: torch.as_tensor(v[:batch], device=device).reshape(-1, *shapes[k])
        for k, v in targets.items()
    }
    weights = layer_weights(t)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        loss = feature_loss(network(x), t, weights).sum()
        torch.autograd.grad(loss, x)
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def noisy_targets(network, count: int, device, rng) -> dict[str, np.ndarray]:
    """Features of random images plus noise, one row per image."""
    size = network.preprocessing.size
    with torch.no_grad():
        images = torch.as_tensor(rng.normal(0, 40, (count, 3, size, size)), dtype=torch.float32)
        features = network(images.to(device))
    return {
        k: (v + NOISE * v.std() * torch.randn_like(v)).flatten(1).cpu().numpy()
        for k, v in features.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", default="builtin")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--methods", nargs="+", default=["gd", "lbfgs"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        weights = None
        if args.network == "vgg19":
            weights = Path(tmp) / "vgg19.pth"
            torch.save(torchvision.models.vgg19(weights=None).state_dict(), weights)
        network = build_network(args.network, weights).to(device)
    targets = noisy_targets(network, max(args.batches), device, np.random.default_rng(0))
    print(
        f"{args.network} ({network.preprocessing.size} px), device {device}, "
        f"{torch.get_num_threads()} threads, up to {args.iterations} iterations"
    )
    print(
        f"{'batch':>5} {'fwd+bwd ms':>10} {'method':>6} {'s/run':>7} {'iter (mean/max)':>16} "
        f"{'passes/iter':>11} {'ms/iter':>8} {'ratio':>6}"
    )
    for batch in args.batches:
        bare_pass_seconds(network, targets, batch, device, 2)  # warm-up
        for method in args.methods:
            subset = {k: v[:batch] for k, v in targets.items()}
            settings = ReconSettings(method, args.iterations, batch)
            # the peer is timed just before and after the run (the mean): a machine shared with
            # other work changes speed over a run's seconds
            before = bare_pass_seconds(network, targets, batch, device, 10)
            result = reconstruct(network, subset, settings, device)
            bare = (before + bare_pass_seconds(network, targets, batch, device, 10)) / 2
            done = [len(c) - (method == "lbfgs") for c in result.curves]
            loops = max(done)  # iterations of the batch: until its last image stops
            per_iteration = result.seconds / loops
            print(
                f"{batch:5d} {bare * 1e3:10.1f} {method:>6} {result.seconds:7.2f} "
                f"{np.mean(done):8.1f}/{loops:<7d} {sum(result.passes) / sum(done):11.2f} "
                f"{per_iteration * 1e3:8.1f} {per_iteration / bare:5.2f}x"
            )


if __name__ == "__main__":
    main()
