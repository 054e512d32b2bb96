"""Tiny runs of the bench scripts, so that none of them can break unnoticed.

Each runs at toy sizes on the CPU and checks that it printed its figures; the figures themselves
are for the people who run the benches at full size (see each script's docstring).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_streaming_bench(capsys):
    bench_module("streaming").main(
        ["--network", "builtin", "--train", "12", "--test", "3", "--voxels", "20", "--compare",
         "--device", "cpu", "--batch-size", "5"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "ratio to extraction" in out and "peak RSS" in out
    assert "cached vs uncached: decoded features max relative difference" in out


def test_recon_bench(capsys):
    bench_module("recon").main(["--batches", "1", "2", "--iterations", "3", "--device", "cpu"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(row[0], row[2]) for row in rows] == [
        ("1", "gd"),
        ("1", "lbfgs"),
        ("2", "gd"),
        ("2", "lbfgs"),
    ]
    assert all(row[-1].endswith("x") and float(row[5]) >= 1.0 for row in rows)  # passes/iter


def test_decoders_bench_without_its_peers(capsys):
    bench_module("decoders").main(
        ["--samples", "100", "--voxels", "30", "--test", "5", "--units", "40",
         "--selection-units", "10"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "VoxelSelectionDecoder:" in out and "FastL2LiR skipped" in out


def test_scale_bench_point(simulated_dataset, tmp_path):
    scale = bench_module("scale")
    point = scale.measure_point(
        simulated_dataset, tmp_path / "work", "cpu", {**scale.BASE, "layers": ["fc2"]}, 1
    )
    assert point["seconds"] > 0 and point["peak_mib"] > 0


@pytest.mark.slow
def test_gpu_script_smoke_run_on_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "SKIP_INSTALL": "1", "OUT": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(BENCH / "gpu.sh"), "--smoke"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.split("== summary")[1]
    for needle in ("decode beyond one extraction pass", "recon batch 2 lbfgs", "recon stage took",
                   "whole participant run"):  # fmt: skip
        assert needle in summary
