"""Weights files found by name: the weights folder, then torch's hub cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from bids_recon.cli import parse_config
from bids_recon.errors import UsageError
from bids_recon.features.networks import resolve_weights
from bids_recon.io.weights import WEIGHTS_DIR_ENV, find_weights, weights_dirs


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """A weights folder and a torch home, both empty; XDG_CACHE_HOME elsewhere."""
    weights, torch_home = tmp_path / "weights", tmp_path / "torch"
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(weights))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return weights, torch_home / "hub" / "checkpoints"


def test_the_weights_folder_comes_before_the_torch_cache(folders):
    weights, checkpoints = folders
    assert weights_dirs() == [weights, checkpoints]
    assert find_weights(["a.pt"]) is None
    in_cache = _touch(checkpoints / "a.pt")
    assert find_weights(["a.pt"]) == in_cache
    in_folder = _touch(weights / "a.pt")
    assert find_weights(["b.pt", "a.pt"]) == in_folder
    # within one folder the names are tried in order; subfolders are part of a name
    nested = _touch(weights / "sub" / "b.pt")
    assert find_weights(["sub/b.pt", "a.pt"]) == nested


def test_torch_home_defaults_to_the_xdg_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert weights_dirs() == [tmp_path / "torch" / "hub" / "checkpoints"]


def test_vgg19_prefers_the_labs_file_in_its_archive_folder(folders):
    weights, checkpoints = folders
    _touch(checkpoints / "vgg19-dcbb9e9d.pth")
    lab = _touch(weights / "VGG_ILSVRC_19_layers" / "VGG_ILSVRC_19_layers.pt")
    _touch(weights / "vgg19-dcbb9e9d.pth")
    assert resolve_weights("vgg19", None) == lab


def test_generator_files_come_from_the_weights_folder(folders, simulated_dataset, tmp_path):
    weights, _ = folders
    args = [str(simulated_dataset), str(tmp_path / "out"), "participant"]
    with pytest.raises(UsageError, match="generator_relu7.pt"):
        parse_config([*args, "--recon-method", "generator"])
    generator = _touch(
        weights / "bvlc_reference_caffenet_generator_ILSVRC2012_Training" / "generator_relu7.pt"
    )
    config = parse_config([*args, "--recon-method", "generator"])
    assert (config.generator_weights, config.generator_act_range) == (generator, None)
    act_range = _touch(weights / "act_range" / "3x" / "fc7.txt")
    config = parse_config([*args, "--recon-method", "generator"])
    assert config.generator_act_range == act_range
    given = _touch(tmp_path / "mine.pt")
    config = parse_config([*args, "--recon-method", "generator", "--generator-weights", str(given)])
    assert config.generator_weights == given
    # other methods do not pick up generator files
    assert parse_config(args).generator_weights is None
