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
        Budget for all cached layers together; the smallest layers are cached first.
    """

    def __init__(self, root: Path, key: str, paths: Sequence[Path], limit_bytes: int):
        digest = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:16]
        self.folder = root / f"{key}-{digest}"
        self.n_images = len(paths)
        self.limit_bytes = limit_bytes

    def plan(self, units: dict[str, int]) -> set[str]:
        """The layers to cache: smallest first while the budget lasts."""
        chosen, used = set(), 0
        for layer, count in sorted(units.items(), key=lambda item: item[1]):
            size = self.n_images * count * 4
            if used + size > self.limit_bytes:
                break
            chosen.add(layer)
            used += size
        return chosen

    def path(self, layer: str) -> Path:
        """The .npy file of a layer."""
        return self.folder / f"{layer}.npy"

    def load(self, layer: str) -> np.ndarray | None:
        """The cached layer (memory-mapped), or None."""
        path = self.path(layer)
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def writer(self, layer: str, n_units: int) -> np.memmap:
        """A private on-disk array to fill; :meth:`commit` moves it into place."""
        self.folder.mkdir(parents=True, exist_ok=True)
        private = self.folder / f".{layer}.partial.npy"
        return np.lib.format.open_memmap(
            private, mode="w+", dtype=np.float32, shape=(self.n_images, n_units)
        )

    def commit(self, layer: str, array: np.memmap) -> None:
        """Flush a filled :meth:`writer` array and rename it into place (atomic)."""
        array.flush()
        os.replace(self.folder / f".{layer}.partial.npy", self.path(layer))
