"""Parity with bdpy, against reference outputs produced by bdpy's own code (bench/parity_bdpy.py).

The weights files are rebuilt here from the committed key lists with the bench's deterministic
filler (the same function made them in bdpy's environment), saved as the lab saves them, and
loaded through bids_recon's own loaders: no bdpy is needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "parity_bdpy.py"


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("parity_bdpy", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    vgg19, generator = module.write_lab_weights(tmp_path_factory.mktemp("lab"))
    return module, vgg19, generator


def test_vgg19_features_and_generator_images_equal_bdpys(parity):
    module, vgg19, generator = parity
    errors = module.compare(module.EXPECTED, vgg19, generator)
    assert set(module.LAYERS) <= set(errors) and "generator crop 224" in errors
    worst = {name: value for name, value in errors.items() if value > module.TARGET}
    assert not worst, worst


def test_lab_weights_files_keep_bdpys_keys(parity):
    import torch

    module, vgg19, generator = parity
    state = torch.load(generator, weights_only=True)
    assert "defc.0.weight" in state and "defc7.weight" in state  # bdpy's duplicate registration
    assert list(torch.load(vgg19, weights_only=True))[:2] == [
        "features.0.weight",
        "features.0.bias",
    ]


def test_features_command_with_the_lab_vgg19(parity, tmp_path):
    import numpy as np

    from bids_recon.features_cli import main

    module, vgg19, _ = parity
    images = sorted((module.EXPECTED / "images").glob("*.png"))
    out = tmp_path / "F.npz"
    layers = ["conv1_1", "conv3_1", "conv5_4", "fc7"]
    args = ["--network", "vgg19", "--weights", str(vgg19), "--preprocessing", "caffe"]
    assert main([*map(str, images), *args, "--layers", *layers, "--out", str(out)]) == 0
    data = np.load(out)
    assert sorted(data.files) == sorted([*layers, "names"])
    assert list(data["names"]) == [p.stem for p in images]
    assert data["conv1_1"].shape == (3, 64 * 224 * 224) and data["conv5_4"].shape == (3, 512 * 196)
    reference = np.load(module.EXPECTED / "reference.npz")
    scale = float(reference["fc7/stats"][2])
    assert module.relative_error(data["fc7"], reference["fc7/full"], scale) <= module.TARGET


@pytest.mark.slow
def test_generator_reconstruction_end_to_end_with_the_lab_files(
    parity, simulated_dataset, tmp_path, monkeypatch
):
    """The lab's VGG19 and generator files (random weights) through a whole participant run.

    A spec with the training and natural sets only, and one session of each, keeps VGG19 on
    CPU to about a minute.
    """
    import json

    from helpers import participant_args

    from bids_recon._toml import dumps_toml, read_toml
    from bids_recon.cli import main
    from bids_recon.specs import BUILTIN_SPECS

    _, vgg19, generator = parity
    spec = read_toml(BUILTIN_SPECS["ds001506"], "ds001506 spec")
    spec["sets"] = {name: spec["sets"][name] for name in ("training", "natural")}
    spec_file = tmp_path / "natural.toml"
    spec_file.write_text(dumps_toml(spec))
    act_range = tmp_path / "fc7.txt"
    act_range.write_text(" ".join(["3"] * 4096))
    args = participant_args(
        simulated_dataset,
        tmp_path,
        "--dataset-spec",
        spec_file,
        "--session-label",
        "perceptionNaturalImageTraining01",
        "perceptionNaturalImageTest01",
        "--network",
        "vgg19",
        "--weights",
        vgg19,
        "--preprocessing",
        "caffe",
        "--layers",
        "fc7",
        "fc8",
        "--recon-method",
        "generator",
        "--generator-weights",
        generator,
        "--generator-act-range",
        act_range,
        "--recon-iterations",
        "2",
        "--recon-batch-size",
        "10",
    )
    from bids_recon.workflows import context

    builds = []
    build = context.build_network
    monkeypatch.setattr(context, "build_network", lambda *a: builds.append(a) or build(*a))
    assert main(args) == 0
    assert len(builds) == 1  # VGG19 loaded, hashed and checked once for the whole run
    out = tmp_path / "out"
    images = sorted((out / "sub-01" / "recon").glob("*_image.png"))
    assert len(images) == 20  # 10 natural test images: decoded from VC, and oracle
    meta = json.loads(images[0].with_suffix(".json").read_text())
    assert meta["Method"] == "generator" and meta["Generator"] == generator.name
    assert "act_range of fc7.txt" in meta["LatentBounds"]
    assert meta["Weights"]["File"] == vgg19.name and "Kamitani" in meta["Weights"]["Source"]
    decoder = json.loads(next((out / "sub-01" / "models").glob("*_decoder.json")).read_text())
    assert decoder["Weights"]["Preprocessing"] == "caffe"
    report = (out / "sub-01.html").read_text()
    assert "Generator prior" in report and "VGG_ILSVRC_19_layers.pt" in report
