"""Image ↔ network-input transforms.

``caffe`` is the paper's convention (docs/method.md §2.2): resize to the input size with
bicubic interpolation (aspect ratio not kept, no crop), RGB 0-255 → BGR, minus the ImageNet mean
pixel. ``torchvision`` is torchvision's ImageNet convention (RGB/255, mean/std normalized). Both
map back to RGB images for reconstruction. Weights must be used with the convention they were
trained on; :func:`neutral_image` feeds the check of that pairing (``features/networks.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

CAFFE_MEAN_BGR = (104.007, 116.669, 122.679)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESSINGS = ("caffe", "torchvision")


@dataclass(frozen=True)
class Preprocessing:
    """A network's input convention.

    Attributes
    ----------
    kind : {"caffe", "torchvision"}
    size : int
        Square input size in pixels.
    """

    kind: str = "caffe"
    size: int = 224

    def _constants(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        if self.kind == "caffe":  # BGR, 0-255 minus mean
            return torch.tensor(CAFFE_MEAN_BGR), torch.ones(3), True
        return torch.tensor(IMAGENET_MEAN) * 255, torch.tensor(IMAGENET_STD) * 255, False

    def image_to_tensor(self, image: Image.Image) -> torch.Tensor:
        """One image → a (3, size, size) float32 network input."""
        resized = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
        return self.array_to_tensor(np.asarray(resized, dtype=np.float32)[None])[0]

    def array_to_tensor(self, rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
        """RGB arrays (..., H, W, 3) in 0-255 → network inputs (..., 3, H, W)."""
        mean, scale, bgr = self._constants()
        x = torch.as_tensor(rgb, dtype=torch.float32)
        mean, scale = mean.to(x.device), scale.to(x.device)
        if bgr:
            x = x.flip(-1)
        x = (x - mean) / scale
        return x.movedim(-1, -3).contiguous()

    def tensor_to_array(self, x: torch.Tensor) -> torch.Tensor:
        """Network inputs (..., 3, H, W) → RGB (..., H, W, 3) in 0-255 (not clipped)."""
        mean, scale, bgr = self._constants()
        mean, scale = mean.to(x.device), scale.to(x.device)
        rgb = x.movedim(-3, -1) * scale + mean
        return rgb.flip(-1) if bgr else rgb

    def pixel_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (lower, upper) input values of pixels 0 and 255, shape (3, 1, 1)."""
        low = self.array_to_tensor(np.zeros((1, 1, 3), dtype=np.float32))
        high = self.array_to_tensor(np.full((1, 1, 3), 255.0, dtype=np.float32))
        return low, high


def neutral_image(size: int, seed: int = 0) -> np.ndarray:
    """A (size, size, 3) RGB test image in 0-255 with the statistics of natural photographs.

    A luminance field with a 1/f amplitude spectrum (plus weaker colour fields of the same
    spectrum) around the ImageNet mean colour, pixel SD about 55: what a network trained on
    ImageNet sees typically, without being any particular object. The same seed gives the
    same image everywhere.
    """
    rng = np.random.default_rng(seed)
    freq = np.fft.fftfreq(size)
    radius = np.hypot(*np.meshgrid(freq, freq, indexing="ij"))
    radius[0, 0] = 1.0
    noise = rng.standard_normal((4, size, size))
    fields = np.real(np.fft.ifft2(np.fft.fft2(noise) / radius))
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    fields /= fields.std(axis=(1, 2), keepdims=True)
    luminance, colour = fields[0], fields[1:]
    mean = np.asarray(IMAGENET_MEAN)[:, None, None] * 255
    rgb = mean + 50.0 * luminance + 20.0 * colour
    return np.clip(rgb, 0, 255).transpose(1, 2, 0).astype(np.float32)
