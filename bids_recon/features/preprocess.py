"""Image ↔ network-input transforms.

``caffe`` is the paper's convention (METHOD.md section 2.2): resize to the input size with
bicubic interpolation (aspect ratio not kept, no crop), RGB 0-255 → BGR, minus the ImageNet mean
pixel. ``torchvision`` is torchvision's ImageNet convention (RGB/255, mean/std normalized). Both
map back to RGB images for reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

CAFFE_MEAN_BGR = (104.007, 116.669, 122.679)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
