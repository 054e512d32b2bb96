"""Feature networks with taps on named layers, returning pre-activation (pre-ReLU) outputs.

- ``vgg19``: the paper's VGG19 (taps conv1_1 ... conv5_4, fc6, fc7, fc8: the 19 layers). Its
  weights come from ``--weights`` or are found by name (:mod:`bids_recon.io.weights`): either the
  Kamitani lab's PyTorch conversion of Caffe's ``VGG_ILSVRC_19_layers`` (bdpy's ``VGG19``
  module, which the paper used) or torchvision's VGG19. Both files have the same state-dict
  keys, so the keys cannot tell them apart.
- ``builtin``: a small CNN with deterministic seeded weights, fast on CPU, for demos and tests.
- any other torchvision model by name, with user-chosen layers (module paths).

The preprocessing follows the weights (:func:`weights_info`): torchvision's published files
(``<model>-<sha256 prefix>.pth``, hash verified) get torchvision's convention; the lab's
conversion and VGG19 files of unknown provenance get the paper's Caffe convention. Unless
``--preprocessing`` states the pairing, :func:`check_pairing` runs the network once on a neutral
image and stops when the output scale shows the wrong convention.

ReLUs are made non-inplace so that a tap on a convolution or linear module keeps its pre-ReLU
output. Nothing is downloaded: weights are loaded from local files with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bids_recon.errors import InputDataError, MissingInputError, UsageError
from bids_recon.features.preprocess import PREPROCESSINGS, Preprocessing, neutral_image
from bids_recon.io.weights import (
    LAB_VGG19_NAMES,
    VGG19_CACHE_NAME,
    VGG19_SEARCH,
    find_weights,
    searched,
)

LOGGER = logging.getLogger(__name__)

VGG19_LAYERS = {
    "conv1_1": "features.0", "conv1_2": "features.2",
    "conv2_1": "features.5", "conv2_2": "features.7",
    "conv3_1": "features.10", "conv3_2": "features.12",
    "conv3_3": "features.14", "conv3_4": "features.16",
    "conv4_1": "features.19", "conv4_2": "features.21",
    "conv4_3": "features.23", "conv4_4": "features.25",
    "conv5_1": "features.28", "conv5_2": "features.30",
    "conv5_3": "features.32", "conv5_4": "features.34",
    "fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6",
}  # fmt: skip
# An ImageNet classifier used with the convention it was trained on gives outputs (logits) whose
# SD over classes on a neutral image is a few units. Caffe inputs are about 58 times larger than
# torchvision inputs (pixel 0-255 vs. (pixel/255 - mean)/0.226), so a wrong pairing moves that SD
# by about that factor (up, or down towards the bias-only output); the limits sit near the
# geometric midpoints.
PAIRING_OUTPUT_SD = (0.4, 25.0)
WEIGHTS_SOURCES = {
    "builtin": "built-in network, seeded weights",
    "torchvision": "torchvision's published weights (file name and sha256 verified)",
    "kamitani-lab": "the Kamitani lab's PyTorch conversion of Caffe VGG_ILSVRC_19_layers",
    "unknown": "unknown provenance",
}
BUILTIN_LAYERS = {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "fc1": "fc1", "fc2": "fc2"}


class BuiltinNet(nn.Module):
    """A small VGG-like CNN (64x64 input) with weights drawn from a fixed seed.

    Random convolutional features keep much of the image information, which is all the demo and
    the tests need; the same seed gives the same weights on every machine.
    """

    input_size = 64

    def __init__(self, seed: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 8 * 8, 256)
        self.fc2 = nn.Linear(256, 100)
        self.act = nn.ReLU(inplace=False)
        self.pool = nn.AvgPool2d(2)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in (self.conv1, self.conv2, self.conv3, self.fc1, self.fc2):
                fan_in = module.weight[0].numel()
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
                module.bias.zero_()
        # inputs are Caffe-style (0-255 minus mean): scale the first layer to unit-ish range
        self.conv1.weight.data /= 64.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network; taps read the pre-activation outputs."""
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = self.pool(self.act(self.conv3(x)))
        x = self.act(self.fc1(x.flatten(1)))
        return self.fc2(x)


