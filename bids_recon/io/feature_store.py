"""On-disk feature stores in the work folder: whole layers, and fixed batches of all layers.

:class:`FeatureCache` keeps whole layers (images × units, ``.npy``) of an image list when they
fit a size budget, so a decoder needs one network pass and a re-run none; :class:`BatchStore`
keeps every layer of fixed image batches, which ``--shard`` jobs fill in parallel and a killed
run resumes from. Both are keyed by the network identity and the ordered image list, and written
atomically.

Layer files are written a batch of rows at a time and read a chunk of columns at a time with
positioned reads and writes, not memory maps, so the process never holds a layer's pages. In
float16 a layer is stored times a power of two (its ``.scale`` file) that brings the first
batch's largest value to 1: the whole float16 range above and below stays free, and the
rounding error is 2⁻¹¹ of each value.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from bids_recon.io.atomic import atomic_write, private_path

HALF_MAX = 65504.0  # the largest float16


def batch_slices(n_images: int, batch_size: int) -> list[slice]:
    """Consecutive batches of ``batch_size`` rows (the last may be shorter)."""
    return [
        slice(start, min(start + batch_size, n_images)) for start in range(0, n_images, batch_size)
    ]


def cached_layers(
    units: dict[str, int], n_images: int, limit_bytes: int, itemsize: int = 4
) -> set[str]:
    """The layers whose features of ``n_images`` fit the budget, smallest first."""
    chosen, used = set(), 0
    for layer, count in sorted(units.items(), key=lambda item: item[1]):
        size = n_images * count * itemsize
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


class LayerWriter:
    """A layer file being filled a batch of rows at a time (private until committed).

    Parameters
    ----------
    path : Path
        The private file to write.
    shape : tuple of int
        (images, units).
    dtype : numpy dtype
        float32, or float16 (scaled, see the module docstring).
    """

    def __init__(self, path: Path, shape: tuple[int, int], dtype: np.dtype):
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.scale = 1.0
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(
            header, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": shape}
        )  # fmt: skip
        self.offset = len(header.getvalue())
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.pwrite(self.fd, header.getvalue(), 0)
        os.ftruncate(self.fd, self.offset + shape[0] * shape[1] * self.dtype.itemsize)
        self.started = False

    def __setitem__(self, rows: slice, values: torch.Tensor | np.ndarray) -> None:
        """Write ``values`` (len(rows) × units, on any device) as rows ``rows``.

        Raises
        ------
        OverflowError
            float16 only: values beyond the range left by the first batch's scale.
        """
        values = torch.as_tensor(values)
        if self.dtype == np.float16:
            low, high = (float(v) for v in torch.aminmax(values))
            peak = max(-low, high)
            if not self.started and 0 < peak < np.inf:
                self.scale = float(2.0 ** -np.ceil(np.log2(peak)))
            if not peak * self.scale <= HALF_MAX:  # also catches inf and NaN
                raise OverflowError(f"{self.path.name}: values beyond the float16 range")
            values = (values * self.scale).half()
        self.started = True
        data = np.ascontiguousarray(values.cpu().numpy(), dtype=self.dtype)
        row_bytes = self.shape[1] * self.dtype.itemsize
        os.pwrite(self.fd, memoryview(data).cast("B"), self.offset + rows.start * row_bytes)

    def close(self) -> None:
        """Flush and close the file."""
        os.fsync(self.fd)
        os.close(self.fd)


class FeatureCache:
    """Whole-layer features (images × units, ``.npy``) in a work-folder directory.

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
    dtype : numpy dtype
        float32, or float16 for half the disk (what the ridge decoder's training features use;
        see the module docstring).
    """

    def __init__(
        self,
        root: Path,
        key: str,
        paths: Sequence[Path],
        limit_bytes: int,
        dtype: np.dtype | type = np.float32,
    ):
        self.dtype = np.dtype(dtype)
        suffix = "" if self.dtype == np.float32 else f"-{self.dtype.name}"
        self.folder = root / f"{key}-{images_digest(paths)}{suffix}"
        self.n_images = len(paths)
        self.limit_bytes = limit_bytes

    def plan(self, units: dict[str, int]) -> set[str]:
        """The layers to cache (:func:`cached_layers`)."""
        return cached_layers(units, self.n_images, self.limit_bytes, self.dtype.itemsize)

    def path(self, layer: str) -> Path:
        """The .npy file of a layer."""
        return self.folder / f"{layer}.npy"

    def has(self, layer: str) -> bool:
        """Whether the layer is cached (files appear complete, by atomic rename)."""
        return self.path(layer).is_file()

    def load(self, layer: str) -> np.ndarray | None:
        """The cached layer (memory-mapped, float32 caches), or None."""
        return np.load(self.path(layer), mmap_mode="r") if self.has(layer) else None

    def scale(self, layer: str) -> float:
        """The factor the layer's values were stored times (1 but for float16)."""
        path = self.path(layer).with_suffix(".scale")
        return float(path.read_text(encoding="utf-8")) if path.is_file() else 1.0

    def read_columns(self, layer: str, columns: slice) -> np.ndarray:
        """Columns of a cached layer, all rows, as float32 in the network's units."""
        with self._reader(layer) as read:
            return read(columns)

    def column_chunks(self, layer: str, chunk: int) -> Iterator[tuple[slice, np.ndarray]]:
        """Consecutive chunks of ``chunk`` columns of a cached layer (:meth:`read_columns`).

        The file is opened, and its header and scale read, once for all chunks.
        """
        with self._reader(layer) as read:
            for columns in batch_slices(read.n_units, chunk):
                yield columns, read(columns)

    @contextmanager
    def _reader(self, layer: str) -> Iterator[Callable[[slice], np.ndarray]]:
        """A function reading column ranges of the layer's open file (positioned reads)."""
        data = np.load(self.path(layer), mmap_mode="r")  # header only: no page is read here
        (n_rows, n_units), dtype, offset = data.shape, data.dtype, data.offset
        del data
        scale = self.scale(layer)
        with open(self.path(layer), "rb", buffering=0) as handle:

            def read(columns: slice) -> np.ndarray:
                start, stop, _ = columns.indices(n_units)
                out = np.empty((n_rows, stop - start), dtype=dtype)
                for row in range(n_rows):
                    position = offset + (row * n_units + start) * dtype.itemsize
                    os.preadv(handle.fileno(), [memoryview(out[row]).cast("B")], position)
                values = out.astype(np.float32, copy=False)
                if scale != 1.0:
                    values *= 1.0 / scale  # a power of two: exact
                return values

            read.n_units = n_units  # type: ignore[attr-defined]
            yield read

    def writer(self, layer: str, n_units: int) -> LayerWriter:
        """A private on-disk array to fill by rows; :meth:`commit` moves it into place.

        The file name is unique to this call, so jobs filling the same layer at once (two
        participants sharing a work folder) never write into each other's file.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        return LayerWriter(private_path(self.path(layer)), (self.n_images, n_units), self.dtype)

    def commit(self, layer: str, writer: LayerWriter) -> None:
        """Close a filled :meth:`writer` file and rename it into place (atomic); its scale first."""
        writer.close()
        if writer.scale != 1.0:
            atomic_write(self.path(layer).with_suffix(".scale"), repr(writer.scale).encode())
        os.replace(writer.path, self.path(layer))
