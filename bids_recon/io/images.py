"""Reading NIfTI images with errors that name the file and say what is wrong.

DataLad/git-annex datasets hold unfetched files as broken symlinks or small pointer files; both
are reported with the ``datalad get`` hint instead of a decompression error.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from bids_recon.errors import InputDataError, MissingInputError


def _annex_hint(path: Path) -> str:
    return (
        f"{path} is a git-annex placeholder whose content is not present: run `datalad get {path}`"
    )


def load_image(path: Path, ndim: int) -> nib.Nifti1Image:
    """Open a NIfTI image lazily and check its dimensionality.

    Raises
    ------
    MissingInputError
        The file is missing, or is an unfetched git-annex file.
    InputDataError
        The file is not a readable NIfTI image or has the wrong number of dimensions.
    """
    if path.is_symlink() and not path.exists():
        raise MissingInputError(_annex_hint(path))
    if not path.is_file():
        raise MissingInputError(f"Image not found: {path}")
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if b"annex/objects" in head or head.startswith(b"/annex/"):
        raise MissingInputError(_annex_hint(path))
    try:
        image = nib.load(path)
    except Exception as err:  # nibabel raises many types for corrupt files
        raise InputDataError(f"{path} is not a readable NIfTI image: {err}") from err
    shape = image.shape
    if len(shape) == 4 and ndim == 3 and shape[3] == 1:
        image = image.slicer[..., 0]
    elif len(shape) != ndim:
        raise InputDataError(f"{path} has {len(shape)} dimensions {shape}; expected {ndim}-D.")
    return image


def read_voxel_series(image: nib.Nifti1Image, voxels: np.ndarray, path: Path) -> np.ndarray:
    """Time series of the selected voxels of a 4-D image: (n_volumes, n_voxels) float32.

    One run is read at a time, in its stored data type, and only the selected voxels are kept.

    Raises
    ------
    InputDataError
        The data cannot be decompressed or contain NaN or infinite values.
    """
    try:
        data = np.asanyarray(image.dataobj)
    except Exception as err:
        raise InputDataError(f"{path}: the image data cannot be read ({err})") from err
    series = np.asarray(data[voxels], dtype=np.float32).T
    del data
    bad = ~np.isfinite(series)
    if bad.any():
        columns = int(bad.any(axis=0).sum())
        raise InputDataError(
            f"{path}: {columns} voxel(s) of the ROI contain NaN or infinite values; mask them "
            f"out or fix the preprocessing."
        )
    return series