@dataclass(frozen=True)
class WeightsInfo:
    """Where a network's weights come from and why it uses its preprocessing.

    Attributes
    ----------
    file : str or None
        Weights file name (no folders), None for the built-in seeded weights.
    source : str
        A key of ``WEIGHTS_SOURCES``.
    preprocessing : {"caffe", "torchvision"}
    reason : str
        Why that preprocessing (the option, or what the weights are taken to be).
    check : str
        Outcome of :func:`check_pairing`, or why it was skipped.
    """

    file: str | None
    source: str
    preprocessing: str
    reason: str
    check: str

    def as_dict(self) -> dict[str, str | None]:
        """The sidecar form (BIDS-style keys)."""
        return {
            "File": self.file,
            "Source": WEIGHTS_SOURCES[self.source],
            "Preprocessing": self.preprocessing,
            "PreprocessingReason": self.reason,
            "PairingCheck": self.check,
        }


class TappedNetwork(nn.Module):
    """A network whose forward pass returns the outputs of chosen modules.

    Parameters
    ----------
    model : nn.Module
        The network (put in eval mode, ReLUs made non-inplace).
    taps : dict of str to str
        Layer name → module path (``features.0``).
    preprocessing : Preprocessing
        The input convention.
    name : str
        Network name, recorded in output sidecars.
    weights_info : WeightsInfo, optional
        Provenance of the weights and of the preprocessing, recorded in sidecars and reports.
    """

    def __init__(
        self,
        model: nn.Module,
        taps: dict[str, str],
        preprocessing: Preprocessing,
        name: str,
        weights_info: WeightsInfo | None = None,
    ):
        super().__init__()
        self.model = model.eval()
        self.taps = dict(taps)
        self.preprocessing = preprocessing
        self.name = name
        self.weights_info = weights_info or WeightsInfo(
            None, "builtin", preprocessing.kind, "given", "not run"
        )
        modules = dict(model.named_modules())
        missing = [path for path in self.taps.values() if path not in modules]
        if missing:
            raise UsageError(
                f"Network {name}: no module(s) {missing}; available: "
                f"{', '.join(n for n in list(modules)[1:60] if n)} ..."
            )
        for module in model.modules():
            if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
                module.inplace = False
        order = list(modules)
        self.taps = dict(sorted(self.taps.items(), key=lambda item: order.index(item[1])))
        self._outputs: dict[str, torch.Tensor] = {}
        self._unit_shapes: dict[str, tuple[int, ...]] | None = None
        for layer, path in self.taps.items():
            modules[path].register_forward_hook(self._hook(layer))
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    def _hook(self, layer: str):
        def store(module, inputs, output):
            self._outputs[layer] = output

        return store

    @property
    def layers(self) -> list[str]:
        """Tapped layer names, in forward order."""
        return list(self.taps)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of a batch: layer name → (batch, ...) tensor, pre-ReLU."""
        self._outputs = {}
        self.model(x)
        outputs, self._outputs = self._outputs, {}
        return {layer: outputs[layer] for layer in self.taps}

    def unit_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each layer's output for one image (one forward pass, the first time)."""
        if self._unit_shapes is None:
            size = self.preprocessing.size
            device = next(self.model.parameters()).device
            with torch.no_grad():
                out = self(torch.zeros(1, 3, size, size, device=device))
            self._unit_shapes = {layer: tuple(t.shape[1:]) for layer, t in out.items()}
        return dict(self._unit_shapes)

    def unit_counts(self) -> dict[str, int]:
        """Number of units of each layer."""
        return {layer: math.prod(shape) for layer, shape in self.unit_shapes().items()}


def _hash_in_name(path: Path) -> str | None:
    """The sha256 prefix that torchvision-style file names carry (``name-<hex>.pth``), if any."""
    match = re.search(r"-([0-9a-f]{8,64})\.(pth|pt)$", path.name)
    return match.group(1) if match else None


