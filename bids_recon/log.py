"""Logging set-up and progress bars.

Console verbosity follows ``-v`` (none: INFO, ``-v``: DEBUG for bids_recon, ``-vv``: DEBUG for
the libraries too); the run log under ``OUTPUT_DIR/logs/`` always records DEBUG. Progress bars
(tqdm) show only when stderr is a terminal, so batch-job logs stay clean.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

PACKAGE_LOGGER = "bids_recon"
_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
_T = TypeVar("_T")


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
    console._bids_recon_console = True  # type: ignore[attr-defined]
    logger.addHandler(console)
    logging.getLogger().setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    return logger


def add_log_file(path: Path) -> logging.Handler:
    """Also write every package log record (DEBUG and up) to ``path``; returns the handler."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logging.getLogger(PACKAGE_LOGGER).addHandler(handler)
    return handler


def remove_log_file(handler: logging.Handler) -> None:
    """Detach and close a handler made by :func:`add_log_file`."""
    logging.getLogger(PACKAGE_LOGGER).removeHandler(handler)
    handler.close()


def progress(iterable: Iterable[_T], description: str, total: int | None = None) -> Iterable[_T]:
    """Wrap a long loop in a tqdm bar that stays quiet when stderr is not a terminal."""
    return tqdm(iterable, desc=description, total=total, disable=None, leave=False)


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
