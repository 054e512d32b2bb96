"""The samples stage: one participant's runs, events and ROI masks → sample matrices.

``collect_inputs`` reads everything cheap (events, image headers, masks, the stimulus index) and
checks it before any output is written. ``compute_samples`` then streams the BOLD runs one at a
time. ``run_samples_stage`` caches the result in the work folder, keyed by a hash of the inputs
and settings, and writes the blocks provenance table to OUTPUT_DIR.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from bids_recon.config import Config
from bids_recon.errors import InputDataError
from bids_recon.fmri.masks import combine_masks, fraction_outside, mask_on_grid
from bids_recon.fmri.sample_set import SampleSet
from bids_recon.fmri.samples import (
    average_by_label,
    block_samples,
    block_windows,
    clean_run,
    standardize_by_training,
)
from bids_recon.io.atomic import atomic_write, atomic_write_json, private_path
from bids_recon.io.events import (
    check_blocks_in_run,
    events_to_blocks,
    read_events,
    stimuli_from_categories,
)
from bids_recon.io.images import load_image, read_voxel_series
from bids_recon.io.layout import RunFiles, find_mask_files
from bids_recon.io.outputs import blocks_table_path
from bids_recon.io.resume import file_identity, fingerprint, stage_lock
from bids_recon.io.stimuli import StimulusIndex, check_image_headers
from bids_recon.log import progress
from bids_recon.specs import DatasetSpec

LOGGER = logging.getLogger(__name__)
CACHE_VERSION = "1"

MAX_MASK_LOSS = 0.05  # a larger fraction of a mask outside the BOLD grid is warned about

BLOCKS_TABLE_COLUMNS = {
    "set": "Set of the block: the training set or a test set of the dataset spec.",
    "session": "Session label of the run.",
    "task": "Task label of the run.",
    "run": "Run label.",
    "onset": "Block onset in seconds from the start of the run (from events.tsv).",
    "duration": "Block duration in seconds.",
    "stimulus": "Original stimulus name (after the spec's stimulus_map, if any).",
    "is_repeat": "True for a one-back repeat block (kept only when the spec includes repeats).",
    "n_volumes": "Volumes averaged into the block's sample (after the haemodynamic shift).",
}


class SampleInputs(Protocol):
    """What the stages need of a participant's checked inputs, whatever their source."""

    label: str
    stimulus_files: dict[str, Path]
    warnings: list[str]  # found while checking, logged (and reported) with the participant

    def sample_stimuli(self) -> list[tuple[str, str]]:
        """(set, stimulus) of every sample (block)."""

    def roi_voxels(self) -> dict[str, int]:
        """Voxels of each analysed ROI."""

    def samples_key(self, config: Config, spec: DatasetSpec) -> str:
        """Hash of everything the samples depend on (the work-folder cache key)."""

    def compute(self, config: Config, spec: DatasetSpec) -> SampleSet:
        """The samples."""


@dataclass(frozen=True)
class ParticipantInputs:
    """Checked inputs of one participant, before any BOLD data is read."""

    label: str
    runs: list[RunFiles]
    blocks: list[pd.DataFrame]  # one table per run, as events_to_blocks returns
    roi_masks: dict[str, np.ndarray]  # analysed ROI -> boolean mask on the BOLD grid
    mask_files: dict[str, list[Path]]
    stimulus_files: dict[str, Path]
    warnings: list[str] = dataclasses.field(default_factory=list)  # logged with the participant

    def sample_stimuli(self) -> list[tuple[str, str]]:
        """(set, stimulus) of every block."""
        return [
            (run.set_name, name)
            for run, table in zip(self.runs, self.blocks, strict=True)
            for name in table["stimulus"]
        ]

    def roi_voxels(self) -> dict[str, int]:
        """Voxels of each analysed ROI."""
        return {name: int(mask.sum()) for name, mask in self.roi_masks.items()}

    def samples_key(self, config: Config, spec: DatasetSpec) -> str:
        """The work-folder cache key of the samples (:func:`cache_key`)."""
        return cache_key(config, spec, self)

    def compute(self, config: Config, spec: DatasetSpec) -> SampleSet:
        """The samples, from the BOLD runs (:func:`compute_samples`)."""
        return compute_samples(config, spec, self)


