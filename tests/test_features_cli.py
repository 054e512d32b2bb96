"""bids_recon-features: the app's feature extraction for a list or folder of images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bids_recon.config import Config
from bids_recon.features.extract import network_key
from bids_recon.features.networks import build_network
from bids_recon.features_cli import main
from bids_recon.io.feature_store import FeatureCache
from bids_recon.workflows.decode import _test_features

LAYERS = ["conv1", "fc2"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for k, size in enumerate([(40, 30), (64, 64), (20, 50), (33, 33), (80, 60)]):
        path = folder / f"img{k}.{'png' if k % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def run(*args) -> int:
    return main([*map(str, args), "--device", "cpu"])


def test_one_array_per_layer_and_the_names(images, tmp_path):
    out = tmp_path / "sub" / "feats.npz"
    assert run(*images, "--network", "builtin", "--layers", *LAYERS, "--out", out) == 0
    data = np.load(out, allow_pickle=False)
    assert sorted(data.files) == sorted([*LAYERS, "names"])
    assert list(data["names"]) == [p.stem for p in images]
    assert data["conv1"].shape == (5, 16 * 64 * 64) and data["fc2"].shape == (5, 100)
    assert data["fc2"].dtype == np.float32 and (data["conv1"] < 0).any()  # pre-ReLU
    folder = tmp_path / "folder.npz"  # a folder is expanded to its images, sorted by name
    assert run(images[0].parent, "--network", "builtin", "--layers", "fc2", "--out", folder) == 0
    assert list(np.load(folder)["names"]) == sorted(p.stem for p in images)


def test_equals_the_apps_true_features(images, tmp_path):
    out = tmp_path / "feats.npz"
    assert run(*images, "--network", "builtin", "--batch-size", "2", "--out", out) == 0
    network = build_network("builtin")
    config = dataclasses.replace(
        Config(tmp_path, tmp_path / "out", "participant"), work_dir=tmp_path / "work", nprocs=1
    )
    cache = FeatureCache(tmp_path / "work", network_key(network, None), images, 2**62)
    true = _test_features(config, network, images, network.unit_shapes(), cache, "cpu")
    data = np.load(out)
    for layer in network.layers:
        np.testing.assert_allclose(data[layer], true[layer], rtol=1e-5, atol=1e-5)


def test_bad_inputs_exit_with_codes_and_write_nothing(images, tmp_path, caplog):
    out = tmp_path / "f.npz"
    assert run(tmp_path / "absent.png", "--network", "builtin", "--out", out) == 66
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert run(images[0], broken, "--network", "builtin", "--out", out) == 65
    assert str(broken) in caplog.text
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "img0.png").write_bytes(images[1].read_bytes())
    assert run(images[0], twin / "img0.png", "--network", "builtin", "--out", out) == 64
    assert run(images[0], "--network", "builtin", "--out", tmp_path / "f.txt") == 64
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
