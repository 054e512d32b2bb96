"""Shared fixtures: a small simulated dataset (built once per session) and real ds001506 files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bids_recon.io.weights import WEIGHTS_DIR_ENV
from bids_recon.simulate import simulate_dataset

REPO = Path(__file__).resolve().parents[1]
# tests/ mirrors bids_recon/ in subfolders; their modules import the shared helpers from here
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def ds001506_dir() -> Path:
    """Real ds001506 events and sidecars of sub-01 (tests/data/ds001506, see its README)."""
    return REPO / "tests" / "data" / "ds001506"


@pytest.fixture(scope="session")
def simulated_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-subject small simulated dataset (read-only by convention: do not modify)."""
    return simulate_dataset(tmp_path_factory.mktemp("sim") / "ds", n_subjects=1, seed=3)


@pytest.fixture(scope="session")
def simulated_dataset_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-subject small simulated dataset."""
    return simulate_dataset(tmp_path_factory.mktemp("sim2") / "ds", n_subjects=2, seed=0)


@pytest.fixture(autouse=True)
def _no_weights_folder_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A weights folder set where the tests run must not change what they find."""
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
