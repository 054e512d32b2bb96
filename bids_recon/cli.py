"""Command line: ``bids_recon BIDS_DIR OUTPUT_DIR {participant,group} [options]``.

This module only parses: it turns arguments (over an optional ``--config-file``) into one frozen
:class:`~bids_recon.config.Config`, hands it to a workflow, and maps failures to the exit codes of
the BIDS-Apps execution spec (:mod:`bids_recon.errors`, README.md "Exit codes").
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from bids_recon import __version__
from bids_recon.config import ANALYSIS_LEVELS, Config, build_config
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
from bids_recon.io.weights import ACT_RANGE_SEARCH, GENERATOR_SEARCH, find_weights
from bids_recon.log import begin_run_log, setup_logging
from bids_recon.options import OPTIONS, absolute_path, read_config_file
from bids_recon.specs import resolve_spec

LOGGER = logging.getLogger("bids_recon.cli")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, made from :data:`bids_recon.options.OPTIONS`.

    Options default to 'not given', so that a config file can fill them; the defaults are
    :class:`~bids_recon.config.Config`'s.
    """
    parser = argparse.ArgumentParser(
        prog="bids_recon",
        description=(
            "Reconstruct seen or imagined images from fMRI (Shen et al. 2019) as a BIDS App. "
            "Run 'participant' per subject, then 'group' on the same OUTPUT_DIR."
        ),
        argument_default=argparse.SUPPRESS,
        epilog="Exit codes are listed in README.md (BIDS-Apps execution spec).",
    )
    parser.add_argument("bids_dir", type=absolute_path, help="the input BIDS dataset")
    parser.add_argument(
        "output_dir", type=absolute_path, help="the output folder (a BIDS-Derivatives dataset)"
    )
    parser.add_argument(
        "analysis_level",
        metavar="{participant,group}",
        help="'participant' runs per subject; 'group' reads only OUTPUT_DIR",
    )
    parser.add_argument("--version", action="version", version=f"bids_recon v{__version__}")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in OPTIONS:
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        option.add_to(groups[option.group])
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
    if values.get("recon_method") == "generator":
        _find_generator_files(values)
    return build_config(values)


def _find_generator_files(values: dict[str, Any]) -> None:
    """Fill in the generator files not given, from the weights folders (if found there)."""
    for key, names in (
        ("generator_weights", GENERATOR_SEARCH),
        ("generator_act_range", ACT_RANGE_SEARCH),
    ):
        if values.get(key) is None and (found := find_weights(names)) is not None:
            LOGGER.info("--%s not given: using %s", key.replace("_", "-"), found)
            values[key] = found


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
    begin_run_log()

    def body() -> None:
        config = parse_config(argv)
        setup_logging(config.verbose)
        command = ["bids_recon", *(sys.argv[1:] if argv is None else argv)]
        LOGGER.info("bids_recon v%s: %s", __version__, shlex.join(command))
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
