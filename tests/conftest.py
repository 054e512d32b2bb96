"""Shared fixtures: a small simulated dataset (built once per session) and the reference files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bids_recon.simulate import simulate_dataset

REPO = Path(__file__).resolve().parents[1]
# tests/ mirrors bids_recon/ in subfolders; their modules import the shared helpers from here
sys.path.insert(0, str(Path(__file__).resolve().parent))
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference: real ds001506 events/sidecars and the method notes."""
    if not (REFERENCE / "ds001506").is_dir():
        pytest.skip(f"reference files not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def simulated_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-subject small simulated dataset (read-only by convention: do not modify)."""
    return simulate_dataset(tmp_path_factory.mktemp("sim") / "ds", n_subjects=1, seed=3)


@pytest.fixture(scope="session")
def simulated_dataset_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-subject small simulated dataset."""
    return simulate_dataset(tmp_path_factory.mktemp("sim2") / "ds", n_subjects=2, seed=0)