def collect_inputs(
    config: Config, spec: DatasetSpec, label: str, runs: list[RunFiles]
) -> ParticipantInputs:
    """Read events, headers and masks of one participant and check them all.

    Raises
    ------
    BidsReconError
        Bad events, images or masks (exit 65), missing files or stimuli (66): see the message.
    """
    blocks = []
    shape, affine = None, None
    for run in runs:
        image = load_image(run.bold, ndim=4)
        if shape is None:
            shape, affine, first = image.shape[:3], image.affine, run.bold
        elif image.shape[:3] != shape or not np.allclose(image.affine, affine, atol=1e-3):
            what = (
                "another affine (head position in the scanner)"
                if image.shape[:3] == shape
                else f"another grid ({image.shape[:3]} voxels, {shape} there)"
            )
            raise InputDataError(
                f"{run.bold} has {what} than {first}: the runs are not aligned, as raw runs of "
                "different sessions never are. bids_recon samples voxels as they are, so raw "
                "input must already be aligned. Two routes: run fMRIPrep on the dataset, then "
                "add --derivatives fmriprep=PATH (--space T1w, the default, keeps the native "
                "grid the ROI masks are drawn on); or start from the lab's preprocessed files "
                "(bdpy BData .h5) with --derivatives bdata=DIR."
            )
        table = events_to_blocks(
            read_events(run.events), spec.sets[run.set_name].events, run.events
        )
        check_blocks_in_run(table, image.shape[3] * run.tr, run.events)
        blocks.append(table)
    blocks = _map_categories(spec, runs, blocks)
    training = spec.training_set.events
    n_training = sum(
        len(b) for b, r in zip(blocks, runs, strict=True) if r.set_name == spec.training_set.name
    )
    if n_training == 0:
        raise InputDataError(
            f"sub-{label}: the training runs have no stimulus blocks "
            f"({training.type_column} in {list(training.block_types)})."
        )
    _warn_test_in_training(spec, runs, blocks)

    roi_names = config.roi or (spec.rois.default, *config.roi_mask)
    user = {name: [path] for name, path in config.roi_mask.items()}
    from_spec = [n for n in roi_names if n not in user]
    base = config.derivatives.get("rois", config.bids_dir)
    mask_files = {**find_mask_files(base, spec.rois, label, from_spec), **user}
    roi_masks, notes = {}, []
    for name in roi_names:
        parts = []
        for path in mask_files[name]:
            image = load_image(path, ndim=3)
            parts.append(mask_on_grid(image, path, shape, affine))
            lost = fraction_outside(image, shape, affine)
            if lost > MAX_MASK_LOSS:
                notes.append(
                    f"sub-{label}: ROI mask {path} loses {lost:.0%} of its voxels on the BOLD "
                    f"grid (outside the field of view): ROI {name} is smaller than drawn."
                )
        roi_masks[name] = combine_masks(parts)
    for name, mask in roi_masks.items():
        LOGGER.info("sub-%s: ROI %s has %d voxels on the BOLD grid", label, name, mask.sum())

    no_image = {s.name: set(s.events.no_image) for s in spec.sets.values()}
    index = StimulusIndex(config.resolved_stimuli_dir, spec.stimulus_extensions)
    names_by_set: dict[str, set[str]] = {}
    for run, table in zip(runs, blocks, strict=True):
        names = set(table["stimulus"]) - no_image[run.set_name]
        escaping = sorted(filter(index.escapes, names))
        if escaping:
            raise InputDataError(
                f"{run.events}: stimulus {escaping[0]!r} points outside the stimuli folder "
                f"{index.root}; names must be relative paths inside it (refused)."
            )
        names_by_set.setdefault(run.set_name, set()).update(names)
    stimulus_files = index.resolve_all(names_by_set)
    check_image_headers(stimulus_files.values())
    return ParticipantInputs(label, runs, blocks, roi_masks, mask_files, stimulus_files, notes)


def _map_categories(
    spec: DatasetSpec, runs: list[RunFiles], blocks: list[pd.DataFrame]
) -> list[pd.DataFrame]:
    """Blocks of sets with ``stimulus_from = "category"`` labelled by their category's image."""
    names: dict[str, list[str]] = {}
    for run, table in zip(runs, blocks, strict=True):
        names.setdefault(run.set_name, []).extend(table["stimulus"])
    out = []
    for run, table in zip(runs, blocks, strict=True):
        selection = spec.sets[run.set_name].events
        if selection.stimulus_from == "category":
            images = names.get(selection.category_set, [])
            table = stimuli_from_categories(table, images, selection, run.events)
        out.append(table)
    return out


def _warn_test_in_training(
    spec: DatasetSpec, runs: list[RunFiles], blocks: list[pd.DataFrame]
) -> None:
    training = spec.training_set.name
    train_names = {
        s
        for r, b in zip(runs, blocks, strict=True)
        if r.set_name == training
        for s in b["stimulus"]
    }
    for set_spec in spec.test_sets:
        names = {
            s
            for r, b in zip(runs, blocks, strict=True)
            if r.set_name == set_spec.name
            for s in b["stimulus"]
        }
        overlap = sorted(names & train_names)
        if overlap:
            LOGGER.warning(
                "Test set '%s' shares %d stimulus(es) with the training set (e.g. %s): their "
                "decoding accuracy is not a generalization test.",
                set_spec.name,
                len(overlap),
                ", ".join(overlap[:5]),
            )


