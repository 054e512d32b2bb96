"""Scaling benchmark: how time and memory grow with training blocks, voxels, units, test images.

    .venv/bin/python bench/scale.py [--dataset DIR] [--report bench/scale.md] [--device cpu]

On the simulated dataset at medium size (one participant; simulated into ``--dataset`` when the
folder does not exist), the samples are computed once; then each measured point runs in a fresh
process, so its peak resident memory is its own:

- decoding (ridge, built-in network) with a subset of the training runs (training blocks), a
  random subset of the ROI's voxels, or a choice of layers (units); the other two at the base;
- reconstruction (L-BFGS, built-in network, 20 iterations, batches of 8) of N test images.

For each factor it prints the points and the exponent b of a least-squares fit
time = a * x^b in log-log space (and the same for memory above the process's baseline after
imports and loading the samples), and writes the tables to ``--report`` as Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BASE = {"runs": 12, "voxel_fraction": 1.0, "layers": ["conv3"], "test_images": 0}
FACTORS = {
    "training blocks": ("runs", [3, 6, 12, 24]),
    "voxels": ("voxel_fraction", [0.125, 0.25, 0.5, 1.0]),
    "units": ("layers", [["fc1", "fc2"], ["conv3"], ["conv2"], ["conv1"], ["conv1", "conv2"]]),
    "test images": ("test_images", [8, 16, 32, 64]),
}


def rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def participant_config(dataset: Path, work: Path, device: str):
    from bids_recon.config import build_config

    return build_config(
        {
            "bids_dir": dataset,
            "output_dir": work / "out",
            "analysis_level": "participant",
            "work_dir": work / "work",
            "network": "builtin",
            "device": device,
            "skip_bids_validation": True,
        }
    )


def load_samples(dataset: Path, work: Path, device: str):
    """The participant's samples (computed once, then read from the work-folder cache)."""
    from bids_recon.specs import resolve_spec
    from bids_recon.workflows.participant import collect_all_inputs
    from bids_recon.workflows.samples import run_samples_stage

    config = participant_config(dataset, work, device)
    spec = resolve_spec(None, dataset)
    inputs = collect_all_inputs(config, spec, ["01"])["01"]
    return config, spec, inputs, run_samples_stage(config, spec, inputs)


def subset(sample_set, spec, runs: int, voxel_fraction: float, seed: int = 0):
    """Keep the first ``runs`` training runs and a random fraction of the voxels."""
    training = spec.training_set.name
    keep = sample_set.train_runs < runs
    rois = dict(sample_set.rois)
    roi = next(iter(rois))
    if voxel_fraction < 1:
        inside = np.flatnonzero(rois[roi])
        rng = np.random.default_rng(seed)
        chosen = rng.choice(inside, int(len(inside) * voxel_fraction), replace=False)
        rois[roi] = np.isin(np.arange(len(rois[roi])), chosen)
    samples = dict(sample_set.samples)
    samples[training] = samples[training][keep]
    stimuli = dict(sample_set.stimuli)
    stimuli[training] = [n for n, k in zip(stimuli[training], keep, strict=True) if k]
    return dataclasses.replace(
        sample_set,
        samples=samples,
        stimuli=stimuli,
        train_runs=sample_set.train_runs[keep],
        rois={roi: rois[roi]},
    )


def measure_point(dataset: Path, work: Path, device: str, point: dict, repeats: int) -> dict:
    """Run one point in this process and return its figures."""
    from bids_recon.features.extract import feature_batches
    from bids_recon.features.networks import build_network
    from bids_recon.recon.reconstruct import ReconSettings, reconstruct
    from bids_recon.workflows.decode import decode_inputs, decode_ridge

    config, spec, inputs, sample_set = load_samples(dataset, work, device)
    network = build_network("builtin", None, point["layers"])
    baseline = rss_mib()
    times = []
    for _ in range(repeats):  # the fastest of fresh runs (own feature cache each)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            start = time.perf_counter()
            if point["test_images"]:
                paths = sorted(inputs.stimulus_files.values())[: point["test_images"]]
                targets = {
                    layer: features.cpu().numpy()
                    for _, batch in feature_batches(network, paths, len(paths), device)
                    for layer, features in batch.items()
                }
                reconstruct(network, targets, ReconSettings("lbfgs", 20, 8, 0), device)
                size = {"test images": len(paths)}
            else:
                part = subset(sample_set, spec, point["runs"], point["voxel_fraction"])
                roi = next(iter(part.rois))
                decode_ridge(
                    dataclasses.replace(config, work_dir=Path(tmp)),
                    network,
                    spec,
                    part,
                    decode_inputs(spec, part, inputs.stimulus_files),
                    [roi],
                    device,
                )
                units = network.unit_counts()
                size = {
                    "training blocks": len(part.train_runs),
                    "voxels": int(part.rois[roi].sum()),
                    "units": sum(units.values()),
                    "estimate_mib": estimated_decode_mib(config, part, units),
                }
            times.append(time.perf_counter() - start)
    return {
        **size,
        "seconds": min(times),
        "peak_mib": rss_mib(),
        "above_baseline_mib": rss_mib() - baseline,
    }


