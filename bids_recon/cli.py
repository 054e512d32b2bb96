"""Command line: ``bids_recon BIDS_DIR OUTPUT_DIR {participant,group} [options]``.

This module only parses: it turns arguments (over an optional ``--config-file``) into one frozen
:class:`~bids_recon.config.Config`, hands it to a workflow, and maps failures to the exit codes of
the BIDS-Apps execution spec (:mod:`bids_recon.errors`, README.md "Exit codes").
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bids_recon import __version__
from bids_recon.config import (
    ANALYSIS_LEVELS,
    DEVICES,
    STAGES,
    Config,
    build_config,
    parse_memory_mb,
    parse_shard,
    read_config_file,
)
from bids_recon.errors import (
    AnalysisLevelError,
    BidsReconError,
    MissingInputError,
    Terminated,
    UsageError,
    stopped_by,
)
from bids_recon.io.layout import read_filter_file, select_participants
from bids_recon.io.reference_sd import read_reference_sd
from bids_recon.log import setup_logging
from bids_recon.specs import resolve_spec

LOGGER = logging.getLogger("bids_recon.cli")


def _strip(prefix: str):
    def parse(label: str) -> str:
        return label.removeprefix(prefix)

    parse.__name__ = f"label without {prefix!r}"
    return parse


def _path(value: str) -> Path:
    return Path(value).expanduser().absolute()


def positive_int(value: str) -> int:
    """An argparse type: an integer of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def _shard(value: str) -> tuple[int, int]:
    try:
        return parse_shard(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _memory(value: str) -> float:
    try:
        return parse_memory_mb(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a size such as 16000 or 16G: {err}") from None


def _name_path(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, _path(path)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser. Options default to 'not given' so a config file can fill them."""
    defaults = Config(bids_dir=Path("."), output_dir=Path("."), analysis_level="participant")
    parser = argparse.ArgumentParser(
        prog="bids_recon",
        description=(
            "Reconstruct seen or imagined images from fMRI (Shen et al. 2019) as a BIDS App. "
            "Run 'participant' per subject, then 'group' on the same OUTPUT_DIR."
        ),
        argument_default=argparse.SUPPRESS,
        epilog="Exit codes are listed in README.md (BIDS-Apps execution spec).",
    )
    parser.add_argument("bids_dir", type=_path, help="the input BIDS dataset")
    parser.add_argument(
        "output_dir", type=_path, help="the output folder (a BIDS-Derivatives dataset)"
    )
    parser.add_argument(
        "analysis_level",
        metavar="{participant,group}",
        help="'participant' runs per subject; 'group' reads only OUTPUT_DIR",
    )
    parser.add_argument("--version", action="version", version=f"bids_recon v{__version__}")

    sel = parser.add_argument_group("Selecting data")
    sel.add_argument(
        "--participant-label",
        "--participant_label",
        dest="participant_label",
        nargs="+",
        type=_strip("sub-"),
        metavar="LABEL",
        help="participants to process, with or without 'sub-' (default: all)",
    )
    sel.add_argument(
        "--session-label",
        "--session-id",
        dest="session_label",
        nargs="+",
        type=_strip("ses-"),
        metavar="LABEL",
        help="sessions to use, with or without 'ses-' (default: all)",
    )
    sel.add_argument(
        "-t",
        "--task-id",
        dest="task_id",
        nargs="+",
        type=_strip("task-"),
        metavar="TASK",
        help="tasks to use (default: all in the dataset spec)",
    )
    sel.add_argument(
        "--bids-filter-file",
        dest="bids_filter_file",
        type=_path,
        metavar="FILE",
        help="JSON file of pybids queries (fMRIPrep format) narrowing the inputs",
    )
    sel.add_argument(
        "--bids-database-dir",
        dest="bids_database_dir",
        type=_path,
        metavar="DIR",
        help="folder for a reusable pybids index database",
    )
    sel.add_argument(
        "--dataset-spec",
        dest="dataset_spec",
        metavar="{ds001506|PATH}",
        help="dataset spec: built-in name or TOML file (default: detected from "
        "the layout; other datasets need a spec file)",
    )
    sel.add_argument(
        "--stimuli-dir",
        dest="stimuli_dir",
        type=_path,
        metavar="DIR",
        help="folder of stimulus images (default: BIDS_DIR/stimuli)",
    )
    sel.add_argument(
        "--derivatives",
        nargs="+",
        type=_name_path,
        metavar="NAME=PATH",
        help="precomputed derivatives to use, e.g. fmriprep=/data/derivatives/fmriprep",
    )
    sel.add_argument(
        "--space",
        metavar="SPACE",
        help="output space of the fMRIPrep BOLD used with --derivatives fmriprep=PATH "
        "(default: T1w)",
    )
    sel.add_argument(
        "--confounds",
        nargs="+",
        metavar="STRATEGY",
        help="regress fMRIPrep confounds, as nilearn load_confounds strategies "
        "(e.g. motion wm_csf); needs --derivatives fmriprep=PATH",
    )
    sel.add_argument(
        "--sets",
        nargs="+",
        metavar="SET",
        help="test sets to run, by their names in the dataset spec (default: every test set "
        "with runs in the data; absent ones are skipped with a warning). A set named here "
        "that has no runs is an error",
    )
    sel.add_argument(
        "--roi",
        nargs="+",
        metavar="NAME",
        help="ROIs to analyse, from the dataset spec's [rois.combine] or --roi-mask "
        "(default: the spec's default ROI, VC for ds001506)",
    )
    sel.add_argument(
        "--roi-mask",
        dest="roi_mask",
        nargs="+",
        type=_name_path,
        metavar="NAME=PATH",
        help="a user ROI mask (NIfTI, resampled to the BOLD grid if needed)",
    )
    sel.add_argument(
        "--skip-bids-validation",
        "--skip_bids_validation",
        dest="skip_bids_validation",
        action="store_true",
        help="do not run the BIDS validator on the input dataset",
    )

    model = parser.add_argument_group("Model")
    model.add_argument(
        "--network",
        metavar="NAME",
        help=f"feature network: vgg19 (the paper's), builtin (small, for demos and "
        f"tests) or a torchvision model name (default: {defaults.network})",
    )
    model.add_argument(
        "--weights",
        type=_path,
        metavar="PATH",
        help="local weights file for --network (nothing is downloaded at run time)",
    )
    model.add_argument(
        "--layers",
        nargs="+",
        metavar="LAYER",
        help="layers to decode (default: all of the network's: conv1_1 ... fc8 for vgg19)",
    )
    model.add_argument(
        "--preprocessing",
        choices=("caffe", "torchvision"),
        help="image preprocessing; states the pairing with --weights and skips the pairing "
        "check (default: what the weights imply: torchvision for torchvision's published "
        "files, caffe for the lab's VGG19 conversion, unknown VGG19 files and builtin)",
    )
    model.add_argument(
        "--decoder",
        choices=("ridge", "voxel-selection"),
        help="ridge: exact dual-form ridge, alpha per layer by CV over runs (default); "
        "voxel-selection: the paper's FastL2LiR protocol (500 voxels per unit, alpha 100)",
    )
    model.add_argument(
        "--alphas",
        nargs="+",
        type=float,
        metavar="ALPHA",
        help="ridge alpha grid (default: 33 values from 0.1 to 1e7, four per decade)",
    )
    model.add_argument(
        "--cv-folds",
        dest="cv_folds",
        type=positive_int,
        metavar="N",
        help="cross-validation folds of whole runs for ridge alpha (default: 5)",
    )
    model.add_argument(
        "--cv-units",
        dest="cv_units",
        type=positive_int,
        metavar="N",
        help="units per layer (random subset) whose Gram matrix estimates the CV "
        "error of large layers (default: 10000; smaller layers use all)",
    )
    model.add_argument(
        "--selection-voxels",
        dest="selection_voxels",
        type=positive_int,
        metavar="N",
        help="voxel-selection decoder: voxels per unit (default: 500)",
    )
    model.add_argument(
        "--selection-alpha",
        dest="selection_alpha",
        type=float,
        metavar="ALPHA",
        help="voxel-selection decoder: ridge alpha (default: 100)",
    )
    model.add_argument(
        "--feature-sd",
        dest="feature_sd",
        type=_path,
        metavar="FILE",
        help='JSON {"layer": sd} of reference feature SDs for the SD correction (default: '
        "estimated from the training images' true features)",
    )
    model.add_argument(
        "--recon-method",
        dest="recon_method",
        choices=("lbfgs", "gd", "generator"),
        help="lbfgs: L-BFGS on pixels within bounds (default, the paper's without generator); "
        "gd: gradient descent with momentum on pixels; generator: the paper's DGN prior "
        "(needs --generator-weights)",
    )
    model.add_argument(
        "--recon-iterations",
        dest="recon_iterations",
        type=positive_int,
        metavar="N",
        help="optimizer iterations (default: 200, the paper's, for vgg19; 50 for builtin)",
    )
    model.add_argument(
        "--recon-batch-size",
        dest="recon_batch_size",
        type=positive_int,
        metavar="N",
        help="images optimized together; bounds GPU/CPU memory (default: 8)",
    )
    model.add_argument(
        "--recon-layers",
        dest="recon_layers",
        nargs="+",
        metavar="LAYER",
        help="layers whose features are matched (default: all decoded layers)",
    )
    model.add_argument(
        "--recon-tv",
        dest="recon_tv",
        type=float,
        metavar="W",
        help="weight of a total-variation image prior (default: 0, the paper's)",
    )
    model.add_argument(
        "--recon-l2",
        dest="recon_l2",
        type=float,
        metavar="W",
        help="weight of a squared-norm image prior (default: 0)",
    )
    model.add_argument(
        "--recon-jitter",
        dest="recon_jitter",
        type=int,
        metavar="PIXELS",
        help="random shifts per gradient-descent step, --recon-method gd (default: 0)",
    )
    model.add_argument(
        "--generator-weights",
        dest="generator_weights",
        type=_path,
        metavar="PATH",
        help="weights of the fc7 generator (Dosovitskiy & Brox 2016) for --recon-method "
        "generator: the Kamitani lab's bdpy AlexNetGenerator state dict",
    )
    model.add_argument(
        "--generator-act-range",
        dest="generator_act_range",
        type=_path,
        metavar="PATH",
        help="per-unit upper bounds of the generator's fc7 latent (the published "
        "act_range/3x/fc7.txt, or .npy); without it the latent is bounded below by 0 only",
    )
    model.add_argument(
        "--stages",
        nargs="+",
        metavar="STAGE",
        help=f"stages to run, a subset of {', '.join(STAGES)} (default: all)",
    )
    model.add_argument(
        "--random-seed",
        dest="random_seed",
        type=int,
        metavar="N",
        help=f"seed for numpy and torch (default: {defaults.random_seed})",
    )

    res = parser.add_argument_group("Resources")
    res.add_argument(
        "-w",
        "--work-dir",
        dest="work_dir",
        type=_path,
        metavar="DIR",
        help="work folder for caches and resumable intermediate results (default: ./work)",
    )
    res.add_argument(
        "--nprocs",
        "--nthreads",
        "--n_cpus",
        "--n-cpus",
        dest="nprocs",
        type=positive_int,
        metavar="N",
        help="CPUs this job may use: image-loading threads, and the ceiling for "
        "--omp-nthreads (default: the CPUs the job is allowed to run on)",
    )
    res.add_argument(
        "--omp-nthreads",
        dest="omp_nthreads",
        type=positive_int,
        metavar="N",
        help="threads for torch and BLAS (default: --nprocs)",
    )
    res.add_argument(
        "--mem",
        "--mem-mb",
        "--mem_mb",
        dest="mem_mb",
        type=_memory,
        metavar="SIZE",
        help="memory limit, in MB or with a unit (16G); a stage whose estimated peak exceeds "
        "it first uses smaller batches, else stops before it starts (exit 75)",
    )
    res.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="do the K-th of N equal parts of the reconstructions (K from 1), for job arrays; "
        "the job that completes the last part (or a later run without --shard) evaluates "
        "and writes the report",
    )
    res.add_argument(
        "--batch-size",
        dest="batch_size",
        type=positive_int,
        metavar="N",
        help="images per batch through the network (default: 16)",
    )
    res.add_argument(
        "--feature-cache-mb",
        dest="feature_cache_mb",
        type=float,
        metavar="MB",
        help="layers whose training features fit this size are cached whole in the "
        "work folder, and --shard jobs share feature extraction when all layers fit it "
        "(default: 2048)",
    )
    res.add_argument(
        "--device",
        choices=DEVICES,
        help=f"compute device (default: {defaults.device}: CUDA when available)",
    )

    run = parser.add_argument_group("Run control")
    run.add_argument(
        "--config-file",
        dest="config_file",
        type=_path,
        metavar="FILE",
        help="TOML file of options (command-line options win); logs/ keeps the "
        "config of every run in this format",
    )
    run.add_argument(
        "--stop-on-first-crash",
        dest="stop_on_first_crash",
        action="store_true",
        help="stop at the first failing participant instead of continuing",
    )
    run.add_argument(
        "--reports-only",
        dest="reports_only",
        action="store_true",
        help="only rebuild the HTML reports from existing outputs",
    )
    run.add_argument(
        "--notrack",
        action="store_true",
        help="accepted for compatibility; bids_recon collects no telemetry",
    )
    run.add_argument(
        "-v", "--verbose", action="count", help="more log output (-v: debug, -vv: also libraries)"
    )
    return parser


def _check_inputs(values: dict[str, Any]) -> None:
    """Checks that need no dataset indexing: paths exist and do not overlap."""
    level = values["analysis_level"]
    if level not in ANALYSIS_LEVELS:
        raise AnalysisLevelError(
            f"Unknown analysis level {level!r}: choose 'participant' or 'group'."
        )
    bids_dir, output_dir = values["bids_dir"], values["output_dir"]
    if level == "participant" and not bids_dir.is_dir():
        raise MissingInputError(f"BIDS dataset folder not found: {bids_dir}")
    if output_dir == bids_dir:
        raise UsageError(
            f"OUTPUT_DIR must differ from BIDS_DIR ({bids_dir}); for example "
            f"{bids_dir / 'derivatives' / 'bids_recon'}"
        )
    work_dir = values.get("work_dir")
    if work_dir is not None and work_dir.is_relative_to(bids_dir):
        raise UsageError(f"The work folder {work_dir} must not be inside BIDS_DIR {bids_dir}.")
    if values.get("feature_sd") is not None:
        read_reference_sd(values["feature_sd"])
    for key in ("weights", "stimuli_dir", "generator_weights", "generator_act_range"):
        path = values.get(key)
        if path is not None and not path.exists():
            raise MissingInputError(f"--{key.replace('_', '-')}: path not found: {path}")
    for option in ("derivatives", "roi_mask"):
        for name, path in values.get(option, {}).items():
            if not path.exists():
                flag = option.replace("_", "-")
                raise MissingInputError(f"--{flag} {name}: path not found: {path}")
    if {"fmriprep", "bdata"} <= set(values.get("derivatives", {})):
        raise UsageError(
            "--derivatives fmriprep=... and bdata=... are two sources of the same data: give one"
        )
    if values.get("confounds") and "fmriprep" not in values.get("derivatives", {}):
        raise UsageError("--confounds needs fMRIPrep outputs: add --derivatives fmriprep=PATH")
    if values.get("bids_filter_file") is not None:
        read_filter_file(values["bids_filter_file"])


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Parse the command line (over ``--config-file``) into the frozen run config.

    Raises
    ------
    SystemExit
        argparse usage errors (exit code 2), ``--help`` and ``--version`` (0).
    BidsReconError
        Invalid values, missing inputs, unknown analysis level.

    """
    given = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    config_file = given.pop("config_file", None)
    if config_file is not None:
        values.update(read_config_file(config_file))
    values.update(given)
    for key in ("derivatives", "roi_mask"):
        if key in given:
            values[key] = dict(given[key])
    for key in (
        "participant_label",
        "session_label",
        "task_id",
        "stages",
        "confounds",
        "roi",
        "sets",
        "layers",
        "alphas",
        "recon_layers",
    ):
        if key in values:
            values[key] = tuple(values[key])
    _check_inputs(values)
    return build_config(values)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def run_guarded(body: Callable[[], None]) -> int:
    """Run a command's body; map failures to exit codes (README's table) without tracebacks.

    A :class:`BidsReconError` prints its message (its traceback only with ``-v``); SIGINT exits
    130 and SIGTERM 143, each with one line; anything unexpected exits 1 with the traceback.
    The workflows remove their temporary files on the way out.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        body()
    except BidsReconError as err:
        LOGGER.error("%s", err)
        LOGGER.debug("Traceback:", exc_info=True)
        return err.exit_code
    except (KeyboardInterrupt, Terminated) as err:
        if not getattr(err, "logged", False):  # the participant level logs it into its log file
            LOGGER.error("%s; a rerun resumes.", stopped_by(err))
        return 130 if isinstance(err, KeyboardInterrupt) else Terminated.exit_code
    except Exception:  # unexpected: full traceback, generic failure code
        LOGGER.exception("bids_recon failed with an unexpected error")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bids_recon`` console script; returns the exit code."""
    setup_logging(0)

    def body() -> None:
        config = parse_config(argv)
        setup_logging(config.verbose)
        if config.analysis_level == "participant":
            # cheap checks first: the workflow's imports (torch, nilearn, pybids) take seconds
            resolve_spec(config.dataset_spec, config.bids_dir)
            select_participants(config.bids_dir, config.participant_label)
            from bids_recon.workflows.participant import run_participant_level

            run_participant_level(config)
        else:
            from bids_recon.workflows.group import run_group_level

            run_group_level(config)

    return run_guarded(body)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
