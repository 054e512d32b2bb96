"""The Kamitani lab's preprocessed fMRI files (bdpy ``BData``, HDF5), read with h5py.

A BData file is one matrix and metadata about its columns (format of bdpy's ``BData.save``):

- ``/dataset``: samples × columns, float (one row per block in the lab's ds001506 files:
  ``sub-01_perceptionNaturalImageTraining_original_VC.h5``);
- ``/metadata/key`` and ``/metadata/description``: one name and text per metadata row;
- ``/metadata/value``: metadata rows × columns. A key *flags* the columns where its value is 1
  (``VoxelData``, ``ROI_VC``, ``Run``, ...: bdpy's ``select("KEY = 1")``); other keys give one
  number per column (``voxel_x``, ``voxel_y``, ``voxel_z``: voxel positions in mm) and NaN
  elsewhere;
- ``/vmap/<key>/<value>``: text labels of a column's values (``stimulus_name``: id → name).

The fields bids_recon uses: ``VoxelData`` and ``ROI_<name>`` (voxel columns, and those of each
ROI), ``Run`` (run numbers: the cross-validation groups), ``stimulus_name`` with its vmap (newer
files) or ``stimulus_id`` (float: synset number, then six decimals of image number), and
``voxel_x/y/z`` (voxel positions in mm, to check that a participant's files share voxels).
Stimulus labels are mapped to names by :func:`stimulus_names`. Metadata are read when a file is
opened; the matrix is read a column selection at a time (:meth:`BData.read`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from bids_recon.errors import InputDataError, MissingInputError


@dataclass(frozen=True)
class BData:
    """One BData file in memory.

    Attributes
    ----------
    path : Path
    matrix : str
        Name of the sample × column matrix in the file (``dataset``, or ``dataSet`` in old files).
    keys : tuple of str
        Metadata keys, in file order.
    values : ndarray, shape (n_keys, n_columns)
    vmap : dict of str to dict of float to str
        Value labels per key.
    """

    path: Path
    matrix: str
    keys: tuple[str, ...]
    values: np.ndarray
    vmap: Mapping[str, Mapping[float, str]] = field(default_factory=dict)

    def read(self, columns: np.ndarray) -> np.ndarray:
        """The samples × ``columns`` (boolean mask) part of the matrix, as float64."""
        import h5py

        with h5py.File(self.path, "r") as h5:
            return np.asarray(h5[self.matrix][:, np.flatnonzero(columns)], dtype=np.float64)

    @cached_property
    def dataset(self) -> np.ndarray:
        """The whole samples × columns matrix (read once, when first asked for)."""
        return self.read(np.ones(self.values.shape[1], dtype=bool))

    def has(self, key: str) -> bool:
        """Whether the file has metadata ``key``."""
        return key in self.keys

    def flags(self, key: str) -> np.ndarray:
        """Boolean mask of the columns that ``key`` flags (value 1).

        Raises
        ------
        InputDataError
            The file has no such key (the message lists the keys it has).
        """
        if key not in self.keys:
            raise InputDataError(
                f"BData file {self.path} has no metadata key {key!r}; it has "
                f"{', '.join(self.keys)}."
            )
        return self.values[self.keys.index(key)] == 1

    def column(self, key: str) -> np.ndarray:
        """The one column that ``key`` flags (``Run``, ``stimulus_id``), as a vector.

        Raises
        ------
        InputDataError
            The key is missing or flags no or several columns.
        """
        columns = self.flags(key)
        if columns.sum() != 1:
            raise InputDataError(
                f"BData file {self.path}: {key!r} flags {columns.sum()} columns, expected one."
            )
        return self.read(columns)[:, 0]

    def positions(self, columns: np.ndarray) -> np.ndarray | None:
        """``voxel_x/y/z`` of ``columns`` (n, 3), or None when the file lacks them."""
        names = ("voxel_x", "voxel_y", "voxel_z")
        if not all(self.has(n) for n in names):
            return None
        return np.stack([self.values[self.keys.index(n)][columns] for n in names], axis=1)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_bdata(path: Path) -> BData:
    """Read a BData HDF5 file.

    Raises
    ------
    MissingInputError
        The file does not exist.
    InputDataError
        Not HDF5, or not BData's layout (the message says what is missing).
    """
    import h5py

    if not path.is_file():
        raise MissingInputError(f"BData file not found: {path}")
    try:
        with h5py.File(path, "r") as h5:
            group = "metadata" if "metadata" in h5 else "metaData"
            name = "dataset" if "dataset" in h5 else "dataSet"
            if name not in h5 or group not in h5:
                raise InputDataError(
                    f"{path} is not a BData file: it needs /dataset and /metadata (has "
                    f"{', '.join(h5)})."
                )
            shape = h5[name].shape
            keys = tuple(_text(k) for k in h5[group]["key"][:].tolist())
            values = np.asarray(h5[group]["value"], dtype=np.float64)
            vmap = {
                key: {float(v): _text(h5["vmap"][key][v][()]) for v in h5["vmap"][key]}
                for key in (h5["vmap"] if "vmap" in h5 else ())
            }
    except OSError as err:
        raise InputDataError(f"{path} cannot be read as HDF5 (BData): {err}") from err
    if len(shape) != 2 or values.shape != (len(keys), shape[1]):
        raise InputDataError(
            f"BData file {path}: /{name} {shape} and /metadata/value {values.shape} "
            f"do not fit ({len(keys)} keys)."
        )
    return BData(path, name, keys, values, vmap)


def id_key(value: float | str) -> str:
    """A stimulus id as text with six decimals, the key shared by BData and events files."""
    return f"{float(value):.6f}"


IMAGENET_ID = re.compile(r"(\d+)\.(\d{6})")


def stimulus_names(data: BData, table: Mapping[str, str]) -> list[str]:
    """The stimulus name of each sample.

    From the ``stimulus_name`` vmap when the file has one; else from the ``stimulus_id``
    column: through ``table`` (id → name, e.g. from ds001506's events files, whose
    ``stimulus_id`` and ``stimulus_name`` columns pair them), else by the lab's rule for
    ImageNet images (integer part: synset number; six decimals: image number:
    ``1518878.005958`` → ``n01518878_5958``).

    Raises
    ------
    InputDataError
        Labels that none of these map (the message names the file and the labels).
    """
    if data.has("stimulus_name") and "stimulus_name" in data.vmap:
        names = data.vmap["stimulus_name"]
        ids = data.column("stimulus_name")
        unknown = sorted({v for v in ids if float(v) not in names})
        if unknown:
            raise InputDataError(
                f"BData file {data.path}: stimulus_name value(s) {unknown[:10]} have no label "
                f"in its vmap."
            )
        return [names[float(v)] for v in ids]
    out, unknown = [], []
    for value in data.column("stimulus_id"):
        key = id_key(value)
        match = IMAGENET_ID.fullmatch(key)
        if key in table:
            out.append(table[key])
        elif match and int(match.group(2)):
            out.append(f"n{int(match.group(1)):08d}_{int(match.group(2))}")
        else:
            out.append("")
            unknown.append(key)
    if unknown:
        raise InputDataError(
            f"BData file {data.path}: stimulus_id value(s) {sorted(set(unknown))[:10]} cannot be "
            "mapped to stimulus names: they are not ImageNet ids (synset.image) and no events "
            "file of the BIDS dataset pairs them with a stimulus_name."
        )
    return out
