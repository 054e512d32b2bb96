"""Samples from the lab's preprocessed fMRI (``--derivatives bdata=DIR``) instead of BOLD runs.

The Kamitani lab publishes ds001506 preprocessed (motion-corrected, aligned, one row per block)
as bdpy BData files, one per participant and set: ``sub-01_perceptionNaturalImageTraining_
original_VC.h5``. Each set of the dataset spec names its file by the tag ``bdata``; the files
are looked for anywhere below DIR as ``sub-<label>_<tag>*.h5``. A test set without a file is
skipped (a partial download); the training set's file, and those of sets named by ``--sets``,
must exist. Voxels are the columns of the analysed ROIs (``ROI_<name>``), runs the ``Run``
column, stimuli the names of :func:`bids_recon.io.bdata.stimulus_names` (ids mapped through the
BIDS events of the participant where they pair ``stimulus_id`` with ``stimulus_name``).
From there the samples are standardized and averaged as for BOLD input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.config import Config
from bids_recon.errors import InputDataError, MissingInputError, NoMatchingFilesError
from bids_recon.fmri.sample_set import SampleSet
from bids_recon.io.bdata import BData, id_key, read_bdata, stimulus_names
from bids_recon.io.events import read_events
from bids_recon.io.resume import file_identity, fingerprint
from bids_recon.io.stimuli import StimulusIndex, check_image_headers
from bids_recon.specs import DatasetSpec
from bids_recon.workflows.samples import assemble_samples

LOGGER = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass(frozen=True)
class BDataInputs:
    """Checked inputs of one participant from BData files (see the module docstring)."""

    label: str
    files: dict[str, Path]  # set -> file
    names: dict[str, list[str]]  # set -> stimulus of each row
    roi_sizes: dict[str, int]
    stimulus_files: dict[str, Path]
    warnings: list[str] = field(default_factory=list)

    def sample_stimuli(self) -> list[tuple[str, str]]:
        """(set, stimulus) of every sample."""
        return [(name, s) for name, stimuli in self.names.items() for s in stimuli]

    def roi_voxels(self) -> dict[str, int]:
        """Voxels of each analysed ROI."""
        return dict(self.roi_sizes)

    def samples_key(self, config: Config, spec: DatasetSpec) -> str:
        """Hash of the files, the stimulus names and the ROIs."""
        return fingerprint(
            CACHE_VERSION,
            repr(sorted(spec.sets.items())),
            {name: file_identity(path) for name, path in self.files.items()},
            self.names,
            sorted(self.roi_sizes),
        )

    def compute(self, config: Config, spec: DatasetSpec) -> SampleSet:
        """The samples: ROI columns of every file, standardized by the training rows."""
        rois = list(self.roi_sizes)
        reference = _voxels(read_bdata(self.files[spec.training_set.name]), rois)
        rows, tables = [], []
        for set_name, path in self.files.items():
            voxels = _voxels(read_bdata(path), rois)
            voxels.check_same(reference)
            rows.append(voxels.data.read(voxels.union))
            runs = voxels.data.column("Run").astype(int)
            tables.append(
                pd.DataFrame(
                    {
                        "set": set_name,
                        "session": "n/a",
                        "task": "n/a",
                        "run": [str(r) for r in runs],
                        "onset": np.nan,
                        "duration": np.nan,
                        "stimulus": self.names[set_name],
                        "is_repeat": False,
                        "n_volumes": np.nan,
                        "run_index": runs,
                    }
                )
            )
        positions = reference.positions
        if positions is None:
            positions = np.zeros((int(reference.union.sum()), 3))
        return assemble_samples(
            spec,
            self.label,
            pd.concat(tables, ignore_index=True),
            np.concatenate(rows),
            positions,
            reference.rois,
        )


@dataclass(frozen=True)
class _Voxels:
    """The analysed ROIs' columns of one BData file."""

    data: BData
    union: np.ndarray  # columns of the file in any analysed ROI
    rois: dict[str, np.ndarray]  # per ROI, which of those columns
    positions: np.ndarray | None  # voxel_x/y/z of those columns

    def check_same(self, reference: _Voxels) -> None:
        """Refuse a file whose ROI voxels are not the reference file's.

        Raises
        ------
        InputDataError
            Other voxel counts, ROI memberships or positions.
        """
        same = self.union.sum() == reference.union.sum() and all(
            np.array_equal(self.rois[r], reference.rois[r]) for r in reference.rois
        )
        if same and self.positions is not None and reference.positions is not None:
            same = np.allclose(self.positions, reference.positions)
        if not same:
            raise InputDataError(
                f"BData file {self.data.path} does not hold the ROI voxels of "
                f"{reference.data.path} (counts, ROIs or voxel_x/y/z differ): the sets of a "
                "participant must come from one preprocessing."
            )