def _load_confounds(run: RunFiles, strategy: tuple[str, ...]) -> np.ndarray | None:
    if not strategy:
        return None
    from nilearn.interfaces.fmriprep import load_confounds

    try:
        confounds, sample_mask = load_confounds(str(run.bold), strategy=strategy)
    except Exception as err:
        raise InputDataError(f"Cannot load fMRIPrep confounds for {run.bold}: {err}") from err
    if sample_mask is not None:
        LOGGER.warning("%s: scrubbing is not supported; all volumes are kept", run.bold.name)
    return confounds.to_numpy(dtype=float)


def compute_samples(config: Config, spec: DatasetSpec, inputs: ParticipantInputs) -> SampleSet:
    """Stream the runs (one in memory at a time) and build the standardized sample matrices.

    Raises
    ------
    InputDataError
        NaN voxels, a block with no volume after the shift, or no voxel left.
    """
    union = combine_masks(list(inputs.roi_masks.values()))
    voxels = np.argwhere(union)
    fmri = spec.fmri
    rows, tables = [], []
    for index, (run, table) in enumerate(
        progress(list(zip(inputs.runs, inputs.blocks, strict=True)), f"sub-{inputs.label} runs")
    ):
        image = load_image(run.bold, ndim=4)
        series = read_voxel_series(image, union, run.bold)
        cleaned = clean_run(
            series,
            run.tr,
            detrend=fmri.detrend,
            high_pass=fmri.high_pass,
            normalize=fmri.normalize,
            baseline_volumes=int(round(fmri.baseline_duration / run.tr)),
            confounds=_load_confounds(run, config.confounds),
        )
        windows = block_windows(
            table["onset"], table["duration"], len(series), run.tr, fmri.hrf_delay, run.start_time
        )
        counts = (windows > 0).sum(axis=1)
        if (counts == 0).any():
            k = int(np.flatnonzero(counts == 0)[0])
            raise InputDataError(
                f"{run.events}: block {table['stimulus'].iloc[k]!r} at "
                f"{table['onset'].iloc[k]:g} s "
                f"has no volume after the {fmri.hrf_delay:g}-s haemodynamic shift "
                f"({len(series)} volumes at TR {run.tr:g} s)."
            )
        rows.append(block_samples(cleaned, windows).astype(np.float32))
        tables.append(
            table.assign(
                set=run.set_name,
                session=run.session,
                task=run.task,
                run=run.run,
                n_volumes=counts,
                run_index=index,
            )
        )
    blocks = pd.concat(tables, ignore_index=True)
    roi_columns = {name: mask[tuple(voxels.T)] for name, mask in inputs.roi_masks.items()}
    return assemble_samples(spec, inputs.label, blocks, np.concatenate(rows), voxels, roi_columns)


def assemble_samples(
    spec: DatasetSpec,
    label: str,
    blocks: pd.DataFrame,
    everything: np.ndarray,
    voxels: np.ndarray,
    roi_columns: dict[str, np.ndarray],
) -> SampleSet:
    """Standardize block samples with training statistics and average test repetitions.

    Parameters
    ----------
    blocks : DataFrame
        One row per sample with ``set``, ``stimulus`` and ``run_index`` (the CV group).
    everything : ndarray, shape (n_samples, n_voxels)
    voxels : ndarray, shape (n_voxels, 3)
        Where each voxel is (grid indices, or BData positions).
    roi_columns : dict of str to ndarray of bool
        Per ROI, which of the voxels belong to it.

    Raises
    ------
    InputDataError
        No voxel varies over the training blocks.
    """
    is_train = (blocks["set"] == spec.training_set.name).to_numpy()
    mean, sd, keep = standardize_by_training(everything[is_train])
    dropped = int((~keep).sum())
    if dropped:
        LOGGER.info("sub-%s: dropped %d zero-variance voxel(s) of %d", label, dropped, len(keep))
    if not keep.any():
        raise InputDataError(f"sub-{label}: no ROI voxel varies over the training blocks.")
    standardized = ((everything[:, keep] - mean[keep]) / sd[keep]).astype(np.float32)

    samples: dict[str, np.ndarray] = {}
    stimuli: dict[str, list[str]] = {}
    for set_spec in spec.sets.values():
        in_set = (blocks["set"] == set_spec.name).to_numpy()
        names = blocks.loc[in_set, "stimulus"].tolist()
        if set_spec.role == "training":
            samples[set_spec.name], stimuli[set_spec.name] = standardized[in_set], names
        else:
            unique, averaged = average_by_label(standardized[in_set], names)
            samples[set_spec.name], stimuli[set_spec.name] = averaged.astype(np.float32), unique
    return SampleSet(
        samples,
        stimuli,
        blocks.loc[is_train, "run_index"].to_numpy(),
        voxels[keep],
        {name: columns[keep] for name, columns in roi_columns.items()},
        blocks.drop(columns="run_index"),
    )


