"""Sample numerics against brute-force loops on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from bids_recon.fmri.samples import (
    average_by_label,
    block_samples,
    block_windows,
    clean_run,
    detrend_linear,
    standardize_by_training,
)

RNG = np.random.default_rng(0)


def naive_windows(onsets, durations, n_volumes, tr, delay, start_time=0.0):
    out = np.zeros((len(onsets), n_volumes))
    for b, (onset, duration) in enumerate(zip(onsets, durations, strict=True)):
        volumes = [
            k
            for k in range(n_volumes)
            if onset + delay <= k * tr + start_time < onset + duration + delay
        ]
        for k in volumes:
            out[b, k] = 1.0 / len(volumes)
    return out


@pytest.mark.parametrize(("tr", "start"), [(2.0, 0.0), (1.5, 0.0), (2.0, 1.0), (0.8, 0.4)])
def test_block_windows_equal_naive_loop(tr, start):
    onsets = np.array([32.0, 40.0, 48.0, 60.0, 100.0])
    durations = np.array([8.0, 8.0, 12.0, 6.0, 8.0])
    n_volumes = int(120 / tr)
    fast = block_windows(onsets, durations, n_volumes, tr, 4.0, start)
    assert np.allclose(fast, naive_windows(onsets, durations, n_volumes, tr, 4.0, start))


def test_eight_second_blocks_at_tr_two_take_four_volumes():
    windows = block_windows([32.0], [8.0], 239, 2.0, 4.0)
    assert np.flatnonzero(windows[0]).tolist() == [18, 19, 20, 21]
    assert np.isclose(windows.sum(), 1.0)


def test_block_samples_equal_naive_average():
    series = RNG.normal(size=(60, 7))
    windows = block_windows([10.0, 30.0], [8.0, 12.0], 60, 2.0, 4.0)
    expected = [
        series[[k for k in range(60) if 14 <= 2 * k < 22]].mean(0),
        series[[k for k in range(60) if 34 <= 2 * k < 46]].mean(0),
    ]
    assert np.allclose(block_samples(series, windows), expected)


def test_average_by_label_equals_loop():
    samples = RNG.normal(size=(9, 4))
    labels = ["b", "a", "b", "c", "a", "b", "c", "c", "a"]
    unique, averaged = average_by_label(samples, labels)
    assert unique == ["b", "a", "c"]
    for row, label in zip(averaged, unique, strict=True):
        assert np.allclose(row, samples[[i for i, x in enumerate(labels) if x == label]].mean(0))


def test_detrend_removes_line_keeps_mean():
    t = np.arange(100.0)
    series = np.column_stack([5 + 0.3 * t, 2 - 0.1 * t]) + RNG.normal(0, 0.01, (100, 2))
    out = detrend_linear(series)
    assert np.allclose(out.mean(0), series.mean(0))
    assert np.abs(np.polyfit(t, out, 1)[0]).max() < 1e-10


def test_clean_run_zscore_and_constant_voxels():
    series = np.column_stack([RNG.normal(100, 3, 80), np.full(80, 50.0)])
    out = clean_run(series, 2.0)
    assert np.allclose(out[:, 0].mean(), 0) and np.isclose(out[:, 0].std(), 1)
    assert np.all(out[:, 1] == 0)


def test_clean_run_percent_signal_change_against_initial_rest():
    series = np.full((100, 1), 1000.0)
    series[40:45] = 1010.0  # a +1 % response after the baseline
    out = clean_run(series, 2.0, normalize="psc", baseline_volumes=16)
    assert abs(out[:16].mean()) < 0.05
    assert np.allclose(out[40:45], 1.0, atol=0.1)


def test_clean_run_high_pass_removes_slow_drift():
    t = np.arange(300) * 2.0
    fast = np.sin(2 * np.pi * t / 20)
    series = (500 + 5 * np.sin(2 * np.pi * t / 600) + fast)[:, None]
    out = clean_run(series, 2.0, detrend="highpass", high_pass=0.01)
    assert np.corrcoef(out[:, 0], fast)[0, 1] > 0.99


def test_clean_run_regresses_confounds():
    confound = RNG.normal(size=(100, 1))
    series = 3 * confound + RNG.normal(0, 0.1, (100, 1)) + 500
    out = clean_run(series, 2.0, confounds=confound)
    assert abs(np.corrcoef(out[:, 0], confound[:, 0])[0, 1]) < 0.05


def test_standardize_by_training_flags_zero_variance():
    train = np.column_stack([RNG.normal(size=20), np.ones(20)])
    mean, sd, keep = standardize_by_training(train)
    assert keep.tolist() == [True, False]
    assert np.isclose(sd[0], train[:, 0].std(ddof=1))
