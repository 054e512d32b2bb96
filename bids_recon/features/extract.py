"""Batched feature extraction, streamed, with a work-folder cache for layers small enough.

:func:`feature_batches` runs images through a :class:`TappedNetwork` a batch at a time on the
chosen device and yields every layer's features flattened to (batch, units), so callers can
accumulate what they need without holding a layer for all images. :class:`FeatureCache` keeps
whole layers (images × units, float32) on disk when they fit a size limit, keyed by the
network, its weights, the preprocessing and the image list, so a re-run skips the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bids_recon.errors import InputDataError
from bids_recon.features.networks import TappedNetwork
from bids_recon.log import progress

LOGGER = logging.getLogger(__name__)


def load_batch(paths: Sequence[Path], network: TappedNetwork) -> torch.Tensor:
    """Read and preprocess images into a (batch, 3, size, size) tensor.

    Raises
    ------
    InputDataError
        An image file cannot be decoded (the message names it).
    """
    tensors = []
    for path in paths:
        try:
            with Image.open(path) as image:
                tensors.append(network.preprocessing.image_to_tensor(image))
        except OSError as err:
            raise InputDataError(f"Stimulus image {path} cannot be read: {err}") from err
    return torch.stack(tensors)


def feature_batches(
    network: TappedNetwork,
    paths: Sequence[Path],
    batch_size: int,
    device: torch.device | str,
    description: str = "features",
) -> Iterator[tuple[slice, dict[str, torch.Tensor]]]:
    """Yield (rows, {layer: features (batch, units) on ``device``}) for consecutive batches."""
    network.to(device)
    starts = range(0, len(paths), batch_size)
    for start in progress(starts, description, total=len(starts)):
        rows = slice(start, min(start + batch_size, len(paths)))
        with torch.no_grad():
            outputs = network(load_batch(paths[rows], network).to(device))
        yield rows, {layer: out.flatten(1) for layer, out in outputs.items()}


def network_key(network: TappedNetwork, weights: Path | None) -> str:
    """Identity of a network for caches: name, preprocessing, weights file (size, mtime)."""
    info = [network.name, network.preprocessing.kind, network.preprocessing.size, network.taps]
    if weights is not None:
        stat = weights.stat()
        info += [str(weights), stat.st_size, stat.st_mtime_ns]
    return hashlib.sha256(json.dumps(info, default=str).encode()).hexdigest()[:16]


class FeatureCache:
    """Whole-layer features (images × units, float32 .npy) in a work-folder directory.

    Parameters
    ----------
    root : Path
        ``WORK/features``.
    key : str
        Network identity (:func:`network_key`).
    paths : sequence of Path
        The images, in row order (part of the cache key).
    limit_bytes : int
        Layers larger than this are not cached.
    """

    def __init__(self, root: Path, key: str, paths: Sequence[Path], limit_bytes: int):
        digest = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:16]
        self.folder = root / f"{key}-{digest}"
        self.n_images = len(paths)
        self.limit_bytes = limit_bytes

    def fits(self, n_units: int) -> bool:
        """Whether a layer of ``n_units`` per image is small enough to cache."""
        return self.n_images * n_units * 4 <= self.limit_bytes

    def path(self, layer: str) -> Path:
        """The .npy file of a layer."""
        return self.folder / f"{layer}.npy"

    def load(self, layer: str) -> np.ndarray | None:
        """The cached layer (memory-mapped), or None."""
        path = self.path(layer)
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def save(self, layer: str, features: np.ndarray) -> None:
        """Store a layer atomically (write a private file, then rename)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        private = self.folder / f".{layer}.{uuid.uuid4().hex[:8]}.npy"
        np.save(private, np.asarray(features, dtype=np.float32))
        os.replace(private, self.path(layer))
