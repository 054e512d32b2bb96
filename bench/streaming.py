"""Streaming decoding benchmark: all units of all layers, against one bare extraction pass.

    .venv/bin/python bench/streaming.py [--train 1200] [--test 50] [--voxels 10000]
                                        [--network vgg19|builtin] [--device cpu|cuda]
                                        [--feature-cache-mb MB] [--compare]

The network has random weights (no download); ``--train`` random training images and ``--test``
test images are written as JPEG files; samples mix the last layer's units with noise. It times
one bare pass of feature extraction over the training images (the peer: what any decoder must
at least pay), then the whole ridge decode stage (training pass, CV, decoding, test
features), and prints the decode time beyond extraction, the ratio to extraction (CPU target:
<= 2.5x), and the peak resident memory of the process (and of the GPU). With ``--compare``
the stage runs again without the feature cache (float32, a second network pass) and the
float16-cached result is compared to it: largest relative difference of the decoded features,
and the test-set profile correlation of each.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
from PIL import Image

from bids_recon.config import build_config
from bids_recon.features.extract import feature_batches
from bids_recon.features.networks import build_network
from bids_recon.fmri.sample_set import SampleSet
from bids_recon.runtime import resolve_device
from bids_recon.specs import load_builtin_spec
from bids_recon.workflows.decode import DecodeInputs, decode_ridge


def peak_rss_gib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_images(folder: Path, names: list[str], rng: np.random.Generator) -> list[Path]:
    paths = []
    for name in names:
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        path = folder / f"{name}.jpg"
        Image.fromarray(pixels).resize((224, 224)).save(path, quality=90)
        paths.append(path)
    return paths


def profile(results, set_name: str = "natural") -> float:
    """Mean test-set profile correlation over layers."""
    values = [
        row["value"]
        for r in results
        for row in r.evaluation
        if row["metric"] == "profile_correlation" and row["set"] == set_name
    ]
    return float(np.mean(values))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=1200)
    parser.add_argument("--test", type=int, default=50)
    parser.add_argument("--voxels", type=int, default=10_000)
    parser.add_argument("--network", default="vgg19")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--feature-cache-mb", type=float, default=None)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = None
        if args.network == "vgg19":
            weights = root / "vgg19_random.pth"
            torch.save(torchvision.models.vgg19(weights=None).state_dict(), weights)
        (root / "img").mkdir()
        train = write_images(root / "img", [f"train{k:05d}" for k in range(args.train)], rng)
        test = write_images(root / "img", [f"test{k:05d}" for k in range(args.test)], rng)
        network = build_network(args.network, weights)
        units = sum(network.unit_counts().values())
        print(
            f"{args.network}, {len(network.layers)} layers, {units:,} units; {args.train} "
            f"training and {args.test} test images; {args.voxels} voxels; device {device}; "
            f"{torch.get_num_threads()} threads"
        )
        values = {
            "bids_dir": root,
            "output_dir": root / "out",
            "analysis_level": "participant",
            "work_dir": root / "work",
            "batch_size": args.batch_size,
        }
        if args.feature_cache_mb is not None:
            values["feature_cache_mb"] = args.feature_cache_mb
        config = build_config(values)

        last = network.layers[-1]
        start = time.perf_counter()
        kept = [b[last].cpu() for _, b in feature_batches(network, train, args.batch_size, device)]
        extraction = time.perf_counter() - start
        test_batches = feature_batches(network, test, args.batch_size, device)
        test_last = torch.cat([b[last].cpu() for _, b in test_batches])
        print(f"bare feature extraction (1 pass over training images): {extraction:8.1f} s")

        spec = load_builtin_spec("ds001506")
        spec = dataclasses.replace(spec, sets={k: spec.sets[k] for k in ("training", "natural")})
        # voxels: a random mixture of the last layer's units plus as much noise
        mixing = rng.standard_normal((kept[0].shape[1], args.voxels)).astype(np.float32)

        def voxels(features: torch.Tensor) -> np.ndarray:
            signal = features.numpy() @ mixing
            signal /= signal.std()
            return signal + rng.standard_normal(signal.shape).astype(np.float32)

        x, x_test = voxels(torch.cat(kept)), voxels(test_last)
        sample_set = SampleSet(
            samples={"training": x, "natural": x_test},
            stimuli={"training": [p.stem for p in train], "natural": [p.stem for p in test]},
            train_runs=np.repeat(np.arange(args.train // 50 + 1), 50)[: args.train],
            voxels=np.zeros((args.voxels, 3), dtype=int),
            rois={"VC": np.ones(args.voxels, dtype=bool)},
            blocks=pd.DataFrame(),
        )
        inputs = DecodeInputs(train, np.arange(args.train), test, {"natural": np.arange(args.test)})
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        results = decode_ridge(config, network, spec, sample_set, inputs, ["VC"], device)["VC"]
        total = time.perf_counter() - start
        decoded = sum(r.decoded["natural"].size for r in results)
        print(f"ridge decode stage, all layers:  {total:8.1f} s ({decoded:,} decoded values)")
        print(
            f"decode beyond one extraction pass: {total - extraction:8.1f} s "
            f"(ratio to extraction: {total / extraction:.2f}x)"
        )
        gpu = ""
        if device.type == "cuda":
            gpu = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
        print(f"peak RSS: {peak_rss_gib():.2f} GiB{gpu}")
        if args.compare:
            plain = dataclasses.replace(config, feature_cache_mb=0.0, work_dir=root / "work0")
            reference = decode_ridge(plain, network, spec, sample_set, inputs, ["VC"], device)
            difference = max(
                float(
                    np.abs(a.decoded["natural"] - b.decoded["natural"]).max()
                    / max(np.abs(b.decoded["natural"]).max(), 1e-30)
                )
                for a, b in zip(results, reference["VC"], strict=True)
            )
            print(
                f"cached vs uncached: decoded features max relative difference {difference:.2e}; "
                f"profile correlation {profile(results):.4f} vs {profile(reference['VC']):.4f} "
                f"(difference {abs(profile(results) - profile(reference['VC'])):.2e})"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
