"""Reconstruction benchmark: seconds per iteration against a bare forward+backward pass.

    .venv/bin/python bench/recon.py [--network builtin|vgg19] [--batches 1 8 32] [--device cpu]

For each batch size, times the peer (one forward and backward pass of the same network on the
same batch, with the feature loss) and one iteration of each optimizer (GD with momentum,
L-BFGS with its line search), and prints the ratio; the target for GD is <= 1.2x.
VGG19 uses random weights (nothing is downloaded).
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


def bare_pass_seconds(network, targets, batch, device, repeats):
    size = network.preprocessing.size
    x = torch.zeros(batch, 3, size, size, device=device, requires_grad=True)
    shapes = network.unit_shapes()
    t = {
        k: torch.as_tensor(v[:batch], device=device).reshape(-1, *shapes[k])
        for k, v in targets.items()
    }
    weights = layer_weights(t)
    start = time.perf_counter()
    for _ in range(repeats):
        loss = feature_loss(network(x), t, weights).sum()
        (grad,) = torch.autograd.grad(loss, x)
    if device != "cpu":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", default="builtin")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        weights = None
        if args.network == "vgg19":
            weights = Path(tmp) / "vgg19.pth"
            torch.save(torchvision.models.vgg19(weights=None).state_dict(), weights)
        network = build_network(args.network, weights).to(args.device)
    rng = np.random.default_rng(0)
    size = network.preprocessing.size
    biggest = max(args.batches)
    with torch.no_grad():
        images = torch.as_tensor(rng.normal(0, 40, (biggest, 3, size, size)), dtype=torch.float32)
        targets = {
            k: v.flatten(1).cpu().numpy() for k, v in network(images.to(args.device)).items()
        }
    print(
        f"{args.network} ({size}x{size}), device {args.device}, {torch.get_num_threads()} threads,"
        f" {args.iterations} iterations"
    )
    for batch in args.batches:
        bare_pass_seconds(network, targets, batch, args.device, 1)  # warm-up
        bare = bare_pass_seconds(network, targets, batch, args.device, args.iterations)
        row = [f"batch {batch:3d}: forward+backward {bare * 1e3:8.1f} ms"]
        for method in ("gd", "lbfgs"):
            subset = {k: v[:batch] for k, v in targets.items()}
            result = reconstruct(
                network, subset, ReconSettings(method, args.iterations, batch), args.device
            )
            per_iteration = result.seconds / args.iterations
            row.append(f"{method} {per_iteration * 1e3:8.1f} ms/it ({per_iteration / bare:4.2f}x)")
        print("  ".join(row) + f"   per image: {bare / batch * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
