"""Write the small BData files of tests/data/bdata with bdpy's own BData writer.

bdpy needs numpy<2 and Python < 3.12, so this runs in its own environment (the one
``bench/parity_bdpy.py`` makes works):

    bench/.venv-bdpy/bin/python scripts/make_bdata_fixtures.py tests/data/bdata

The files have the layout of the lab's preprocessed ds001506 files
(``sub-01_perceptionNaturalImageTraining_original_VC.h5``): one row per block, ``VoxelData``
columns flagged by ``ROI_<name>`` metadata and located by ``voxel_x/y/z``, one column each for
``Run``, ``Block`` and ``stimulus_id`` (the image as a float: synset number, then image
number as six decimals). The test file also has ``stimulus_name`` with a vmap (id → name), as
the lab's newer files do. Voxel data carry an image-specific pattern plus noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from bdpy import BData

N_VOXELS = 30
ROIS = {
    "V1": range(0, 10),
    "V2": range(10, 20),
    "LVC": range(0, 20),
    "HVC": range(20, 30),
    "VC": range(0, 30),
}
TRAIN = [f"n0{1000000 + 111 * k:07d}_{1000 + k}" for k in range(12)]
TEST = [f"n0{2000000 + 333 * k:07d}_{2000 + k}" for k in range(5)]


def stimulus_id(name: str) -> float:
    """The lab's float id of an ImageNet name: synset number, then the image number."""
    synset, number = name.split("_")
    return float(f"{int(synset[1:])}.{int(number):06d}")


def pattern(name: str) -> np.ndarray:
    """The voxel pattern an image evokes (fixed per image)."""
    return np.random.RandomState(int(stimulus_id(name) * 1e6) % 2**31).normal(size=N_VOXELS)


def write(path: Path, rows: list[tuple[int, int, str]], rng, names_vmap: bool) -> None:
    """One BData file of (run, block, stimulus) rows."""
    data = BData()
    voxels = np.stack([pattern(name) for _, _, name in rows]) + 0.5 * rng.normal(
        size=(len(rows), N_VOXELS)
    )
    data.add(voxels, "VoxelData")
    data.add(np.array([[run] for run, _, _ in rows], dtype=float), "Run")
    data.add(np.array([[block] for _, block, _ in rows], dtype=float), "Block")
    ids = np.array([[stimulus_id(name)] for _, _, name in rows])
    data.add(ids, "stimulus_id")
    if names_vmap:
        data.add(ids.copy(), "stimulus_name")
        data.add_vmap("stimulus_name", {stimulus_id(n): n for _, _, n in rows})
    for roi, columns in ROIS.items():
        flags = np.zeros(N_VOXELS)
        flags[list(columns)] = 1
        data.add_metadata(f"ROI_{roi}", flags, f"1 = ROI {roi}", where="VoxelData")
    grid = np.indices((5, 3, 2)).reshape(3, -1).T * 2.0  # 30 voxels on a 2-mm grid
    for axis, name in enumerate(("voxel_x", "voxel_y", "voxel_z")):
        data.add_metadata(name, grid[:, axis], f"{name} (mm)", where="VoxelData")
    data.save(str(path))


def main() -> None:
    """Write the training and test files into the folder given as the argument."""
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    order = rng.permutation(TRAIN + TRAIN)  # every image twice, over three runs
    train = [(k // 8 + 1, k % 8 + 1, str(name)) for k, name in enumerate(order)]
    test = [(rep + 1, k + 1, name) for rep in range(2) for k, name in enumerate(TEST)]
    write(out / "sub-01_perceptionNaturalImageTraining_original_VC.h5", train, rng, False)
    write(out / "sub-01_perceptionNaturalImageTest_original_VC.h5", test, rng, True)


if __name__ == "__main__":
    main()