def _voxels(data: BData, rois: list[str]) -> _Voxels:
    flags = {roi: data.flags(f"ROI_{roi}") for roi in rois}
    union = np.any(list(flags.values()), axis=0)
    return _Voxels(data, union, {roi: f[union] for roi, f in flags.items()}, data.positions(union))


def find_bdata_files(folder: Path, label: str, spec: DatasetSpec, required: set[str]) -> dict:
    """The BData file of each set for ``sub-<label>`` (absent test sets left out).

    Raises
    ------
    NoMatchingFilesError
        A required set (training, or named by ``--sets``) has no file, or a set several.
    """
    files = {}
    for set_spec in spec.sets.values():
        tag = set_spec.bdata or set_spec.name
        found = sorted(folder.rglob(f"sub-{label}_{tag}*.h5"))
        if len(found) > 1:
            raise NoMatchingFilesError(
                f"Several BData files of sub-{label}, set '{set_spec.name}' in {folder}: "
                f"{', '.join(p.name for p in found)}; keep one."
            )
        if found:
            files[set_spec.name] = found[0]
        elif set_spec.name in required:
            raise NoMatchingFilesError(
                f"No BData file of sub-{label} for set '{set_spec.name}' in {folder}: expected "
                f"sub-{label}_{tag}*.h5 (the tag is the spec's bdata key)."
            )
    return files


def events_id_table(bids_dir: Path, label: str) -> dict[str, str]:
    """Stimulus id → name pairs from the participant's events files that have both columns."""
    table: dict[str, str] = {}
    for path in sorted((bids_dir / f"sub-{label}").rglob("*_events.tsv")):
        events = read_events(path)
        if not {"stimulus_id", "stimulus_name"} <= set(events.columns):
            continue
        for value, name in zip(events["stimulus_id"], events["stimulus_name"], strict=True):
            try:
                table.setdefault(id_key(value), name)
            except ValueError:  # n/a cells of rest rows
                continue
    return table


def collect_bdata_inputs(
    config: Config, spec: DatasetSpec, label: str, folder: Path
) -> BDataInputs:
    """Find and check the BData files of ``sub-<label>``: keys, ROIs, stimulus names, images.

    Raises
    ------
    BidsReconError
        Missing files (18), unreadable or malformed files, unmappable labels (65), missing
        stimulus images (66).
    """
    required = {spec.training_set.name, *config.sets}
    files = find_bdata_files(folder, label, spec, required)
    table = events_id_table(config.bids_dir, label)
    rois = config.roi or (spec.rois.default,)
    names, roi_sizes = {}, {}
    for set_name, path in files.items():
        data = read_bdata(path)
        names[set_name] = stimulus_names(data, table)
        data.column("Run")
        for roi in rois:
            if not data.has(f"ROI_{roi}"):
                available = [k.removeprefix("ROI_") for k in data.keys if k.startswith("ROI_")]
                raise InputDataError(
                    f"BData file {path} has no ROI {roi} (no metadata key ROI_{roi}); its ROIs: "
                    f"{', '.join(available) or 'none'}."
                )
            roi_sizes[roi] = int(data.flags(f"ROI_{roi}").sum())
    if not files:
        raise MissingInputError(f"No BData files of sub-{label} in {folder}.")
    no_image = {s.name: set(s.events.no_image) for s in spec.sets.values()}
    index = StimulusIndex(config.resolved_stimuli_dir, spec.stimulus_extensions)
    stimulus_files = index.resolve_all(
        {name: set(stimuli) - no_image[name] for name, stimuli in names.items()}
    )
    check_image_headers(stimulus_files.values())
    LOGGER.info(
        "sub-%s: BData files: %s",
        label,
        ", ".join(f"{name} {path.name} ({len(names[name])} rows)" for name, path in files.items()),
    )
    return BDataInputs(label, files, names, roi_sizes, stimulus_files)
