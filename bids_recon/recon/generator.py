"""The Dosovitskiy & Brox (2016) fc7 generator used as the paper's deep generator prior (DGN).

Architecture as in the lab's ``generator_for_inverting_fc7`` prototxt (METHOD.md 4.2): a 4,096-d
input, three fully connected layers (defc7, defc6, defc5; LeakyReLU 0.3), reshaped to 256×4×4,
then up-convolutions (k4 s2) and convolutions (k3) to a 3×256×256 image in the Caffe input space
(BGR, mean subtracted), center-cropped to 224×224 for VGG19. Weights come only from a local file
(converted lab weights); there is no download.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bids_recon.errors import InputDataError, UsageError
from bids_recon.features.networks import load_state_dict

LATENT_SIZE = 4096
OUTPUT_SIZE = 256


class FC7Generator(nn.Module):
    """Image generator from a 4,096-d fc7-like latent code."""

    def __init__(self):
        super().__init__()
        act = nn.LeakyReLU(0.3)
        self.fc = nn.Sequential(
            nn.Linear(LATENT_SIZE, 4096), act,  # defc7
            nn.Linear(4096, 4096), act,  # defc6
            nn.Linear(4096, 4096), act,  # defc5
        )  # fmt: skip

        def up(cin: int, cout: int) -> nn.Module:
            return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)

        self.deconv = nn.Sequential(
            up(256, 256), act,  # deconv5: 8x8
            nn.Conv2d(256, 512, 3, padding=1), act,  # conv5_1
            up(512, 256), act,  # deconv4: 16
            nn.Conv2d(256, 256, 3, padding=1), act,  # conv4_1
            up(256, 128), act,  # deconv3: 32
            nn.Conv2d(128, 128, 3, padding=1), act,  # conv3_1
            up(128, 64), act,  # deconv2: 64
            up(64, 32), act,  # deconv1: 128
            up(32, 3),  # deconv0: 256, no activation (Caffe input space)
        )  # fmt: skip

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Latents (batch, 4096) → images (batch, 3, 256, 256) in the Caffe input space."""
        return self.deconv(self.fc(latent).reshape(-1, 256, 4, 4))


def crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Center crop (batch, 3, H, W) → (batch, 3, size, size)."""
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def load_generator(path: Path | None) -> FC7Generator:
    """The generator with weights from ``path``.

    Raises
    ------
    UsageError
        No weights file given: the generator prior needs converted weights.
    InputDataError
        The file does not fit the architecture.
    """
    if path is None:
        raise UsageError(
            "--recon-method generator needs --generator-weights PATH: the Dosovitskiy-Brox fc7 "
            "generator weights converted to this architecture (nothing is downloaded). Use "
            "--recon-method lbfgs or gd to reconstruct without a generator."
        )
    generator = FC7Generator()
    try:
        generator.load_state_dict(load_state_dict(path))
    except RuntimeError as err:
        raise InputDataError(
            f"Generator weights {path} do not fit the fc7 generator: {err}"
        ) from err
    for parameter in generator.parameters():
        parameter.requires_grad_(False)
    return generator.eval()
