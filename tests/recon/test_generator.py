"""The lab's fc7 generator: bdpy state-dict layout, transposed convolutions, act_range bounds."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from bids_recon.errors import InputDataError, MissingInputError
from bids_recon.features.networks import build_network
from bids_recon.features.preprocess import Preprocessing
from bids_recon.recon.generator import (
    ALIASES,
    FC7Generator,
    GeneratorPrior,
    load_generator,
    load_prior,
    read_act_range,
    to_network_input,
)
from bids_recon.recon.reconstruct import ReconSettings, reconstruct


@pytest.fixture(scope="module")
def generator_state():
    torch.manual_seed(0)
    return FC7Generator().state_dict()


def bdpy_layout(state):
    """bdpy's AlexNetGenerator state dict: every tensor also under its Sequential alias."""
    out = dict(state)
    for alias, name in ALIASES.items():
        for param in ("weight", "bias"):
            out[f"{alias}.{param}"] = state[f"{name}.{param}"]
    return out


def test_upsampling_layers_are_transposed_convolutions_as_in_caffe():
    generator = FC7Generator()
    for name in ("deconv5", "conv5_1", "deconv4", "conv4_1", "conv3_1", "deconv0"):
        assert isinstance(getattr(generator, name), nn.ConvTranspose2d)
    assert generator.conv5_1.weight.shape == (256, 512, 3, 3)  # (in, out, k, k): Caffe's layout


def test_bdpy_state_dict_with_aliases_loads(tmp_path, generator_state):
    path = tmp_path / "generator_relu7.pt"
    torch.save(bdpy_layout(generator_state), path)
    loaded = load_generator(path)
    for key, value in generator_state.items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_disagreeing_alias_and_old_layout_are_refused(tmp_path, generator_state):
    bad = bdpy_layout(generator_state)
    bad["deconv.2.weight"] = bad["deconv.2.weight"] + 1
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(InputDataError, match="differ"):
        load_generator(tmp_path / "bad.pt")
    old = dict(generator_state)  # conv5_1 as an ordinary convolution: (out, in, k, k)
    old["conv5_1.weight"] = old["conv5_1.weight"].transpose(0, 1).contiguous()
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(InputDataError, match="transposed"):
        load_generator(tmp_path / "old.pt")


def test_conversion_to_torchvision_inputs_keeps_the_image():
    caffe, torchvision = Preprocessing("caffe", 224), Preprocessing("torchvision", 224)
    images = torch.randn(2, 3, 256, 256) * 60
    as_caffe = to_network_input(images, caffe)
    as_torchvision = to_network_input(images, torchvision)
    assert as_caffe.shape == as_torchvision.shape == (2, 3, 224, 224)
    assert torch.equal(as_caffe, images[..., 16:240, 16:240])  # the reference's centre crop
    assert torch.allclose(
        caffe.tensor_to_array(as_caffe), torchvision.tensor_to_array(as_torchvision), atol=1e-3
    )


def test_act_range_text_npy_and_bad_files(tmp_path, caplog):
    values = np.arange(4096) % 7 + 0.5
    text = tmp_path / "fc7.txt"
    text.write_text(" ".join(f"{v:g}" for v in values) + "\n")
    assert np.array_equal(read_act_range(text), values)
    np.save(tmp_path / "fc7.npy", values)
    assert np.array_equal(read_act_range(tmp_path / "fc7.npy"), values)
    longer = tmp_path / "long.txt"
    longer.write_text(" ".join(["1"] * 4100))
    with caplog.at_level(logging.WARNING):
        assert len(read_act_range(longer)) == 4096
    assert "first 4096" in caplog.text
    short = tmp_path / "short.txt"
    short.write_text("1 2 3")
    with pytest.raises(InputDataError, match="3 values"):
        read_act_range(short)
    negative = tmp_path / "neg.txt"
    negative.write_text(" ".join(["-1"] * 4096))
    with pytest.raises(InputDataError, match="non-negative"):
        read_act_range(negative)
    words = tmp_path / "words.txt"
    words.write_text("a b c")
    with pytest.raises(InputDataError, match="not numbers"):
        read_act_range(words)
    with pytest.raises(MissingInputError):
        read_act_range(tmp_path / "absent.txt")


def test_latent_stays_within_the_act_range(tmp_path, generator_state, caplog):
    torch.save(generator_state, tmp_path / "g.pt")
    network = build_network("builtin", layers=["conv1", "fc2"])
    targets = {
        k: np.random.default_rng(0).normal(size=(2, n)) for k, n in network.unit_counts().items()
    }
    with caplog.at_level(logging.WARNING):
        unbounded = load_prior(tmp_path / "g.pt", None)
    assert unbounded.upper is None and "below by 0 only" in caplog.text
    zero = tmp_path / "zero.txt"
    zero.write_text(" ".join(["0"] * 4096))
    prior = load_prior(tmp_path / "g.pt", zero)
    assert isinstance(prior, GeneratorPrior) and "act_range" in prior.bounds
    result = reconstruct(
        network, targets, ReconSettings("generator", 3, batch_size=2), "cpu", prior
    )
    with torch.no_grad():  # upper bound 0: the latent cannot leave 0
        expected = to_network_input(prior.generator(torch.zeros(1, 4096)), network.preprocessing)
    rgb = network.preprocessing.tensor_to_array(expected)[0].numpy()
    assert np.allclose(result.raw[0], rgb, atol=1e-4) and np.allclose(result.raw[1], rgb, atol=1e-4)
