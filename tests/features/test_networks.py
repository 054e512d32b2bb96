"""Feature networks: VGG19 taps (pre-ReLU), weights loading, built-in net, preprocessing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from bids_recon.errors import InputDataError, MissingInputError, UsageError
from bids_recon.features.networks import VGG19_LAYERS, build_network
from bids_recon.features.preprocess import (
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN,
    Preprocessing,
    neutral_image,
)

EXPECTED_UNITS = {
    "conv1_1": (64, 224, 224),
    "conv2_1": (128, 112, 112),
    "conv3_1": (256, 56, 56),
    "conv4_1": (512, 28, 28),
    "conv5_4": (512, 14, 14),
    "fc6": (4096,),
    "fc7": (4096,),
    "fc8": (1000,),
}


@pytest.fixture(scope="module")
def vgg19_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "vgg19_random.pth"
    torch.save(torchvision.models.vgg19(weights=None).state_dict(), path)
    return path


def test_vgg19_has_the_papers_19_layers_pre_relu(vgg19_weights):
    network = build_network("vgg19", vgg19_weights, preprocessing="caffe")
    assert network.layers == list(VGG19_LAYERS) and len(network.layers) == 19
    assert network.preprocessing == Preprocessing("caffe", 224)
    x = torch.randn(1, 3, 224, 224) * 50
    with torch.no_grad():
        out = network(x)
        conv1_2 = network.model.features[:3](x)  # conv1_1, relu, conv1_2: no ReLU after
        fc8 = network.model(x)
    assert torch.allclose(out["conv1_2"], conv1_2)
    assert (out["conv1_2"] < 0).any() and (out["fc6"] < 0).any()  # pre-ReLU values
    assert torch.allclose(out["fc8"], fc8)
    for layer, shape in EXPECTED_UNITS.items():
        assert tuple(out[layer].shape[1:]) == shape


def test_layer_subset_keeps_forward_order(vgg19_weights):
    network = build_network(
        "vgg19", vgg19_weights, layers=["fc7", "conv1_1"], preprocessing="caffe"
    )
    assert network.layers == ["conv1_1", "fc7"]
    with pytest.raises(UsageError, match="conv9_9"):
        build_network("vgg19", vgg19_weights, layers=["conv9_9"], preprocessing="caffe")


def test_vgg19_without_weights_explains_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingInputError, match="--weights"):
        build_network("vgg19")


def test_vgg19_weights_from_the_torch_home_cache(vgg19_weights, tmp_path, monkeypatch):
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "vgg19-dcbb9e9d.pth").symlink_to(vgg19_weights)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(InputDataError, match="does not match"):  # random weights: wrong hash
        build_network("vgg19")


def test_hash_named_file_is_verified(tmp_path):
    state = build_network("builtin").model.state_dict()
    good = tmp_path / "net.pth"
    torch.save(state, good)
    import hashlib

    prefix = hashlib.sha256(good.read_bytes()).hexdigest()[:8]
    named = tmp_path / f"net-{prefix}.pth"
    good.rename(named)
    assert build_network("builtin", named).layers  # the right hash loads
    bad = tmp_path / "net-00000000.pth"
    bad.write_bytes(named.read_bytes())
    with pytest.raises(InputDataError, match="does not match"):
        build_network("builtin", bad)


class Payload:
    def __reduce__(self):
        return (print, ("this would run arbitrary code",))


def test_weights_are_loaded_with_weights_only(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"conv1.weight": Payload()}, handle)
    with pytest.raises(InputDataError, match="safely"):
        build_network("builtin", path)


def test_builtin_network_is_deterministic_and_small():
    a, b = build_network("builtin"), build_network("builtin")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out_a, out_b = a(x), b(x)
    assert all(torch.equal(out_a[k], out_b[k]) for k in out_a)
    assert a.unit_shapes() == {
        "conv1": (16, 64, 64),
        "conv2": (32, 32, 32),
        "conv3": (64, 16, 16),
        "fc1": (256,),
        "fc2": (100,),
    }


def test_any_torchvision_model_with_chosen_layers(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    network = build_network("resnet18", path, layers=["layer1.0.conv1", "fc"])
    assert network.preprocessing.kind == "torchvision"
    shapes = network.unit_shapes()
    assert shapes == {"layer1.0.conv1": (64, 56, 56), "fc": (1000,)}
    with pytest.raises(UsageError, match="torchvision model"):
        build_network("notanet", path)
    with pytest.raises(MissingInputError, match="--weights"):
        build_network("resnet18")


@pytest.mark.parametrize("kind", ["caffe", "torchvision"])
def test_preprocessing_round_trip(kind):
    prep = Preprocessing(kind, 8)
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    x = prep.array_to_tensor(rgb)
    assert x.shape == (2, 3, 8, 8)
    assert np.allclose(prep.tensor_to_array(x).numpy(), rgb, atol=1e-3)


def test_caffe_preprocessing_is_bgr_minus_mean():
    prep = Preprocessing("caffe", 4)
    red = Image.new("RGB", (10, 6), (255, 0, 0))
    x = prep.image_to_tensor(red)
    assert x.shape == (3, 4, 4)  # stretched, not cropped
    assert np.allclose(
        x[:, 0, 0].numpy(),
        [0 - CAFFE_MEAN_BGR[0], 0 - CAFFE_MEAN_BGR[1], 255 - CAFFE_MEAN_BGR[2]],
        atol=1e-3,
    )


def he_vgg19_state(first_layer_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """VGG19 weights with the activation scale of a trained network used as torchvision's.

    He-uniform weights give outputs with an SD of a few units for torchvision-normalized
    inputs (like a trained classifier); dividing the first layer by the ratio of the input
    scales (~58) gives a network that expects Caffe inputs instead.
    """
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, value in torchvision.models.vgg19(weights=None).state_dict().items():
        bound = (6.0 / value[0].numel()) ** 0.5 if key.endswith("weight") else 0.1
        state[key] = torch.empty(value.shape).uniform_(-bound, bound, generator=generator)
    state["features.0.weight"] /= first_layer_scale
    return state


def save_hash_named(state, folder, stem="vgg19"):
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / "weights.pth"
    torch.save(state, temporary)
    digest = hashlib.sha256(temporary.read_bytes()).hexdigest()[:8]
    return temporary.rename(folder / f"{stem}-{digest}.pth")


@pytest.fixture(scope="module")
def torchvision_like(tmp_path_factory):
    """The same torchvision-scaled weights saved under torchvision's and the lab's names."""
    folder = tmp_path_factory.mktemp("pairing")
    state = he_vgg19_state()
    lab = folder / "lab" / "VGG_ILSVRC_19_layers.pt"
    lab.parent.mkdir()
    torch.save(state, lab)
    return save_hash_named(state, folder / "tv"), lab


def test_torchvision_published_file_gets_torchvision_preprocessing(torchvision_like):
    published, _ = torchvision_like
    network = build_network("vgg19", published, layers=["conv1_1"])
    info = network.weights_info
    assert network.preprocessing.kind == "torchvision" == info.preprocessing
    assert info.source == "torchvision" and info.check.startswith("passed")
    sidecar = info.as_dict()
    assert sidecar["File"] == published.name and "torchvision" in sidecar["Source"]


def test_wrong_pairing_is_caught_with_both_options_explained(torchvision_like):
    _, lab_named = torchvision_like  # torchvision-trained weights under the lab's file name
    with pytest.raises(UsageError) as caught:
        build_network("vgg19", lab_named, layers=["conv1_1"])
    message = str(caught.value)
    assert caught.value.exit_code == 64
    assert "far above" in message and str(lab_named) in message
    assert "--preprocessing torchvision" in message and "--preprocessing caffe" in message


@pytest.mark.slow
def test_caffe_weights_pass_the_check_and_explicit_preprocessing_skips_it(tmp_path):
    lab = tmp_path / "VGG_ILSVRC_19_layers.pt"
    torch.save(he_vgg19_state(first_layer_scale=58.0), lab)
    network = build_network("vgg19", lab, layers=["fc7"])
    assert network.preprocessing.kind == "caffe"
    assert network.weights_info.source == "kamitani-lab"
    assert network.weights_info.check.startswith("passed")
    # the same Caffe-scaled weights under torchvision's convention: output far too small
    unknown = tmp_path / "mine.pth"
    torch.save(he_vgg19_state(first_layer_scale=58.0), unknown)
    assert build_network("vgg19", unknown, layers=["fc7"]).weights_info.source == "unknown"
    with pytest.raises(UsageError, match="far below"):
        build_network("vgg19", save_hash_named(torch.load(unknown), tmp_path / "tv"))
    given = build_network("vgg19", unknown, layers=["fc7"], preprocessing="torchvision")
    assert given.weights_info.check.startswith("skipped")
    assert given.weights_info.reason == "given by --preprocessing"


def test_neutral_image_has_natural_image_statistics():
    image = neutral_image(224)
    assert image.shape == (224, 224, 3) and image.dtype == np.float32
    assert np.allclose(image.mean(axis=(0, 1)), np.array(IMAGENET_MEAN) * 255, atol=6)
    assert 40 < image.std() < 70
    assert np.array_equal(image, neutral_image(224))
