"""Streaming decoding benchmark: all units of all 19 VGG19 layers, run by hand.

    .venv/bin/python bench/streaming.py [--train 1200] [--test 50] [--voxels 10000] [--device cpu]

VGG19 with random weights (no download), ``--train`` random training images and ``--test`` test
images written as JPEG files, random standardized samples. It times one bare pass of feature
extraction over the training images (the peer: what any decoder must at least pay), then the
whole ridge decode stage (CV pass, decoding pass, test features), and prints the decoding time
beyond extraction and the peak resident memory of the process.
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

from bids_recon.config import Config
from bids_recon.features.extract import feature_batches
from bids_recon.features.networks import build_network
from bids_recon.fmri.sample_set import SampleSet
from bids_recon.specs import load_builtin_spec
from bids_recon.workflows.decode import DecodeInputs, decode_ridge


def peak_rss_gib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_images(folder: Path, count: int, rng: np.random.Generator) -> list[Path]:
    paths = []
    for k in range(count):
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        path = folder / f"img{k:05d}.jpg"
        Image.fromarray(pixels).resize((224, 224)).save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=1200)
    parser.add_argument("--test", type=int, default=50)
    parser.add_argument("--voxels", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = root / "vgg19_random.pth"
        torch.save(torchvision.models.vgg19(weights=None).state_dict(), weights)
        (root / "img").mkdir()
        train = write_images(root / "img", args.train, rng)
        test = write_images(root / "img", args.test, rng)[-args.test :]
        network = build_network("vgg19", weights)
        units = sum(network.unit_counts().values())
        print(
            f"VGG19, {len(network.layers)} layers, {units:,} units; {args.train} training and "
            f"{args.test} test images; {args.voxels} voxels; device {args.device}; "
            f"{torch.get_num_threads()} threads"
        )

        start = time.perf_counter()
        for _ in feature_batches(network, train, args.batch_size, args.device, "extraction"):
            pass
        extraction = time.perf_counter() - start
        print(f"bare feature extraction (1 pass over training images): {extraction:8.1f} s")

        spec = load_builtin_spec("ds001506")
        x = rng.standard_normal((args.train, args.voxels)).astype(np.float32)
        x_test = rng.standard_normal((args.test, args.voxels)).astype(np.float32)
        names = [p.stem for p in train]
        sample_set = SampleSet(
            samples={"training": x, "natural": x_test},
            stimuli={"training": names, "natural": [p.stem for p in test]},
            train_runs=np.repeat(np.arange(args.train // 50 + 1), 50)[: args.train],
            voxels=np.zeros((args.voxels, 3), dtype=int),
            rois={"VC": np.ones(args.voxels, dtype=bool)},
            blocks=pd.DataFrame(),
        )
        spec = dataclasses.replace(spec, sets={k: spec.sets[k] for k in ("training", "natural")})
        inputs = DecodeInputs(train, np.arange(args.train), test, {"natural": np.arange(args.test)})
        config = Config(
            bids_dir=root,
            output_dir=root / "out",
            analysis_level="participant",
            work_dir=root / "work",
            batch_size=args.batch_size,
        )
        start = time.perf_counter()
        results = decode_ridge(config, network, spec, sample_set, inputs, ["VC"], args.device)["VC"]
        total = time.perf_counter() - start
        decoded = sum(r.decoded["natural"].size for r in results)
        print(
            f"ridge decode stage, all layers:                      {total:8.1f} s "
            f"({decoded:,} decoded values)"
        )
        print(
            f"decoding time beyond one extraction pass:            {total - extraction:8.1f} s"
            f"  (ratio to extraction: {total / extraction:.2f}x)"
        )
        print(f"peak RSS: {peak_rss_gib():.2f} GiB")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
