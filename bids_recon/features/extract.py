"""Batched feature extraction, streamed, with a work-folder cache for layers small enough.

:func:`feature_batches` runs images through a :class:`TappedNetwork` a batch at a time on the
chosen device and yields every layer's features flattened to (batch, units), so callers can
accumulate what they need without holding a layer for all images. :class:`FeatureCache` keeps
whole layers (images × units, float32) on disk when they fit a size limit, keyed by the
network, its weights, the preprocessing and the image list, so a re-run skips the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bids_recon.errors import InputDataError
from bids_recon.features.networks import TappedNetwork
from bids_recon.io.atomic import atomic_write, private_path
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


def batch_slices(n_images: int, batch_size: int) -> list[slice]:
    """Consecutive batches of ``batch_size`` rows (the last may be shorter)."""
    return [
        slice(start, min(start + batch_size, n_images)) for start in range(0, n_images, batch_size)
    ]


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
    for k, rows in enumerate(progress(batches, description, total=len(batches))):
        if stored[k]:
            yield (
                rows,
                {layer: torch.as_tensor(v, device=device) for layer, v in store.load(k).items()},
            )
        else:
            features = _forward(network, next(images), device)
            if keep and store is not None:
                store.save(k, features)
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
        store.save(k, _forward(network, next(images), device))
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


def cached_layers(units: dict[str, int], n_images: int, limit_bytes: int) -> set[str]:
    """The layers whose float32 features of ``n_images`` fit the budget, smallest first."""
    chosen, used = set(), 0
    for layer, count in sorted(units.items(), key=lambda item: item[1]):
        size = n_images * count * 4
        if used + size > limit_bytes:
            break
        chosen.add(layer)
        used += size
    return chosen


def images_digest(paths: Sequence[Path]) -> str:
    """Identity of an ordered image list for cache folder names."""
    return hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:16]


class BatchStore:
    """Every layer's features of fixed image batches, one ``.npz`` per batch, in the work folder.

    ``--shard`` jobs fill their share of the batches in parallel (:func:`fill_store`), then the
    job that decodes reads them instead of running the network. A stored batch holds exactly
    what the network gives for that batch, so results do not depend on who computed it.

    Parameters
    ----------
    root, key, paths
        As for :class:`FeatureCache`.
    batch_size : int
        Images per batch (part of the folder name: it fixes the batches).
    """

    def __init__(self, root: Path, key: str, paths: Sequence[Path], batch_size: int):
        self.folder = root / f"{key}-{images_digest(paths)}-batches{batch_size}"
        self.batches = batch_slices(len(paths), batch_size)

    def path(self, index: int) -> Path:
        """The file of batch ``index``."""
        return self.folder / f"batch-{index:06d}.npz"

    def has(self, index: int) -> bool:
        """Whether batch ``index`` is stored (files appear complete, by atomic rename)."""
        return self.path(index).is_file()

    def load(self, index: int) -> dict[str, np.ndarray]:
        """The stored features of batch ``index``, per layer (batch, units)."""
        with np.load(self.path(index)) as data:
            return {name: data[name] for name in data.files}

    def save(self, index: int, features: dict[str, torch.Tensor]) -> None:
        """Store batch ``index`` atomically."""
        buffer = io.BytesIO()
        np.savez(buffer, **{layer: v.cpu().numpy() for layer, v in features.items()})
        atomic_write(self.path(index), buffer.getvalue())


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
        self.folder = root / f"{key}-{images_digest(paths)}"
        self.n_images = len(paths)
        self.limit_bytes = limit_bytes

    def plan(self, units: dict[str, int]) -> set[str]:
        """The layers to cache (:func:`cached_layers`)."""
        return cached_layers(units, self.n_images, self.limit_bytes)

    def path(self, layer: str) -> Path:
        """The .npy file of a layer."""
        return self.folder / f"{layer}.npy"

    def load(self, layer: str) -> np.ndarray | None:
        """The cached layer (memory-mapped), or None."""
        path = self.path(layer)
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def writer(self, layer: str, n_units: int) -> np.memmap:
        """A private on-disk array to fill; :meth:`commit` moves it into place.

        The file name is unique to this call, so jobs filling the same layer at once (two
        participants sharing a work folder) never write into each other's file.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        private = private_path(self.path(layer))
        return np.lib.format.open_memmap(
            private, mode="w+", dtype=np.float32, shape=(self.n_images, n_units)
        )

    def commit(self, layer: str, array: np.memmap) -> None:
        """Flush a filled :meth:`writer` array and rename it into place (atomic)."""
        array.flush()
        os.replace(array.filename, self.path(layer))
