"""ROI masks on the BOLD grid: combine sub-ROI masks, resampling them when their grid differs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nilearn.image import resample_img

from bids_recon.errors import InputDataError

LOGGER = logging.getLogger(__name__)


def mask_on_grid(
    image: nib.Nifti1Image, path: Path, shape: tuple[int, int, int], affine: np.ndarray
) -> np.ndarray:
    """A mask image as a boolean array on the BOLD grid (nearest-neighbour resampling).

    Raises
    ------
    InputDataError
        The mask cannot be resampled to the grid, or is empty there.
    """
    if image.shape[:3] == tuple(shape) and np.allclose(image.affine, affine, atol=1e-3):
        data = np.asanyarray(image.dataobj)
    else:
        try:
            resampled = resample_img(
                image,
                target_affine=affine,
                target_shape=shape,
                interpolation="nearest",
                force_resample=True,
                copy_header=True,
            )
        except Exception as err:
            raise InputDataError(
                f"ROI mask {path} (shape {image.shape}) cannot be resampled to the BOLD grid "
                f"(shape {tuple(shape)}): {err}"
            ) from err
        LOGGER.info("Resampled ROI mask %s to the BOLD grid (nearest neighbour)", path.name)
        data = np.asanyarray(resampled.dataobj)
    mask = np.nan_to_num(np.asarray(data, dtype=float)) > 0
    if not mask.any():
        raise InputDataError(
            f"ROI mask {path} is empty on the BOLD grid (no voxel > 0, or no overlap with the "
            f"BOLD field of view)."
        )
    return mask


def fraction_outside(
    image: nib.Nifti1Image, shape: tuple[int, int, int], affine: np.ndarray
) -> float:
    """Fraction of a mask's voxels whose centres fall outside the BOLD field of view."""
    ijk = np.argwhere(np.nan_to_num(np.asarray(image.dataobj, dtype=float)) > 0)
    if not len(ijk):
        return 0.0
    world = nib.affines.apply_affine(image.affine, ijk)
    on_grid = np.rint(nib.affines.apply_affine(np.linalg.inv(affine), world))
    inside = ((on_grid >= 0) & (on_grid < np.asarray(shape))).all(axis=1)
    return float(1.0 - inside.mean())


def combine_masks(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Union of boolean masks (hemispheres, dorsal/ventral parts)."""
    return np.logical_or.reduce(list(masks))