def cache_key(config: Config, spec: DatasetSpec, inputs: ParticipantInputs) -> str:
    """Hash of everything the samples depend on: files (size, mtime), events content, settings."""
    description = {
        "cache_version": CACHE_VERSION,
        "fmri": repr(spec.fmri),
        "sets": repr(sorted(spec.sets.items())),
        "rois": sorted((k, [file_identity(p) for p in v]) for k, v in inputs.mask_files.items()),
        "confounds": list(config.confounds),
        "runs": [
            [
                run.set_name,
                file_identity(run.bold),
                hashlib.sha256(run.events.read_bytes()).hexdigest(),
                run.tr,
                run.start_time,
            ]
            for run in inputs.runs
        ],
    }
    return fingerprint(description)


def _save(sample_set: SampleSet, folder: Path) -> None:
    """Write a SampleSet to ``folder`` atomically (private folder, then rename)."""
    private = private_path(folder)
    private.mkdir(parents=True)
    try:
        arrays = {"voxels": sample_set.voxels, "train_runs": sample_set.train_runs}
        for name, matrix in sample_set.samples.items():
            arrays[f"samples__{name}"] = matrix
            arrays[f"stimuli__{name}"] = np.array(sample_set.stimuli[name], dtype=str)
        for name, mask in sample_set.rois.items():
            arrays[f"roi__{name}"] = mask
        np.savez(private / "samples.npz", **arrays)
        sample_set.blocks.to_csv(private / "blocks.tsv", sep="\t", index=False)
        os.replace(private, folder)
    except OSError:
        shutil.rmtree(private, ignore_errors=True)
        if not (folder / "samples.npz").exists():
            raise


def _load(folder: Path) -> SampleSet:
    with np.load(folder / "samples.npz") as data:
        samples = {k.split("__", 1)[1]: data[k] for k in data.files if k.startswith("samples__")}
        stimuli = {
            k.split("__", 1)[1]: data[k].tolist() for k in data.files if k.startswith("stimuli__")
        }
        rois = {k.split("__", 1)[1]: data[k] for k in data.files if k.startswith("roi__")}
        voxels, train_runs = data["voxels"], data["train_runs"]
    blocks = pd.read_csv(
        folder / "blocks.tsv",
        sep="\t",
        dtype={"session": str, "run": str, "task": str, "stimulus": str},
        keep_default_na=False,
    )
    return SampleSet(samples, stimuli, train_runs, voxels, rois, blocks, key=folder.name)


def write_blocks_table(output_dir: Path, label: str, blocks: pd.DataFrame) -> Path:
    """Write the provenance table of the blocks used, with its JSON data dictionary."""
    path = blocks_table_path(output_dir, label)
    table = blocks[list(BLOCKS_TABLE_COLUMNS)].copy()
    table["is_repeat"] = table["is_repeat"].map({True: "true", False: "false"})
    atomic_write(path, table.to_csv(sep="\t", index=False, na_rep="n/a"))
    dictionary = {name: {"Description": text} for name, text in BLOCKS_TABLE_COLUMNS.items()}
    dictionary["onset"]["Units"] = dictionary["duration"]["Units"] = "s"
    atomic_write_json(path.with_suffix(".json"), dictionary)
    return path


def run_samples_stage(config: Config, spec: DatasetSpec, inputs: SampleInputs) -> SampleSet:
    """Compute (or load from the work-folder cache) the samples and write the blocks table.

    ``inputs`` are BOLD runs (:class:`ParticipantInputs`) or the lab's preprocessed files
    (``workflows/bdata.py``); each knows its cache key and how to compute its samples.
    """
    key = inputs.samples_key(config, spec)
    folder = config.work_dir / f"sub-{inputs.label}" / "samples" / key
    with stage_lock(config.work_dir, inputs.label, "samples"):
        if (folder / "samples.npz").is_file():
            LOGGER.info("sub-%s: samples loaded from the cache %s", inputs.label, folder)
            sample_set = _load(folder)
        else:
            sample_set = dataclasses.replace(inputs.compute(config, spec), key=key)
            _save(sample_set, folder)
    shapes = ", ".join(f"{k} {v.shape[0]}x{v.shape[1]}" for k, v in sample_set.samples.items())
    LOGGER.info("sub-%s: samples (rows x voxels): %s", inputs.label, shapes)
    write_blocks_table(config.output_dir, inputs.label, sample_set.blocks)
    return sample_set