def _check_hash(path: Path) -> None:
    """Verify the sha256 prefix in a torchvision-style file name."""
    prefix = _hash_in_name(path)
    if prefix is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(prefix):
        raise InputDataError(
            f"Weights file {path}: sha256 {digest.hexdigest()[:16]}... does not match the "
            f"{prefix} in its name (corrupt or incomplete download)."
        )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a weights file safely (``weights_only=True``), verifying its hash when known.

    Raises
    ------
    MissingInputError
        The file does not exist.
    InputDataError
        The file is not a torch state dict or fails its hash check.
    """
    if not path.is_file():
        raise MissingInputError(f"Weights file not found: {path}")
    _check_hash(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputDataError(f"Weights file {path} cannot be loaded safely: {err}") from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputDataError(f"Weights file {path} does not hold a state dict.")
    return state


def _vgg19_weights(weights: Path | None) -> Path:
    if weights is not None:
        return weights
    found = find_weights(VGG19_SEARCH)
    if found is not None:
        return found
    raise MissingInputError(
        "VGG19 needs pretrained weights and nothing is downloaded at run time. Pass --weights "
        f"PATH (torchvision's {VGG19_CACHE_NAME}, or the Caffe-converted VGG_ILSVRC_19_layers.pt "
        f"of the Kamitani lab, which matches the paper); without it bids_recon looks for "
        f"{searched(VGG19_SEARCH)} (the container image's folder is /opt/weights). For a quick "
        "run use --network builtin."
    )


def resolve_weights(name: str, weights: Path | None) -> Path | None:
    """Check a network name and find its weights file, without loading anything.

    Raises
    ------
    UsageError
        Not ``vgg19``, ``builtin`` or a torchvision model name.
    MissingInputError
        The weights are missing (the message says how to provide them).
    """
    if weights is not None and not weights.is_file():
        raise MissingInputError(f"Weights file not found: {weights}")
    if name == "builtin":
        return weights
    if name == "vgg19":
        return _vgg19_weights(weights)
    import torchvision

    if name not in torchvision.models.list_models():
        raise UsageError(f"--network {name!r}: not vgg19, builtin or a torchvision model name")
    if weights is None:
        raise MissingInputError(f"--network {name} needs --weights PATH (no downloads).")
    return weights


def weights_source(name: str, weights: Path | None) -> str:
    """Which family a weights file belongs to (a key of ``WEIGHTS_SOURCES``), from its name.

    Torchvision publishes its files as ``<model>-<sha256 prefix>.pth`` (the prefix is verified
    when the file is loaded); the lab names its VGG19 conversion ``VGG_ILSVRC_19_layers.pt``.
    """
    if weights is None:
        return "builtin"
    if name != "builtin" and _hash_in_name(weights) is not None:
        return "torchvision"
    if name == "vgg19" and weights.name in LAB_VGG19_NAMES:
        return "kamitani-lab"
    return "unknown"


def default_preprocessing(name: str, source: str) -> tuple[str, str]:
    """The preprocessing that goes with a network and weights family, and why."""
    if name == "builtin":
        return "caffe", "the built-in network is defined on Caffe-style inputs"
    if source == "torchvision":
        return "torchvision", (
            "torchvision's published weights were trained on RGB/255 inputs normalized by the "
            "ImageNet mean and SD"
        )
    if name == "vgg19":
        taken = "the lab's conversion" if source == "kamitani-lab" else "unknown provenance"
        return "caffe", f"{taken}: taken to be the paper's Caffe VGG19 (BGR, 0-255 minus mean)"
    return "torchvision", "a torchvision model: torchvision's input convention"


def check_pairing(model: nn.Module, preprocessing: Preprocessing, weights: Path) -> str:
    """Check that ``weights`` were trained with ``preprocessing``: one pass on a neutral image.

    Returns
    -------
    str
        What was measured (for the log and the sidecars).

    Raises
    ------
    UsageError
        The output SD over classes lies outside ``PAIRING_OUTPUT_SD`` (exit 64); the message
        explains both conventions and how to choose one.
    """
    image = preprocessing.array_to_tensor(neutral_image(preprocessing.size))[None]
    device = next(model.parameters()).device
    with torch.no_grad():
        output = model(image.to(device))
    sd = float(output.double().std())
    low, high = PAIRING_OUTPUT_SD
    if low <= sd <= high:
        return f"passed: output SD {sd:.3g} on a neutral image (expected {low}-{high})"
    direction = "far above" if sd > high else "far below"
    raise UsageError(
        f"Weights file {weights}: with {preprocessing.kind} preprocessing the network's output "
        f"on a neutral image has SD {sd:.3g}, {direction} the {low}-{high} of a network used "
        "with the preprocessing it was trained on: the weights and the preprocessing do not "
        "match. torchvision's VGG19 (vgg19-dcbb9e9d.pth) needs --preprocessing torchvision "
        "(RGB/255 normalized by the ImageNet mean and SD); the paper's Caffe VGG19 (the "
        "Kamitani lab's VGG_ILSVRC_19_layers.pt) needs --preprocessing caffe (BGR, 0-255 minus "
        "the mean pixel). Passing --preprocessing states the pairing and skips this check."
    )


def weights_info(
    name: str,
    weights: Path | None,
    model: nn.Module,
    size: int,
    preprocessing: str | None,
) -> WeightsInfo:
    """Provenance of ``weights`` and the preprocessing to use with them (checked when implied).

    Raises
    ------
    UsageError
        ``preprocessing`` is not a known convention, or the implied pairing fails
        :func:`check_pairing`.
    """
    source = weights_source(name, weights)
    file = weights.name if weights is not None else None
    if preprocessing is not None:
        if preprocessing not in PREPROCESSINGS:
            raise UsageError(
                f"--preprocessing {preprocessing!r}: choose {' or '.join(PREPROCESSINGS)}"
            )
        given = "given by --preprocessing"
        return WeightsInfo(file, source, preprocessing, given, "skipped: --preprocessing given")
    kind, reason = default_preprocessing(name, source)
    if weights is None or name == "builtin":
        return WeightsInfo(file, source, kind, reason, "not needed: built-in network")
    check = check_pairing(model, Preprocessing(kind, size), weights)
    return WeightsInfo(file, source, kind, reason, check)


def build_network(
    name: str,
    weights: Path | None = None,
    layers: Sequence[str] = (),
    preprocessing: str | None = None,
) -> TappedNetwork:
    """Build a feature network by name.

    Parameters
    ----------
    name : str
        ``vgg19``, ``builtin`` or a torchvision model name.
    weights : Path, optional
        Local weights file (required for torchvision models; the builtin net has none).
    layers : sequence of str
        Layers to tap (default: all of the network's standard layers).
    preprocessing : {"caffe", "torchvision"}, optional
        Input convention. Default: the one the weights imply (:func:`default_preprocessing`),
        checked by :func:`check_pairing`; given, it is used as is.

    Raises
    ------
    UsageError
        Unknown network, layer or preprocessing names; a failed pairing check.
    MissingInputError, InputDataError
        Weights missing or unusable.
    """
    import torchvision

    weights = resolve_weights(name, weights)
    if name == "builtin":
        model, taps, size = BuiltinNet(), BUILTIN_LAYERS, BuiltinNet.input_size
        if weights is not None:
            model.load_state_dict(load_state_dict(weights))
    else:
        taps, size = (VGG19_LAYERS if name == "vgg19" else {}), 224
        model = torchvision.models.get_model(name, weights=None)
        try:
            model.load_state_dict(load_state_dict(weights))
        except RuntimeError as err:
            raise InputDataError(f"Weights file {weights} does not fit {name}: {err}") from err
        if not taps:
            taps = {
                path: path
                for path, m in model.named_modules()
                if isinstance(m, (nn.Conv2d, nn.Linear))
            }
    if layers:
        unknown = [layer for layer in layers if layer not in taps and name in ("vgg19", "builtin")]
        if unknown:
            raise UsageError(f"--layers {unknown}: {name} has {', '.join(taps)}")
        taps = {layer: taps.get(layer, layer) for layer in layers}
    info = weights_info(name, weights, model.eval(), size, preprocessing)
    if weights is not None:
        LOGGER.info(
            "Loaded %s weights from %s (%s); %s preprocessing: %s; pairing check %s",
            name,
            weights,
            WEIGHTS_SOURCES[info.source],
            info.preprocessing,
            info.reason,
            info.check,
        )
    return TappedNetwork(model, taps, Preprocessing(info.preprocessing, size), name, info)
