"""Logging set-up and progress reports.

Console verbosity follows ``-v`` (none: INFO, ``-v``: DEBUG for bids_recon, ``-vv``: DEBUG for
the libraries too); the run log under ``OUTPUT_DIR/logs/`` always records DEBUG, from the run's
first line (records made before the log file can be opened are kept and written first). Inside
:func:`participant_context` every line names the participant. Long loops show a tqdm bar on a
terminal; elsewhere (pipes, batch jobs) they log a progress line every 10 % or 30 s with an ETA.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

PACKAGE_LOGGER = "bids_recon"
_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(participant)s%(message)s"
_T = TypeVar("_T")
_PARTICIPANT: ContextVar[str] = ContextVar("participant", default="")
_EARLY: list[logging.LogRecord] = []  # records of this run before its log file was opened


class _ParticipantFilter(logging.Filter):
    """Give every record ``participant`` ("sub-01: ", unless the message names it already).

    On the handlers: a logger's own filters do not see its children's records. A record that
    has it already (kept before the log file existed) keeps it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "participant"):
            return True
        label = _PARTICIPANT.get()
        named = label and record.getMessage().startswith(f"sub-{label}")
        record.participant = f"sub-{label}: " if label and not named else ""
        return True


class _EarlyRecords(logging.Handler):
    """Keep the run's records until :func:`add_log_file` writes them to the log file."""

    def emit(self, record: logging.LogRecord) -> None:
        _EARLY.append(record)


@contextmanager
def participant_context(label: str) -> Iterator[None]:
    """Within the block, log lines name ``sub-<label>``."""
    token = _PARTICIPANT.set(label)
    try:
        yield
    finally:
        _PARTICIPANT.reset(token)


def setup_logging(verbose: int = 0) -> logging.Logger:
    """Attach a console handler to the package logger at the level ``-v`` asks for."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.setLevel(logging.DEBUG)
    for handler in list(logger.handlers):
        if getattr(handler, "_bids_recon_console", False):
            logger.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose >= 1 else logging.INFO)
    console.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    console.addFilter(_ParticipantFilter())
    console._bids_recon_console = True  # type: ignore[attr-defined]
    logger.addHandler(console)
    logging.getLogger().setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    return logger


def begin_run_log() -> None:
    """Start keeping this run's records for its log file (:func:`add_log_file`)."""
    _EARLY.clear()
    logger = logging.getLogger(PACKAGE_LOGGER)
    if not any(isinstance(h, _EarlyRecords) for h in logger.handlers):
        early = _EarlyRecords(logging.DEBUG)
        early.addFilter(_ParticipantFilter())
        logger.addHandler(early)


def add_log_file(path: Path) -> logging.Handler:
    """Also write every package log record (DEBUG and up) to ``path``; returns the handler.

    The run's records from before the file existed are written first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_ParticipantFilter())
    logger = logging.getLogger(PACKAGE_LOGGER)
    for record in _EARLY:
        handler.handle(record)
    _EARLY.clear()
    for early in [h for h in logger.handlers if isinstance(h, _EarlyRecords)]:
        logger.removeHandler(early)
    logger.addHandler(handler)
    return handler


def remove_log_file(handler: logging.Handler) -> None:
    """Detach and close a handler made by :func:`add_log_file`."""
    logging.getLogger(PACKAGE_LOGGER).removeHandler(handler)
    handler.close()


def progress(iterable: Iterable[_T], description: str, total: int | None = None) -> Iterable[_T]:
    """Report a long loop: a tqdm bar on a terminal, else log lines (:func:`_logged_progress`)."""
    if sys.stderr.isatty():
        return tqdm(iterable, desc=description, total=total, leave=False)
    return _logged_progress(iterable, description, total)


def _logged_progress(
    iterable: Iterable[_T], description: str, total: int | None, every: float = 30.0
) -> Iterator[_T]:
    """Yield the items, logging progress every 10 % or ``every`` seconds.

    Lines read ``description: k/total (p %), N s elapsed, about M s left``; a loop of one item
    or of unknown length says nothing.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    logger = logging.getLogger(f"{PACKAGE_LOGGER}.progress")
    start = last = time.monotonic()
    next_fraction = 0.1
    for done, item in enumerate(iterable, 1):
        yield item
        now = time.monotonic()
        fraction = done / total if total else 0.0
        if total and total > 1 and (fraction >= next_fraction or now - last >= every):
            elapsed = now - start
            logger.info(
                "%s: %d/%d (%.0f %%), %.0f s elapsed, about %.0f s left",
                description,
                done,
                total,
                100 * fraction,
                elapsed,
                elapsed / fraction - elapsed,
            )
            last = now
            next_fraction = (int(fraction * 10) + 1) / 10


@contextmanager
def timed(logger: logging.Logger, what: str) -> Iterator[None]:
    """Log how long the block took (``<what> took N s``), and the peak resident memory so far."""
    start = time.monotonic()
    yield
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    logger.info(
        "%s took %.1f s (peak resident memory so far %.2f GiB)",
        what,
        time.monotonic() - start,
        peak,
    )


class _Collector(logging.Handler):
    def __init__(self, messages: list[str]):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname}: {record.getMessage()}")


@contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Collect the package's warning and error messages logged inside the block."""
    messages: list[str] = []
    handler = _Collector(messages)
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
