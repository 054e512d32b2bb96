"""On-disk feature stores in the work folder: whole layers, and fixed batches of all layers.

:class:`FeatureCache` keeps whole layers (images × units, float32) of an image list when they fit
a size budget, so a re-run skips the network; :class:`BatchStore` keeps every layer of fixed
image batches, which ``--shard`` jobs fill in parallel and a killed run resumes from. Both are
keyed by the network identity and the ordered image list, and written atomically.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bids_recon.io.atomic import atomic_write, private_path


def batch_slices(n_images: int, batch_size: int) -> list[slice]:
    """Consecutive batches of ``batch_size`` rows (the last may be shorter)."""
    return [
        slice(start, min(start + batch_size, n_images)) for start in range(0, n_images, batch_size)
    ]


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

    def save(self, index: int, features: Mapping[str, np.ndarray]) -> None:
        """Store batch ``index`` (layer → (batch, units)) atomically."""
        buffer = io.BytesIO()
        np.savez(buffer, **features)
        atomic_write(self.path(index), buffer.getvalue())


class FeatureCache:
    """Whole-layer features (images × units, float32 .npy) in a work-folder directory.

    Parameters
    ----------
    root : Path
        ``WORK/features``.
    key : str
        Network identity (``features.extract.network_key``).
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
