"""Feature SD correction of decoded features before reconstruction (docs/method.md §2.4).

Ridge-decoded features are shrunk toward the mean. The paper's code rescales each decoded
feature map so that its SD matches a reference SD of true features for that layer:
``f' = f / sd(f) * sd0``. For a conv map (C, H, W), sd is the mean over channels of the spatial
SD of each channel (ddof 0); for an fc vector, the SD of the whole vector. The reference sd0 is
the mean of the same statistic over the training images' true features (or read from a file).
"""

from __future__ import annotations

import torch


def feature_sd(features: torch.Tensor) -> torch.Tensor:
    """The paper's SD statistic of each feature in a batch (batch, ...) → (batch,)."""
    if features.ndim >= 3:  # (batch, C, H, W...): channel-averaged spatial SD
        flat = features.flatten(2)
        return flat.std(dim=2, unbiased=False).mean(dim=1)
    return features.flatten(1).std(dim=1, unbiased=False)


def correct_sd(decoded: torch.Tensor, reference_sd: float) -> torch.Tensor:
    """Rescale each decoded feature (batch, ...) to the reference SD."""
    sd = feature_sd(decoded).clamp_min(1e-12)
    shape = (-1,) + (1,) * (decoded.ndim - 1)
    return decoded / sd.reshape(shape) * reference_sd
