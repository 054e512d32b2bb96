"""The sample matrices of one participant: what the decode and reconstruction stages work on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SampleSet:
    """Sample matrices of one participant, voxels standardized with training statistics.

    Attributes
    ----------
    samples : dict of str to ndarray
        Per set: training, one row per block; test sets, one row per stimulus (repetitions
        averaged). Columns are the kept voxels.
    stimuli : dict of str to list of str
        Per set, the stimulus name of each row.
    train_runs : ndarray of int
        For each training row, the index of its run (folds for cross-validation over runs).
    voxels : ndarray, shape (n_voxels, 3)
        Grid indices of the kept voxels.
    rois : dict of str to ndarray of bool
        Per analysed ROI, which kept voxels belong to it.
    blocks : DataFrame
        Every block used, one row each (the provenance table).
    key : str
        Hash of every input the samples depend on (the work-folder cache key); later stages
        include it in their own completion fingerprints.
    """

    samples: dict[str, np.ndarray]
    stimuli: dict[str, list[str]]
    train_runs: np.ndarray
    voxels: np.ndarray
    rois: dict[str, np.ndarray]
    blocks: pd.DataFrame
    key: str = ""
