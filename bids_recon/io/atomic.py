"""Atomic file writes: readers see the old file or the complete new one, never a partial file.

A write goes to a uniquely named temporary file in the target's folder, is flushed to disk, and
is renamed over the target with :func:`os.replace` (atomic on POSIX within one filesystem). A
killed or failing write leaves at most a hidden ``.*.tmp`` file, never a truncated target, and two
jobs writing the same file at once each leave a complete file. Temporary names carry the host and
process id of their writer, so a later run can remove those of dead processes
(:func:`remove_orphans`) without touching a concurrent job's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bids_recon.errors import OutputNotWritableError


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically, creating parent folders.

    Raises
    ------
    OutputNotWritableError
        The folder cannot be created or written.

    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=private_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputNotWritableError(f"Cannot write {path}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException as err:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputNotWritableError(f"Cannot write {path}: {err.strerror or err}") from err
        raise


def private_prefix(path: Path) -> str:
    """Prefix of this process's temporary names for ``path``: ``.<name>.<host>-<pid>-``."""
    return f".{path.name}.{socket.gethostname()}-{os.getpid()}-"


def private_path(path: Path) -> Path:
    """A temporary sibling of ``path`` unique to this call (to fill, then rename into place)."""
    return path.with_name(f"{private_prefix(path)}{uuid.uuid4().hex[:8]}.tmp")


def _writer_pid(name: str) -> int | None:
    """The writer of a temporary ``.<name>.<host>-<pid>-<random>.tmp`` if it ran on this host."""
    head, _, pid = name.removesuffix(".tmp").rpartition("-")[0].rpartition("-")
    if not pid.isdigit() or not head.endswith(f".{socket.gethostname()}"):
        return None  # another machine's (or an unknown) writer: leave it
    return int(pid)


def _is_dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by someone else
        return False
    return False


@contextmanager
def update_lock(path: Path, stale_after: float = 120.0) -> Iterator[None]:
    """Hold the right to read, change and rewrite ``path`` among jobs sharing its folder.

    The lock is a hidden folder ``.<name>.lock`` beside ``path``: made with ``mkdir`` (atomic,
    NFS included) and removed on release, so nothing is left in the folder. It names its holder
    (host and process id); a waiter breaks it when that process of its own host is dead, or,
    for another host's holder, when it is older than ``stale_after`` seconds (an update takes
    milliseconds).
    """
    lock = path.with_name(f".{path.name}.lock")
    owner = f"{socket.gethostname()}-{os.getpid()}"
    while True:
        try:
            lock.mkdir()
        except FileExistsError:
            if _lock_is_stale(lock, stale_after):
                shutil.rmtree(lock, ignore_errors=True)
            else:
                time.sleep(0.05)
            continue
        (lock / owner).touch()
        break
    try:
        yield
    finally:
        shutil.rmtree(lock, ignore_errors=True)


def _lock_is_stale(lock: Path, stale_after: float) -> bool:
    """Whether an :func:`update_lock` folder's holder is gone."""
    try:
        holders = [entry.name for entry in lock.iterdir()]
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False  # just released: try again
    for holder in holders:
        host, _, pid = holder.rpartition("-")
        if host == socket.gethostname() and pid.isdigit():
            return _is_dead(int(pid))
    return age > stale_after


def remove_orphans(root: Path, mine: bool = False) -> int:
    """Delete temporary files and folders below ``root`` left by killed processes of this host.

    With ``mine``, delete this process's own instead (after a failure or a signal, so that an
    interrupted run leaves nothing behind, not even sparse files on a full disk).

    Returns
    -------
    int
        How many were removed.
    """
    removed = 0
    for path in sorted(root.rglob(".*.tmp")) if root.is_dir() else []:
        pid = _writer_pid(path.name)
        if pid is not None and (pid == os.getpid() if mine else _is_dead(pid)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    return removed


def to_json(data: Any) -> str:
    """JSON text as bids_recon writes it: indented, key order kept, newline-terminated."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write(path, to_json(data))


def write_shared(path: Path, data: bytes | str) -> bool:
    """Write a file that concurrent jobs share (dataset_description.json, .bidsignore).

    Skips the write when the file already holds exactly ``data``, so parallel participant jobs
    of one version neither race nor rewrite it; otherwise replaces it atomically.

    Returns
    -------
    bool
        True if the file was (re)written.

    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if path.read_bytes() == payload:
            return False
    except OSError:
        pass
    atomic_write(path, payload)
    return True
