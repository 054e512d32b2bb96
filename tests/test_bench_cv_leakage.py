"""Smoke run of bench/cv_leakage.py (alpha with and without image-exclusive folds)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "cv_leakage.py"


def test_cv_leakage_bench_runs_both_sides(simulated_dataset, tmp_path):
    spec = importlib.util.spec_from_file_location("cv_leakage", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.measure(simulated_dataset, tmp_path, ["fc2"])
    assert list(table.index) == ["fc2"]
    assert table.notna().all().all() and (table.filter(like="alpha") > 0).all().all()