def estimated_decode_mib(config, part, units: dict[str, int]) -> float:
    """The decode stage's own memory estimate (bids_recon.memory) for this point."""
    from bids_recon.io.feature_store import cached_layers
    from bids_recon.memory import DecodeSizes, decode_memory

    n_images = len(set(part.stimuli["training"]))
    sizes = DecodeSizes(
        n_samples=len(part.train_runs),
        n_images=n_images,
        n_test=sum(len(v) for k, v in part.stimuli.items() if k != "training"),
        n_voxels=int(next(iter(part.rois.values())).sum()),
        units=units,
    )
    cached = cached_layers(units, n_images, int(config.feature_cache_mb * 2**20), itemsize=2)
    parts = decode_memory(
        sizes, config.batch_size, "ridge", config.cv_units, config.cv_folds, cached
    )
    return sum(parts.values()) / 2**20


def table_row(r: dict, factor: str) -> str:
    estimate = f"{r['estimate_mib']:.0f}" if "estimate_mib" in r else "–"
    return (
        f"| {r[factor]:,} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | "
        f"{r['above_baseline_mib']:.0f} | {estimate} |"
    )


def exponent(x: list[float], y: list[float]) -> float:
    """Slope of log y against log x (least squares)."""
    return float(np.polyfit(np.log(x), np.log(np.maximum(y, 1e-9)), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dataset", type=Path, default=Path(tempfile.gettempdir()) / "bids_recon_scale" / "ds"
    )
    parser.add_argument("--report", type=Path, default=Path(__file__).with_name("scale.md"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="runs per point (fastest kept)")
    parser.add_argument("--point", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.dataset.parent / "work"
    if args.point:  # child process: one point
        print(
            json.dumps(
                measure_point(args.dataset, work, args.device, json.loads(args.point), args.repeats)
            )
        )
        return
    if not args.dataset.exists():
        from bids_recon.simulate import simulate_dataset

        simulate_dataset(args.dataset, n_subjects=1, seed=1, size="medium")
    load_samples(args.dataset, work, args.device)  # fill the samples cache once
    lines = [
        "# Scaling of bids_recon (simulated dataset, medium size)",
        "",
        f"One participant, built-in network, device {args.device}, "
        f"{torch.get_num_threads()} threads; produced by `bench/scale.py`. Base point: "
        f"{BASE['runs']} training runs, all voxels of the ROI, layer conv3. Memory is the "
        "peak resident set size of the point's process above its baseline after imports and "
        "loading the samples; the estimate is bids_recon's own up-front decode estimate "
        "(`bids_recon/memory.py`, without the process baseline). "
        f"Time: fastest of {args.repeats} runs. Fitted exponent b: "
        "least squares of log y = log a + b log x.",
    ]
    for factor, (key, values) in FACTORS.items():
        rows = []
        for value in values:
            point = {**BASE, key: value}
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--dataset",
                    str(args.dataset),
                    "--device",
                    args.device,
                    "--repeats",
                    str(args.repeats),
                    "--point",
                    json.dumps(point),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(factor, rows[-1], flush=True)
        x = [r[factor] for r in rows]
        t_exp = exponent(x, [r["seconds"] for r in rows])
        m_exp = exponent(x, [r["above_baseline_mib"] for r in rows])
        lines += [
            "",
            f"## {factor}",
            "",
            f"| {factor} | seconds | peak RSS (MiB) | above baseline (MiB) | estimate (MiB) |",
            "|---:|---:|---:|---:|---:|",
            *(table_row(r, factor) for r in rows),
            "",
            f"Fitted exponent: time {t_exp:.2f}, memory above baseline {m_exp:.2f}.",
        ]
        print(f"{factor}: time exponent {t_exp:.2f}, memory exponent {m_exp:.2f}", flush=True)
    args.report.write_text("\n".join(lines) + "\n")
    print(f"written {args.report}")


if __name__ == "__main__":
    main()
