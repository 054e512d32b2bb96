"""Decoder benchmark: RidgeDecoder vs himalaya KernelRidgeCV, VoxelSelectionDecoder vs FastL2LiR.

Run by hand (not a test):

    .venv/bin/pip install himalaya
    python3 -m venv /tmp/fl2venv && /tmp/fl2venv/bin/pip install "numpy<2" fastl2lir
    .venv/bin/python bench/decoders.py --fastl2lir-python /tmp/fl2venv/bin/python

fastl2lir 0.11 needs numpy<2, so it runs in its own virtual environment, in a subprocess that
reads the same data from a temporary .npz file. Synthetic data of realistic shape and SNR:
``--samples`` training samples (in runs of 50) × ``--voxels`` voxels driven by a low-dimensional
latent stimulus code plus noise, ``--test`` test stimuli, ``--units`` units per target layer.
Prints timings, accuracies and the ratios against the peers measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import PredefinedSplit

from bids_recon.decoding import RidgeDecoder, VoxelSelectionDecoder
from bids_recon.decoding.ridge import DEFAULT_ALPHAS, cv_folds
from bids_recon.evaluation.metrics import profile_correlation

FASTL2LIR_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from fastl2lir import FastL2LiR
    data = np.load(sys.argv[1])
    start = time.perf_counter()
    model = FastL2LiR().fit(data["X"], data["Y"], alpha=float(sys.argv[3]),
                            n_feat=int(sys.argv[4]))
    prediction = model.predict(data["X_test"])
    elapsed = time.perf_counter() - start
    np.save(sys.argv[2], prediction)
    print(json.dumps({"seconds": elapsed}))
""")


def synthetic(n, p, m, units, rng, latent=200):
    """Voxels and units driven by a shared latent code; voxel SNR about 0.3, unit SNR about 1."""
    z = rng.standard_normal((n + m, latent))
    x = z @ rng.standard_normal((latent, p)) * np.sqrt(0.3 / latent) + rng.standard_normal(
        (n + m, p)
    )
    y = z @ rng.standard_normal((latent, units)) / np.sqrt(latent) + rng.standard_normal(
        (n + m, units)
    )
    mean, sd = x[:n].mean(0), x[:n].std(0, ddof=1)
    x = ((x - mean) / sd).astype(np.float32)
    return x[:n], y[:n].astype(np.float32), x[n:], y[n:].astype(np.float32)


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def ridge_versus_himalaya(x, y, x_test, y_test, groups, alphas, cv):
    try:
        from himalaya.kernel_ridge import KernelRidgeCV
    except ImportError:
        print("himalaya is not installed: the ridge comparison is skipped (see the docstring)")
        return

    # warm up both (library initialization is not what is measured)
    RidgeDecoder(alphas=alphas[:2], cv=2).fit(x[:60], y[:60, :10]).predict(x_test)
    KernelRidgeCV(kernel="linear", alphas=np.asarray(alphas[:2]), cv=2).fit(
        x[:60], y[:60, :10]
    ).predict(x_test)

    ours, ours_s = timed(
        lambda: RidgeDecoder(alphas=alphas, cv=cv).fit(x, y, groups=groups).predict(x_test)
    )
    folds = cv_folds(len(x), cv, groups)
    test_fold = np.empty(len(x), dtype=int)
    for k, (_, valid) in enumerate(folds):
        test_fold[valid] = k
    model = KernelRidgeCV(
        kernel="linear",
        alphas=np.asarray(alphas),
        cv=PredefinedSplit(test_fold),
        solver_params={
            "n_targets_batch": 20_000,
            "n_alphas_batch": 5,
            "n_targets_batch_refit": 20_000,
        },
    )
    theirs, theirs_s = timed(lambda: model.fit(x, y).predict(x_test))
    r_ours = np.nanmean(profile_correlation(ours, y_test))
    r_theirs = np.nanmean(profile_correlation(np.asarray(theirs), y_test))
    units = y.shape[1]
    print(
        f"RidgeDecoder:           {ours_s:8.2f} s  {1e6 * ours_s / units:8.2f} us/unit  "
        f"mean test r {r_ours:.4f}"
    )
    print(
        f"himalaya KernelRidgeCV: {theirs_s:8.2f} s  {1e6 * theirs_s / units:8.2f} us/unit  "
        f"mean test r {r_theirs:.4f}"
    )
    print(
        f"  -> speed ratio {theirs_s / ours_s:.1f}x (target >= 10x); "
        f"accuracy difference {r_ours - r_theirs:+.4f} (target within 0.005)"
    )


def selection_versus_fastl2lir(x, y, x_test, python, alpha, n_voxels, device):
    y = (y - y.mean(0)) / y.std(0, ddof=1)
    units = y.shape[1]
    VoxelSelectionDecoder(alpha=alpha, n_voxels=10, device=device).fit(x[:60], y[:60, :5])
    ours_model = VoxelSelectionDecoder(
        alpha=alpha, n_voxels=n_voxels, chunk_size=256, device=device
    )
    ours, ours_s = timed(lambda: ours_model.fit(x, y).predict(x_test))
    print(
        f"VoxelSelectionDecoder:  {ours_s:8.2f} s  {1e3 * ours_s / units:8.3f} ms/unit "
        f"({units} units, {n_voxels} voxels, alpha {alpha}, {device})"
    )
    if python is None:
        print("  FastL2LiR skipped: pass --fastl2lir-python (see the module docstring)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data.npz", Path(tmp) / "prediction.npy"
        np.savez(
            data, X=x.astype(np.float64), Y=y.astype(np.float64), X_test=x_test.astype(np.float64)
        )
        result = subprocess.run(
            [python, "-c", FASTL2LIR_SCRIPT, str(data), str(out), str(alpha), str(n_voxels)],
            capture_output=True,
            text=True,
            check=True,
        )
        theirs_s = json.loads(result.stdout.strip().splitlines()[-1])["seconds"]
        theirs = np.load(out)
    print(f"FastL2LiR 0.11:         {theirs_s:8.2f} s  {1e3 * theirs_s / units:8.3f} ms/unit")
    print(
        f"  -> speed ratio {theirs_s / ours_s:.1f}x (target >= 10x); max |prediction "
        f"difference| {np.abs(ours - theirs).max():.2e} (target <= 1e-4)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--voxels", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=50)
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument(
        "--selection-units",
        type=int,
        default=1000,
        help="units for the voxel-selection comparison (FastL2LiR is slow)",
    )
    parser.add_argument("--fastl2lir-python", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x, y, x_test, y_test = synthetic(args.samples, args.voxels, args.test, args.units, rng)
    groups = np.arange(args.samples) // 50
    print(
        f"{args.samples} training samples x {args.voxels} voxels, {args.test} test stimuli, "
        f"{args.units} units"
    )
    ridge_versus_himalaya(x, y, x_test, y_test, groups, list(DEFAULT_ALPHAS), 5)
    selection_versus_fastl2lir(
        x, y[:, : args.selection_units], x_test, args.fastl2lir_python, 100.0, 500, args.device
    )


if __name__ == "__main__":
    main()
