"""Queries of the input BIDS dataset."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from bids_recon.errors import NoMatchingFilesError


def list_participants(bids_dir: Path) -> list[str]:
    """Labels of the participants in ``bids_dir`` (its ``sub-<label>`` folders), sorted."""
    return sorted(p.name.removeprefix("sub-") for p in bids_dir.glob("sub-*") if p.is_dir())


def _container_hint() -> str:
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
        return " Inside Singularity/Apptainer, check that the dataset folder is bound with -B."
    if os.environ.get("BIDS_RECON_CONTAINER_TAG"):
        return " Inside Docker, check that the dataset folder is mounted with -v."
    return ""


def select_participants(bids_dir: Path, requested: Iterable[str]) -> list[str]:
    """Check requested participant labels against the dataset, before any work starts.

    Parameters
    ----------
    bids_dir : Path
        The input dataset.
    requested : iterable of str
        Labels without ``sub-``; empty means every participant.

    Returns
    -------
    list of str
        The labels to process, sorted.

    Raises
    ------
    NoMatchingFilesError
        A requested label does not exist (the message lists those that do), or the dataset has no
        participants at all.

    """
    available = list_participants(bids_dir)
    if not available:
        raise NoMatchingFilesError(
            f"No participants (sub-<label> folders) found in {bids_dir}.{_container_hint()}"
        )
    wanted = sorted(set(requested))
    if not wanted:
        return available
    missing = [label for label in wanted if label not in available]
    if missing:
        raise NoMatchingFilesError(
            f"Participant label(s) not found in {bids_dir}: {', '.join(missing)}. "
            f"Available: {', '.join(available)}.{_container_hint()}"
        )
    return wanted
