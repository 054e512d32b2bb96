"""``bids_recon-simulate``: a BIDS dataset shaped like ds001506, with a known encoding model.

The dataset has ds001506's session, task and run names, its events columns and event_type codes
(including the ``on/a`` cell and the mislabelled imagery ``category_name``), per-run bold.json
with RepetitionTime, ROI masks under ``sourcedata/sub-XX/anat/`` with ds001506's names, and the
stimulus images under ``stimuli/``. So the demo runs the real built-in ``ds001506`` spec. The
noiseless per-stimulus voxel responses are kept in ``sourcedata/sub-XX/simulation/`` for tests.
The output is built in a temporary folder and renamed into place: it exists whole or not at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from PIL import Image

from bids_recon import __version__
from bids_recon.errors import BidsReconError, OutputNotWritableError, UsageError
from bids_recon.log import progress, setup_logging
from bids_recon.simulate import anatomy as anat
from bids_recon.simulate import encoding
from bids_recon.simulate.events import Catalogue, Event, imagery_run, perception_run
from bids_recon.simulate.stimuli import (
    COLOURS,
    LETTERS,
    SHAPES,
    letter_name,
    render_letter,
    render_natural,
    render_shape,
    save_image,
    shape_name,
)
from bids_recon.specs import load_builtin_spec

LOGGER = logging.getLogger("bids_recon.simulate")
TR = 2.0
VOXEL_MM = 2.0


@dataclass(frozen=True)
class SimulationSize:
    """How big a simulated dataset is (ds001506 itself: 1,200 training images in 120 runs)."""

    grid: tuple[int, int, int]
    n_train_images: int
    train_sessions: int
    train_runs_per_session: int
    train_repeats_per_run: int
    n_test_images: int
    test_sessions: int
    test_runs_per_session: int
    artificial_runs: int
    letter_runs: int
    imagery_runs: int
    train_presentations: int = 1  # times each training image is shown, in different runs


SIZES = {
    "small": SimulationSize(
        grid=(24, 24, 12),
        n_train_images=200,
        train_sessions=4,
        train_runs_per_session=2,
        train_repeats_per_run=2,
        n_test_images=10,
        test_sessions=2,
        test_runs_per_session=2,
        artificial_runs=2,
        letter_runs=2,
        imagery_runs=2,
    ),
    "medium": SimulationSize(
        grid=(40, 40, 20),
        n_train_images=1200,
        train_sessions=6,
        train_runs_per_session=4,
        train_repeats_per_run=5,
        n_test_images=50,
        test_sessions=2,
        test_runs_per_session=3,
        artificial_runs=4,
        letter_runs=4,
        imagery_runs=4,
    ),
}


@dataclass(frozen=True)
class StimulusSet:
    """All stimuli of a simulated experiment, by set, with their files and ds001506 metadata."""

    train: list[str]
    test: list[str]
    artificial: list[str]
    letters: list[str]
    files: dict[str, Path]  # name -> path relative to stimuli/
    catalogue: Catalogue


def _synset_names(rng: np.random.Generator, n_images: int, per_category: int) -> list[str]:
    n_categories = -(-n_images // per_category)
    synsets = rng.choice(np.arange(1_000_000, 15_000_000), size=n_categories, replace=False)
    names = []
    for k in range(n_images):
        image_id = int(rng.integers(100, 50_000))
        names.append(f"n{int(synsets[k // per_category]):08d}_{image_id}")
    return names


def make_stimuli(root: Path, size: SimulationSize, seed: int) -> StimulusSet:
    """Render and save every stimulus image under ``root`` (the dataset's ``stimuli/``)."""
    rng = np.random.default_rng([seed, 7])
    imagery_targets = load_builtin_spec("ds001506").sets["imagery"].events.stimulus_map
    natural_targets = [n for n in imagery_targets.values() if n.startswith("n")]
    extra_test = _synset_names(rng, size.n_test_images - len(natural_targets), per_category=1)
    test = sorted(natural_targets + extra_test)
    train = sorted(set(_synset_names(rng, size.n_train_images, per_category=8)) - set(test))
    artificial = [shape_name(c, s) for c in COLOURS for s in SHAPES]
    letters = [letter_name(letter) for letter in LETTERS]

    files: dict[str, Path] = {}
    stimulus_id: dict[str, str] = {}
    category_index: dict[str, int] = {}
    image_index: dict[str, int] = {}
    for names, by_category in ((train, True), (test, False)):
        # training images: category_index numbers the synsets; test images: the image rank
        synsets = sorted({n.split("_")[0] for n in names})
        for rank, name in enumerate(names, start=1):
            synset, image_id = name.split("_")
            files[name] = Path("natural") / f"{name}.JPEG"
            stimulus_id[name] = f"{int(synset[1:])}.{int(image_id):06d}"
            category_index[name] = synsets.index(synset) + 1 if by_category else rank
            image_index[name] = rank
    for folder, names in (("artificial", artificial), ("letters", letters)):
        for rank, name in enumerate(names, start=1):
            files[name] = Path(folder) / f"{name}.png"
            stimulus_id[name], category_index[name], image_index[name] = str(rank), rank, rank

    for name in progress(files, "stimuli"):
        if name.startswith("colorExpStim"):
            _, colour, shape = name.split("_", 2)
            image = render_shape(colour, shape)
        elif name.startswith("letter_"):
            image = render_letter(name[-1])
        else:
            synset, image_id = name.split("_")
            image = render_natural(int(synset[1:]), int(image_id))
        save_image(image, root / files[name], files[name].suffix)
    return StimulusSet(
        train, test, artificial, letters, files, Catalogue(stimulus_id, category_index, image_index)
    )


def _write_nifti(
    data: np.ndarray,
    path: Path,
    dtype: type,
    tr: float | None = None,
    shift: tuple[int, int, int] = (0, 0, 0),
) -> None:
    """Write a NIfTI on the simulation grid.

    ``shift`` moves the content by whole voxels and the affine by the opposite amount, so the
    brain stays where it is in world space (a head position in the scanner).
    """
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    if any(shift):
        data = np.roll(data, shift, axis=(0, 1, 2))
        affine[:3, 3] = -VOXEL_MM * np.asarray(shift, dtype=float)
    image = nib.Nifti1Image(data.astype(dtype), affine)
    image.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        image.header["pixdim"][4] = tr
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def _slice_timing(n_slices: int) -> list[float]:
    """Interleaved acquisition over one TR (odd slices first), as in ds001506's sidecars."""
    order = list(range(0, n_slices, 2)) + list(range(1, n_slices, 2))
    step = TR / n_slices
    timing = [0.0] * n_slices
    for k, s in enumerate(order):
        timing[s] = round(k * step, 4)
    return timing


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


class _Subject:
    """One simulated participant: anatomy, voxel responses and the runs that sample them."""

    def __init__(
        self,
        label: str,
        index: int,
        size: SimulationSize,
        stimuli: StimulusSet,
        fields: np.ndarray,
        seed: int,
        root: Path,
        fmriprep: bool = False,
    ):
        self.label, self.size, self.stimuli, self.root = label, size, stimuli, root
        self.fmriprep = fmriprep
        self.rng = np.random.default_rng([seed, 100 + index])
        self.anatomy = anat.make_anatomy(size.grid, self.rng)
        self.brain_ijk = np.argwhere(self.anatomy.brain)
        index_of = {tuple(v): k for k, v in enumerate(self.brain_ijk)}
        names = list(stimuli.files)
        self.stimulus_row = {name: k for k, name in enumerate(names)}
        # stimulus-specific responses (z-scored) of every brain voxel; zero outside visual ROIs
        responses = np.zeros((len(names), len(self.brain_ijk)))
        visual = np.zeros(len(self.brain_ijk), dtype=bool)
        early_ijk, centres, sizes = anat.receptive_fields(self.anatomy, self.rng)
        early_cols = np.array([index_of[tuple(v)] for v in early_ijk])
        responses[:, early_cols] = encoding.early_responses(fields, centres, sizes, self.rng)
        visual[early_cols] = True
        higher = self.anatomy.union(anat.HIGHER_ROIS)
        higher_cols = np.array(
            [index_of[tuple(v)] for v in np.argwhere(higher) if not visual[index_of[tuple(v)]]],
            dtype=int,
        )
        if len(higher_cols):
            features = encoding.global_features(fields)
            responses[:, higher_cols] = encoding.higher_responses(
                features, len(higher_cols), self.rng
            )
            visual[higher_cols] = True
        gain = self.rng.uniform(0.5, 1.5, len(self.brain_ijk)) * visual
        self.responses = responses * gain
        self.generic = gain  # every stimulus block also drives visual voxels by one unit
        self.baseline = 1000.0 * self.rng.uniform(0.8, 1.2, len(self.brain_ijk))
        self.noise = encoding.NoiseModel()

    def write_run(
        self, session: str, task: str, run: int, events, drive: list[Event], length: float
    ) -> None:
        n_volumes = int(np.ceil(length / TR))
        onsets = np.array([e.onset for e in drive])
        durations = np.array([e.duration for e in drive])
        regressors = encoding.event_regressors(onsets, durations, n_volumes, TR)
        amplitudes = np.stack(
            [
                e.gain
                * (
                    self.generic
                    + (
                        self.responses[self.stimulus_row[e.stimulus]]
                        if e.stimulus is not None
                        else 0.0
                    )
                )
                for e in drive
            ]
        )
        series = encoding.synthesize_run(
            regressors, amplitudes, self.baseline, TR, self.noise, self.rng
        )
        volume = np.zeros((*self.size.grid, n_volumes), dtype=np.float64)
        volume[tuple(self.brain_ijk.T)] = series.T
        stem = f"sub-{self.label}_ses-{session}_task-{task}_run-{run:02d}"
        func = self.root / f"sub-{self.label}" / f"ses-{session}" / "func"
        shift = _head_position(session) if self.fmriprep else (0, 0, 0)
        _write_nifti(np.round(volume), func / f"{stem}_bold.nii.gz", np.int16, TR, shift)
        if self.fmriprep:
            self.write_fmriprep_run(session, stem, task, volume)
        _write_json(
            func / f"{stem}_bold.json",
            {
                "RepetitionTime": TR,
                "EchoTime": 0.043,
                "FlipAngle": 80.0,
                "SliceTiming": _slice_timing(self.size.grid[2]),
                "TaskName": task,
            },
        )
        events.to_csv(func / f"{stem}_events.tsv", sep="\t", index=False)

    def write_fmriprep_run(self, session: str, stem: str, task: str, volume: np.ndarray) -> None:
        """Write fMRIPrep-like outputs of one run.

        The BOLD aligned to the T1w (the masks' grid), its brain mask, confounds (24 motion
        parameters, CSF, white matter, global signal, framewise displacement) and the sidecars
        fMRIPrep writes.
        """
        func = (
            self.root / "derivatives" / "fmriprep" / f"sub-{self.label}" / f"ses-{session}"
            / "func"
        )  # fmt: skip
        prefix = func / f"{stem}_space-T1w"
        _write_nifti(volume.astype(np.float32), Path(f"{prefix}_desc-preproc_bold.nii.gz"),
                     np.float32, tr=TR)  # fmt: skip
        _write_json(
            Path(f"{prefix}_desc-preproc_bold.json"),
            {
                "RepetitionTime": TR,
                "SkullStripped": False,
                "SliceTimingCorrected": False,
                "TaskName": task,
            },
        )
        _write_nifti(self.anatomy.brain, Path(f"{prefix}_desc-brain_mask.nii.gz"), np.uint8)
        _write_json(Path(f"{prefix}_desc-brain_mask.json"), {"Type": "Brain"})
        n = volume.shape[3]
        columns: dict[str, np.ndarray] = {}
        for name in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"):
            scale = 0.05 if name.startswith("trans") else 0.001
            trace = np.cumsum(self.rng.normal(0, scale, n))
            derivative = np.r_[np.nan, np.diff(trace)]
            columns |= {
                name: trace,
                f"{name}_derivative1": derivative,
                f"{name}_power2": trace**2,
                f"{name}_derivative1_power2": derivative**2,
            }
        brain = volume[self.anatomy.brain]
        columns |= {
            "global_signal": brain.mean(axis=0),
            "csf": self.rng.normal(1000, 5, n),
            "white_matter": self.rng.normal(1000, 5, n),
            "framewise_displacement": np.r_[np.nan, self.rng.uniform(0.01, 0.1, n - 1)],
        }
        table = pd.DataFrame(columns)
        confounds = func / f"{stem}_desc-confounds_timeseries.tsv"
        table.to_csv(confounds, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
        _write_json(confounds.with_suffix(".json"), {c: {} for c in columns})

    def write_masks(self) -> None:
        anat_dir = self.root / "sourcedata" / f"sub-{self.label}" / "anat"
        for (hemi, roi), mask in self.anatomy.masks.items():
            _write_nifti(mask, anat_dir / f"sub-{self.label}_mask_{hemi}_{roi}.nii.gz", np.uint8)
        truth = self.root / "sourcedata" / f"sub-{self.label}" / "simulation"
        truth.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            truth / f"sub-{self.label}_desc-truth_responses.npz",
            stimulus_names=np.array(list(self.stimulus_row)),
            voxel_ijk=self.brain_ijk,
            responses=self.responses.astype(np.float32),
        )


def _head_position(session: str) -> tuple[int, int, int]:
    """A session's head position in whole voxels (never zero), the same on every machine."""
    rng = np.random.default_rng(zlib.crc32(session.encode()))
    shift = (0, 0, 0)
    while not any(shift):
        shift = tuple(int(v) for v in rng.integers(-2, 3, 3))
    return shift


def _sessions(prefix: str, n_runs: int, runs_per_session: int) -> list[tuple[str, int]]:
    """(session label, run number) pairs, ds001506 style: ``perceptionNaturalImageTest01``."""
    return [
        (f"{prefix}{k // runs_per_session + 1:02d}", k % runs_per_session + 1)
        for k in range(n_runs)
    ]


def _simulate_subject(
    subject: _Subject,
    size: SimulationSize,
    stimuli: StimulusSet,
    imagery_map: dict[int, str],
    no_image: set[str],
    release_synsets: list[str],
) -> None:
    rng = subject.rng
    cat = stimuli.catalogue
    n_train_runs = size.train_sessions * size.train_runs_per_session
    order = [
        name for _ in range(size.train_presentations) for name in rng.permutation(stimuli.train)
    ]  # one pass per presentation, the passes following each other over the runs
    per_run = -(-len(order) // n_train_runs)
    for k, (ses, run) in enumerate(
        _sessions("perceptionNaturalImageTraining", n_train_runs, size.train_runs_per_session)
    ):
        chunk = order[k * per_run : (k + 1) * per_run]
        subject.write_run(
            ses,
            "perception",
            run,
            *perception_run(chunk, cat, size.train_repeats_per_run, 8.0, 0.0, rng),
        )
    n_test_runs = size.test_sessions * size.test_runs_per_session
    for ses, run in _sessions(
        "perceptionNaturalImageTest", n_test_runs, size.test_runs_per_session
    ):
        subject.write_run(
            ses,
            "perception",
            run,
            *perception_run(
                list(rng.permutation(stimuli.test)),
                cat,
                max(1, len(stimuli.test) // 10),
                8.0,
                0.0,
                rng,
            ),
        )
    for ses, run in _sessions("perceptionArtificialImage", size.artificial_runs, 10):
        subject.write_run(
            ses,
            "perception",
            run,
            *perception_run(list(rng.permutation(stimuli.artificial)), cat, 4, 8.0, 0.0, rng),
        )
    for ses, run in _sessions("perceptionLetterImage", size.letter_runs, 12):
        subject.write_run(
            ses,
            "perception",
            run,
            *perception_run(
                list(rng.permutation(stimuli.letters)),
                cat,
                1,
                12.0,
                12.0,
                rng,
                odd_rest_cell=(run == 1),
            ),
        )
    for ses, run in _sessions("imagery", size.imagery_runs, 5):
        subject.write_run(
            ses,
            "imagery",
            run,
            *imagery_run(
                [int(i) for i in rng.permutation(sorted(imagery_map))],
                imagery_map,
                release_synsets,
                no_image,
                rng,
            ),
        )
    subject.write_masks()


def _write_dataset_files(root: Path, labels: list[str], seed: int, size_name: str) -> None:
    _write_json(
        root / "dataset_description.json",
        {
            "Name": "bids_recon simulated dataset (ds001506 layout)",
            "BIDSVersion": "1.10.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["bids_recon developers"],
            "GeneratedBy": [
                {
                    "Name": "bids_recon-simulate",
                    "Version": __version__,
                    "Description": f"size={size_name} seed={seed}",
                }
            ],
        },
    )
    (root / "README").write_text(
        "# bids_recon simulated dataset\n\n"
        "Simulated fMRI shaped like OpenNeuro ds001506 (Shen et al. 2019): same session, task\n"
        "and run names, events columns and event_type codes, ROI masks in sourcedata/.\n"
        "BOLD comes from a known encoding model (retinotopic receptive fields in V1-hV4,\n"
        "mixtures of global image features in LOC/FFA/PPA/HVC), convolved with the canonical\n"
        f"HRF, with drift and AR(1) noise. Generated by bids_recon-simulate {__version__}\n"
        f"(size={size_name}, seed={seed}).\n",
        encoding="utf-8",
    )
    (root / "participants.tsv").write_text(
        "participant_id\n" + "".join(f"sub-{label}\n" for label in labels), encoding="utf-8"
    )
    (root / "sourcedata" / "README").write_text(
        "ROI masks: sourcedata/sub-*/anat/<subject>_mask_<LH|RH>_<ROI>.nii.gz on the EPI grid.\n"
        "sourcedata/sub-*/simulation/: noiseless per-stimulus voxel responses (ground truth).\n",
        encoding="utf-8",
    )


def simulate_dataset(
    out: Path,
    n_subjects: int = 2,
    seed: int = 0,
    size: str = "small",
    train_presentations: int | None = None,
    fmriprep: bool = False,
) -> Path:
    """Generate the simulated dataset at ``out``; returns ``out``.

    ``train_presentations`` (default: the size's, 1) shows every training image that many
    times, each time in another run, as ds001506 shows each of its training images 5 times.

    With ``fmriprep``, the raw runs are written as a scanner gives them: each session with its
    own head position (content and affine moved by whole voxels), so raw runs of different
    sessions are not aligned; ``derivatives/fmriprep/`` holds what fMRIPrep would make of them
    (``space-T1w_desc-preproc_bold`` on the masks' grid, brain masks, confounds, sidecars).

    Raises
    ------
    UsageError
        Bad size or subject count, or ``out`` exists and is not empty.
    OutputNotWritableError
        The parent folder cannot be written.

    """
    if size not in SIZES:
        raise UsageError(f"--size {size!r}: choose from {list(SIZES)}")
    if not 1 <= n_subjects <= 99:
        raise UsageError(f"--subjects must be between 1 and 99, got {n_subjects}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder; choose another path.")
    spec = load_builtin_spec("ds001506")
    imagery = spec.sets["imagery"].events
    imagery_map = {int(k): v for k, v in imagery.stimulus_map.items()}
    dims = SIZES[size]
    if train_presentations is not None:
        if not 1 <= train_presentations <= dims.train_sessions * dims.train_runs_per_session:
            raise UsageError(
                f"--train-presentations must be between 1 and the number of training runs "
                f"({dims.train_sessions * dims.train_runs_per_session}), got {train_presentations}"
            )
        dims = dataclasses.replace(dims, train_presentations=train_presentations)
    staging = out.parent / f".{out.name}.partial"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    except OSError as err:
        raise OutputNotWritableError(f"Cannot create {staging}: {err}") from err
    try:
        stimuli = make_stimuli(staging / "stimuli", dims, seed)
        names = list(stimuli.files)
        fields = np.stack(
            [
                encoding.image_field(Image.open(staging / "stimuli" / stimuli.files[n]))
                for n in names
            ]
        )
        synsets = sorted({n.split("_")[0] for n in stimuli.test})
        filler = [f"n{9_000_000 + k:08d}" for k in range(26)]
        release_synsets = (synsets + filler)[:26]
        labels = [f"{k:02d}" for k in range(1, n_subjects + 1)]
        for index, label in enumerate(progress(labels, "subjects")):
            LOGGER.info("Simulating sub-%s", label)
            subject = _Subject(label, index, dims, stimuli, fields, seed, staging, fmriprep)
            _simulate_subject(
                subject, dims, stimuli, imagery_map, set(imagery.no_image), release_synsets
            )
        _write_dataset_files(staging, labels, seed, size)
        if fmriprep:
            _write_json(
                staging / "derivatives" / "fmriprep" / "dataset_description.json",
                {
                    "Name": "fMRIPrep outputs (simulated by bids_recon-simulate)",
                    "BIDSVersion": "1.10.0",
                    "DatasetType": "derivative",
                    "GeneratedBy": [
                        {"Name": "fMRIPrep", "Description": "simulated by bids_recon-simulate"}
                    ],
                },
            )
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bids_recon-simulate``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="bids_recon-simulate",
        description="Write a simulated BIDS dataset shaped like OpenNeuro ds001506.",
    )
    parser.add_argument(
        "out",
        type=lambda p: Path(p).expanduser().absolute(),
        help="folder to create (must not exist or be empty)",
    )
    parser.add_argument("--subjects", type=int, default=2, help="number of participants")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="small",
        help="small: the demo (minutes on 2 cores); medium: ds001506-like scale",
    )
    parser.add_argument(
        "--train-presentations",
        type=int,
        metavar="N",
        help="show each training image N times, each time in another run (ds001506: 5; default: 1)",
    )
    parser.add_argument(
        "--fmriprep",
        action="store_true",
        help="raw runs with a head position per session (not aligned) and the aligned "
        "fMRIPrep-like outputs under derivatives/fmriprep",
    )
    parser.add_argument("--version", action="version", version=f"bids_recon v{__version__}")
    args = parser.parse_args(argv)
    setup_logging(0)
    try:
        path = simulate_dataset(
            args.out, args.subjects, args.seed, args.size, args.train_presentations, args.fmriprep
        )
    except BidsReconError as err:
        LOGGER.error("%s", err)
        return err.exit_code
    LOGGER.info("Simulated dataset written to %s", path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
