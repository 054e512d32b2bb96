"""What makes a stage resumable and safe to run as several jobs at once.

A stage's unit of work (a participant's samples, one ROI's decoders, one batch of
reconstructions) is *complete* when its marker file exists and carries the unit's
:func:`fingerprint`: a hash of everything the result depends on. Markers are written last and
atomically, so a job killed at any moment leaves either a complete unit or one that a re-run
redoes; a changed input or option changes the fingerprint, and the unit is redone too.

:func:`stage_lock` serializes the jobs of one participant (for example the ``--shard`` jobs of a
SLURM array) around a stage they all need, so the first computes it and the others find it done.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from bids_recon.errors import OutputNotWritableError

LOGGER = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-able ``parts`` (paths and other objects as their ``str``)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_identity(path: Path) -> list[Any]:
    """A file as caches see it: path, size and modification time (no reading)."""
    info = path.stat()
    return [str(path), info.st_size, info.st_mtime_ns]


def marker_fingerprint(path: Path) -> str | None:
    """The ``Fingerprint`` of a JSON marker, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("Fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


@contextmanager
def stage_lock(work_dir: Path, label: str, stage: str) -> Iterator[None]:
    """Hold ``WORK/locks/sub-<label>_<stage>.lock`` while a participant's stage runs.

    Raises
    ------
    OutputNotWritableError
        The work folder cannot be written.
    """
    folder = work_dir / "locks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputNotWritableError(f"Cannot write {folder}: {err.strerror or err}") from err
    lock = FileLock(str(folder / f"sub-{label}_{stage}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        LOGGER.info("sub-%s: waiting for another job's %s stage (%s)", label, stage, lock.lock_file)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
