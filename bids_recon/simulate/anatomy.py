"""Simulated visual-cortex anatomy: ROI masks with ds001506's names and voxel retinotopy.

Axes of the voxel grid are (x: left to right, y: posterior to anterior, z: inferior to
superior). Visual areas are bands along y at the back of an ellipsoidal brain; dorsal parts sit
above the middle slice and ventral parts below. The left hemisphere sees the right visual field
and dorsal areas the lower field, as in human cortex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARLY_ROIS = ("V1d", "V1v", "V2d", "V2v", "V3d", "V3v", "hV4")
HIGHER_ROIS = ("LOC", "FFA", "PPA", "HVC")
HEMISPHERES = ("LH", "RH")

# band along y (fraction of the grid) and vertical part for each mask
_BANDS: dict[str, tuple[float, float, str]] = {
    "V1d": (0.00, 0.10, "dorsal"),
    "V1v": (0.00, 0.10, "ventral"),
    "V2d": (0.10, 0.18, "dorsal"),
    "V2v": (0.10, 0.18, "ventral"),
    "V3d": (0.18, 0.26, "dorsal"),
    "V3v": (0.18, 0.26, "ventral"),
    "hV4": (0.26, 0.34, "ventral"),
    "LOC": (0.26, 0.40, "dorsal"),
    "FFA": (0.34, 0.42, "ventral"),
    "PPA": (0.42, 0.50, "ventral"),
    "HVC": (0.26, 0.50, "both"),
}
# receptive-field size (SD, in units of the half-width of the visual field) per early area
RF_SIZE = {"V1": 0.08, "V2": 0.12, "V3": 0.18, "hV4": 0.25}


@dataclass(frozen=True)
class Anatomy:
    """Brain and ROI masks of one simulated participant."""

    brain: np.ndarray  # bool, grid shape
    masks: dict[tuple[str, str], np.ndarray]  # (hemisphere, roi) -> bool mask

    def union(self, rois: tuple[str, ...]) -> np.ndarray:
        """Voxels in any of ``rois`` (both hemispheres)."""
        out = np.zeros_like(self.brain)
        for (_, roi), mask in self.masks.items():
            if roi in rois:
                out |= mask
        return out


def make_anatomy(shape: tuple[int, int, int], rng: np.random.Generator) -> Anatomy:
    """Draw one participant's brain and masks; band edges jitter by up to one voxel."""
    nx, ny, nz = shape
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    centre = (np.array(shape) - 1) / 2
    radii = np.array(shape) / 2
    brain = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + (
        (z - centre[2]) / radii[2]
    ) ** 2 <= 1.0
    jitter = rng.integers(-1, 2, size=len(_BANDS))
    masks = {}
    for hemi in HEMISPHERES:
        side = x < nx // 2 if hemi == "LH" else x >= nx - nx // 2
        for (roi, (start, stop, part)), shift in zip(_BANDS.items(), jitter, strict=True):
            y0 = max(0, int(round(start * ny)) + shift)
            y1 = max(y0 + 1, int(round(stop * ny)) + shift)
            band = (y >= y0) & (y < y1)
            vertical = {"dorsal": z >= nz // 2, "ventral": z < nz // 2, "both": z >= 0}[part]
            masks[(hemi, roi)] = brain & side & band & vertical
    return Anatomy(brain=brain, masks=masks)


def area_of(roi: str) -> str:
    """Early area of a mask name: ``V1d`` → ``V1``; ``hV4`` stays."""
    return roi if roi == "hV4" else roi[:2]


def receptive_fields(
    anatomy: Anatomy, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receptive fields of early visual voxels from their position in the grid.

    Returns
    -------
    voxels : ndarray of int, shape (n, 3)
        Grid indices of the early-visual voxels.
    centres : ndarray, shape (n, 2)
        RF centres (x right, y up) in [-1, 1]^2.
    sizes : ndarray, shape (n,)
        RF standard deviations.

    """
    nx, _, nz = anatomy.brain.shape
    voxels, centres, sizes = [], [], []
    for (hemi, roi), mask in anatomy.masks.items():
        if roi not in EARLY_ROIS:
            continue
        ijk = np.argwhere(mask)
        if len(ijk) == 0:
            continue
        half = nx / 2
        lateral = np.abs(ijk[:, 0] + 0.5 - half) / half  # 0 at the midline, 1 at the edge
        height = np.abs(ijk[:, 2] + 0.5 - nz / 2) / (nz / 2)
        field_x = (1.0 if hemi == "LH" else -1.0) * (0.05 + 0.9 * lateral)
        field_y = (-1.0 if roi.endswith("d") else 1.0) * (0.05 + 0.9 * height)
        centre = np.stack([field_x, field_y], axis=1) + rng.normal(0, 0.05, (len(ijk), 2))
        voxels.append(ijk)
        centres.append(np.clip(centre, -1, 1))
        sizes.append(np.full(len(ijk), RF_SIZE[area_of(roi)]))
    return np.concatenate(voxels), np.concatenate(centres), np.concatenate(sizes)
