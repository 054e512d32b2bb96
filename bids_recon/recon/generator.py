"""The Dosovitskiy & Brox (2016) fc7 generator, the paper's deep generator prior (DGN).

Architecture and parameter names follow the Caffe ``generator_for_inverting_fc7`` prototxt and
the Kamitani lab's PyTorch port (bdpy's ``AlexNetGenerator``), so the lab's converted weights load
as they are: a 4,096-d latent, three fully connected layers (defc7, defc6, defc5; LeakyReLU 0.3),
reshaped to 256×4×4, then *transposed* convolutions: five that double the size (k4 s2 p1: deconv5,
deconv4, deconv3, deconv2, deconv1, deconv0 → 256×256) interleaved with three that keep it (k3 s1
p1: conv5_1, conv4_1, conv3_1; "Deconvolution" layers in Caffe, so their kernels are stored
(in, out, k, k) and applied transposed). The output is an image in the Caffe input space (BGR,
0-255 minus the mean pixel); :func:`to_network_input` crops it to the feature network's size as
the reference code does (centre, offset ``(256 − size) // 2``) and converts it to the network's
preprocessing. Weights come only from a local file: nothing is downloaded.

The latent is bounded as in the paper: below by 0 and, with the published ``act_range`` file
(per-unit upper limits of fc7, 3 SD above the mean), above per unit (:func:`load_prior`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bids_recon.errors import InputDataError, MissingInputError, UsageError
from bids_recon.features.networks import load_state_dict
from bids_recon.features.preprocess import Preprocessing

LOGGER = logging.getLogger(__name__)

LATENT_SIZE = 4096
OUTPUT_SIZE = 256
FC_LAYERS = ("defc7", "defc6", "defc5")
# (name, in, out, kernel): stride 2 for kernel 4 (doubles the size), stride 1 for kernel 3.
DECONV_LAYERS = (
    ("deconv5", 256, 256, 4),
    ("conv5_1", 256, 512, 3),
    ("deconv4", 512, 256, 4),
    ("conv4_1", 256, 256, 3),
    ("deconv3", 256, 128, 4),
    ("conv3_1", 128, 128, 3),
    ("deconv2", 128, 64, 4),
    ("deconv1", 64, 32, 4),
    ("deconv0", 32, 3, 4),
)
# bdpy's module also registers the same layers in two Sequentials (``defc``, ``deconv``), so its
# state dicts hold every tensor twice: ``defc.0.weight`` is ``defc7.weight`` and so on.
ALIASES = {
    **{f"defc.{2 * k}": name for k, name in enumerate(FC_LAYERS)},
    **{f"deconv.{2 * k}": name for k, (name, *_) in enumerate(DECONV_LAYERS)},
}


class FC7Generator(nn.Module):
    """Image generator from a 4,096-d fc7-like latent code (bdpy ``AlexNetGenerator`` layout)."""

    def __init__(self):
        super().__init__()
        for name in FC_LAYERS:
            self.add_module(name, nn.Linear(LATENT_SIZE, LATENT_SIZE))
        for name, cin, cout, kernel in DECONV_LAYERS:
            stride = 2 if kernel == 4 else 1
            self.add_module(name, nn.ConvTranspose2d(cin, cout, kernel, stride, padding=1))
        self.act = nn.LeakyReLU(0.3)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Latents (batch, 4096) → images (batch, 3, 256, 256) in the Caffe input space."""
        x = latent
        for name in FC_LAYERS:
            x = self.act(getattr(self, name)(x))
        x = x.reshape(-1, 256, 4, 4)
        for name, *_ in DECONV_LAYERS[:-1]:
            x = self.act(getattr(self, name)(x))
        return getattr(self, DECONV_LAYERS[-1][0])(x)


def crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop (batch, 3, H, W) → (batch, 3, size, size), offset ``(H − size) // 2``."""
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def to_network_input(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """Generator outputs (Caffe input space) → cropped inputs of a network using ``preprocessing``.

    The crop is the centre one of the reference code; other conventions are converted exactly.
    """
    cropped = crop(images, preprocessing.size)
    if preprocessing.kind == "caffe":
        return cropped
    rgb = Preprocessing("caffe", preprocessing.size).tensor_to_array(cropped)
    return preprocessing.array_to_tensor(rgb)


def canonical_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """A generator state dict with bdpy's duplicate ``defc.N``/``deconv.N`` keys resolved.

    Raises
    ------
    InputDataError
        An alias and its named key hold different values.
    """
    out = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        name = ALIASES.get(module)
        if name is None:
            out[key] = value
            continue
        named = f"{name}.{param}"
        if named in state and not torch.equal(state[named], value):
            raise InputDataError(f"Generator weights {path}: {key} and {named} differ.")
        out.setdefault(named, value)
    return out


def load_generator(path: Path | None) -> FC7Generator:
    """The generator with weights from ``path`` (bdpy ``AlexNetGenerator`` state dict).

    Raises
    ------
    UsageError
        No weights file given: the generator prior needs the lab's converted weights.
    InputDataError
        The file does not fit the architecture (names or shapes; the message says which).
    """
    if path is None:
        raise UsageError(
            "--recon-method generator needs --generator-weights PATH: the Dosovitskiy-Brox fc7 "
            "generator in the Kamitani lab's PyTorch format (bdpy AlexNetGenerator state dict, "
            "generator_relu7.pt); nothing is downloaded. Use --recon-method lbfgs or gd to "
            "reconstruct without a generator."
        )
    generator = FC7Generator()
    try:
        generator.load_state_dict(canonical_state(load_state_dict(path), path))
    except RuntimeError as err:
        raise InputDataError(
            f"Generator weights {path} do not fit the fc7 generator (bdpy AlexNetGenerator "
            f"layout, transposed convolutions): {err}"
        ) from err
    for parameter in generator.parameters():
        parameter.requires_grad_(False)
    return generator.eval()


def read_act_range(path: Path) -> np.ndarray:
    """Per-unit upper bounds of the latent from the published ``act_range`` file.

    Text (the lab's ``act_range/3x/fc7.txt``: 4,096 numbers separated by spaces) or NumPy
    ``.npy``. As the reference code, the first 4,096 values are used.

    Raises
    ------
    MissingInputError
        The file does not exist.
    InputDataError
        Not numbers, fewer than 4,096 values, or negative or non-finite ones.
    """
    if not path.is_file():
        raise MissingInputError(f"Generator act_range file not found: {path}")
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        else:
            values = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as err:
        raise InputDataError(f"Generator act_range file {path}: not numbers ({err})") from err
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size < LATENT_SIZE:
        raise InputDataError(
            f"Generator act_range file {path}: {values.size} values, the fc7 latent needs "
            f"{LATENT_SIZE} (one upper bound per unit)."
        )
    if values.size > LATENT_SIZE:
        LOGGER.warning(
            "Generator act_range file %s: %d values; using the first %d as the reference does",
            path,
            values.size,
            LATENT_SIZE,
        )
    values = values[:LATENT_SIZE]
    if not np.isfinite(values).all() or (values < 0).any():
        raise InputDataError(
            f"Generator act_range file {path}: upper bounds must be finite and non-negative."
        )
    return values


@dataclass
class GeneratorPrior:
    """The generator and the bounds of its latent.

    Attributes
    ----------
    generator : FC7Generator
    upper : ndarray or None
        Per-unit upper bounds (the act_range), or None for no upper bound.
    bounds : str
        How the latent is bounded, for logs, sidecars and reports.
    """

    generator: FC7Generator
    upper: np.ndarray | None
    bounds: str


def load_prior(weights: Path | None, act_range: Path | None) -> GeneratorPrior:
    """The generator of ``weights`` with the latent bounds of ``act_range``.

    Without an ``act_range`` file the latent is bounded below by 0 only (a warning says so).

    Raises
    ------
    UsageError, MissingInputError, InputDataError
        See :func:`load_generator` and :func:`read_act_range`.
    """
    generator = load_generator(weights)
    if act_range is None:
        LOGGER.warning(
            "Generator latent bounded below by 0 only: no --generator-act-range given (the "
            "paper also bounds each fc7 unit above by the published act_range)."
        )
        return GeneratorPrior(generator, None, "0 <= latent (no act_range: no upper bound)")
    upper = read_act_range(act_range)
    return GeneratorPrior(generator, upper, f"0 <= latent <= act_range of {act_range.name}")
