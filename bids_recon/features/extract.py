"""Batched feature extraction, streamed.

:func:`feature_batches` runs images through a :class:`TappedNetwork` a batch at a time on the
chosen device and yields every layer's features flattened to (batch, units), so callers can
accumulate what they need without holding a layer for all images; batches found in a
:class:`~bids_recon.io.feature_store.BatchStore` are read instead. :func:`network_key` is the
network identity that the work-folder stores are keyed by.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bids_recon.errors import InputDataError
from bids_recon.features.networks import TappedNetwork
from bids_recon.io.feature_store import BatchStore, batch_slices
from bids_recon.log import progress

LOGGER = logging.getLogger(__name__)


def load_batch(
    paths: Sequence[Path], network: TappedNetwork, pool: ThreadPoolExecutor | None = None
) -> torch.Tensor:
    """Read and preprocess images into a (batch, 3, size, size) tensor.

    With a thread ``pool`` the images are decoded in parallel (Pillow releases the GIL while
    decoding); the result is the same.

    Raises
    ------
    InputDataError
        An image file cannot be decoded (the message names it).
    """

    def read(path: Path) -> torch.Tensor:
        try:
            with Image.open(path) as image:
                return network.preprocessing.image_to_tensor(image)
        except (OSError, Image.DecompressionBombError) as err:
            raise InputDataError(f"Stimulus image {path} cannot be read: {err}") from err

    return torch.stack(list(pool.map(read, paths) if pool else map(read, paths)))


def _image_batches(
    paths: Sequence[Path], batches: Sequence[slice], network: TappedNetwork, loaders: int
) -> Iterator[torch.Tensor]:
    """Preprocessed images of each batch in order; threaded with one batch read ahead."""
    if loaders <= 1:
        for rows in batches:
            yield load_batch(paths[rows], network)
        return
    with ThreadPoolExecutor(loaders) as pool, ThreadPoolExecutor(1) as prefetch:
        upcoming = [prefetch.submit(load_batch, paths[rows], network, pool) for rows in batches[:1]]
        for k in range(len(batches)):
            images = upcoming.pop().result()
            if k + 1 < len(batches):
                upcoming.append(prefetch.submit(load_batch, paths[batches[k + 1]], network, pool))
            yield images


def feature_batches(
    network: TappedNetwork,
    paths: Sequence[Path],
    batch_size: int,
    device: torch.device | str,
    description: str = "features",
    loaders: int = 1,
    store: BatchStore | None = None,
    keep: bool = False,
) -> Iterator[tuple[slice, dict[str, torch.Tensor]]]:
    """Yield (rows, {layer: features (batch, units) on ``device``}) for consecutive batches.

    With ``loaders`` > 1 (``--nprocs``), images are decoded by that many threads and the next
    batch is read while the network computes the current one. Batches found in ``store``
    are read from it instead of being computed; with ``keep``, computed batches are saved to it.
    """
    network.to(device)
    batches = batch_slices(len(paths), batch_size)
    stored = [store is not None and store.has(k) for k in range(len(batches))]
    images = _image_batches(
        paths,
        [rows for rows, done in zip(batches, stored, strict=True) if not done],
        network,
        loaders,
    )
    LOGGER.debug(
        "%s: %d image(s) in %d batch(es) of %d on %s, %d already stored",
        description,
        len(paths),
        len(batches),
        batch_size,
        device,
        sum(stored),
    )
    for k, rows in enumerate(progress(batches, description, total=len(batches))):
        if stored[k]:
            yield (
                rows,
                {layer: torch.as_tensor(v, device=device) for layer, v in store.load(k).items()},
            )
        else:
            features = _forward(network, next(images), device)
            if keep and store is not None:
                store.save(k, {layer: v.cpu().numpy() for layer, v in features.items()})
            yield rows, features


def extract_features(
    network: TappedNetwork,
    paths: Sequence[Path],
    batch_size: int,
    device: torch.device | str,
    loaders: int = 1,
) -> dict[str, np.ndarray]:
    """All tapped layers of ``paths`` in memory: layer → (images, units) float32, pre-ReLU.

    The same path as the decode stage's feature extraction (:func:`feature_batches`), for the
    reconstruction stage's true features and for ``bids_recon-features``.
    """
    units = network.unit_counts()
    out = {layer: np.empty((len(paths), count), dtype=np.float32) for layer, count in units.items()}
    for rows, batch in feature_batches(network, paths, batch_size, device, loaders=loaders):
        for layer, values in batch.items():
            out[layer][rows] = values.cpu().numpy()
    return out


def fill_store(
    network: TappedNetwork,
    paths: Sequence[Path],
    store: BatchStore,
    device: torch.device | str,
    indices: Sequence[int],
    loaders: int = 1,
) -> int:
    """Compute and save the batches ``indices`` of ``store`` that it lacks; return how many."""
    network.to(device)
    todo = [k for k in indices if not store.has(k)]
    images = _image_batches(paths, [store.batches[k] for k in todo], network, loaders)
    for k in progress(todo, "features for other jobs", total=len(todo)):
        features = _forward(network, next(images), device)
        store.save(k, {layer: v.cpu().numpy() for layer, v in features.items()})
    return len(todo)


def _forward(
    network: TappedNetwork, images: torch.Tensor, device: torch.device | str
) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        outputs = network(images.to(device))
    return {layer: out.flatten(1) for layer, out in outputs.items()}


def network_key(network: TappedNetwork, weights: Path | None) -> str:
    """Identity of a network for caches: name, preprocessing, weights file (size, mtime)."""
    info = [network.name, network.preprocessing.kind, network.preprocessing.size, network.taps]
    if weights is not None:
        stat = weights.stat()
        info += [str(weights), stat.st_size, stat.st_mtime_ns]
    return hashlib.sha256(json.dumps(info, default=str).encode()).hexdigest()[:16]
