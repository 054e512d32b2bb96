"""Exceptions that end a run, each with the exit code the BIDS-Apps execution spec reserves.

The top-level :func:`bids_recon.cli.main` maps any :class:`BidsReconError` to its ``exit_code``
and prints its message; README.md documents the table.
"""

from __future__ import annotations


class BidsReconError(Exception):
    """Base class: a failure the user can act on, reported without a traceback."""

    exit_code = 1


class UsageError(BidsReconError):
    """The command line, a config file, a spec or a filter file is wrong (EX_USAGE)."""

    exit_code = 64


class AnalysisLevelError(BidsReconError):
    """The analysis level is neither ``participant`` nor ``group``."""

    exit_code = 17


class BIDSValidationError(BidsReconError):
    """The input dataset failed BIDS validation."""

    exit_code = 16


class NoMatchingFilesError(BidsReconError):
    """Entity filters (participant, session, task, filter file) selected no files."""

    exit_code = 18


class InputDataError(BidsReconError):
    """Input data exist but are malformed: bad events, 3-D BOLD, NaNs, empty masks (EX_DATAERR)."""

    exit_code = 65


class MissingInputError(BidsReconError):
    """A required input is missing or unreadable: path, stimulus, annexed file (EX_NOINPUT)."""

    exit_code = 66


class OutputNotWritableError(BidsReconError):
    """The output or work directory cannot be created or written (EX_CANTCREAT)."""

    exit_code = 73


class TemporaryFailureError(BidsReconError):
    """A failure that may pass on retry, such as running out of GPU memory (EX_TEMPFAIL)."""

    exit_code = 75


class Terminated(BaseException):
    """SIGTERM (a scheduler's time limit, ``docker stop``), raised by the signal handler.

    A BaseException, as KeyboardInterrupt for SIGINT, so that it ends the run instead of being
    handled as one participant's failure.
    """

    exit_code = 143


def stopped_by(err: BaseException) -> str:
    """What stopped a run, for its one log line: ``Interrupted (SIGINT)`` or ``Terminated``."""
    return "Interrupted (SIGINT)" if isinstance(err, KeyboardInterrupt) else "Terminated (SIGTERM)"


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "failure (unexpected error; see logs/)",
    2: "invalid command-line syntax (argparse)",
    16: "input dataset failed BIDS validation",
    17: "unknown analysis level",
    18: "entity filters (participant/session/task labels, filter file) selected no files",
    64: "usage error: bad option value, config, dataset spec or filter file",
    65: "input data malformed (events, BOLD, masks)",
    66: "required input missing or unreadable",
    73: "output or work directory cannot be created",
    75: "temporary failure (e.g. CUDA out of memory); retry with other resources",
    130: "interrupted (SIGINT, Ctrl-C); temporary files removed, a rerun resumes",
    143: "terminated (SIGTERM, e.g. a job's time limit); temporary files removed, a rerun resumes",
}
