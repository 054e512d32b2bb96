"""Up-front memory estimates of the heavy stages, and the ``--mem`` limit.

The estimates add up the arrays the decode and reconstruction stages hold at their peak (see
each component's name), from sizes known before any BOLD data is read: training blocks and
images, test stimuli, voxels per ROI, and the network's units per layer. When the estimate at
the configured batch size exceeds the limit, the batch is halved until it fits; when even a
batch of one does not fit, the run stops before writing anything, naming the largest parts.
``bench/scale.py`` compares the decode estimate with measured peaks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bids_recon.decoding.ridge import GRAM_CHUNK
from bids_recon.decoding.selection import SOLVE_CHUNK
from bids_recon.errors import TemporaryFailureError

LOGGER = logging.getLogger(__name__)
GIB = 2**30


def _size(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GiB" if n_bytes >= GIB else f"{n_bytes / 2**20:.0f} MiB"


FLOAT32, FLOAT64 = 4, 8
ACTIVATION_COPIES = 2  # tapped pre-ReLU output and the (non-inplace) ReLU output
BACKWARD_COPIES = 3  # activations kept for backward, their gradients, ReLU masks
LBFGS_HISTORY = 10
WORKSPACE = 128 * 2**20  # one-off allocations seen in bench/scale.py (about 80-120 MiB)


class MemoryLimitError(TemporaryFailureError):
    """The estimated peak memory of a stage exceeds ``--mem`` (exit code 75: rerun with more)."""


@dataclass(frozen=True)
class DecodeSizes:
    """The sizes the decode stage's memory depends on (largest over participants and ROIs)."""

    n_samples: int  # training blocks
    n_images: int  # unique training images
    n_test: int  # rows of all test sets together, times the ROIs decoded together
    n_voxels: int
    units: Mapping[str, int]  # per layer


def memory_limit_mb(requested: float | None) -> float:
    """``--mem``, else the job's cgroup limit (SLURM, Docker), else the physical memory."""
    if requested is not None:
        return requested
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text) / 2**20
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def decode_memory(
    sizes: DecodeSizes,
    batch_size: int,
    decoder: str,
    cv_units: int,
    cv_folds: int,
    cached: set[str],
    selection_voxels: int = 500,
    selection_chunk: int = 4096,
) -> dict[str, int]:
    """Bytes held at the decode stage's peak, by component (``cached``: layers kept on disk)."""
    total_units = sum(sizes.units.values())
    largest = max(sizes.units.values())
    parts = {
        "allocator and library workspaces": WORKSPACE,
        # sample matrices (stage copy, centred and uncentred tensors), and the n x n algebra:
        # kernel, eigenvectors, eigh workspace and, per CV fold, its projections
        "training samples and kernel": FLOAT64 * 4 * sizes.n_samples * sizes.n_voxels
        + FLOAT64 * (5 + 1.5 * cv_folds) * sizes.n_samples**2,
        "per-unit statistics": FLOAT64 * 2 * total_units,
        "network activations of a batch": FLOAT32 * ACTIVATION_COPIES * batch_size * total_units
        + FLOAT64 * batch_size * largest,
        "decoded test features": FLOAT32 * 2 * sizes.n_test * total_units,
    }
    if decoder == "ridge":
        parts["cross-validation unit subsets"] = (
            FLOAT32 * sizes.n_images * sum(min(u, cv_units) for u in sizes.units.values())
        )
        # every layer's image Gram matrix, and a float32 column chunk of a layer
        parts["cross-validation Gram matrices"] = FLOAT64 * (
            len(sizes.units) * sizes.n_images**2 + sizes.n_samples**2
        ) + FLOAT32 * sizes.n_images * min(largest, GRAM_CHUNK)
        parts["decoder weights"] = FLOAT32 * len(sizes.units) * sizes.n_test * sizes.n_images
        if cached:  # read back a column chunk at a time (float16 and float32)
            parts["cached layer chunk"] = 6 * sizes.n_images * min(largest, GRAM_CHUNK)
    else:
        k = min(selection_voxels, sizes.n_voxels) + 1
        parts["voxel-selection systems"] = FLOAT64 * 2 * min(SOLVE_CHUNK, largest) * k * k
        parts["unit chunk"] = FLOAT64 * 3 * sizes.n_samples * min(selection_chunk, largest)
        parts["voxel Gram matrix"] = FLOAT64 * (sizes.n_voxels + 1) ** 2
    return parts


def recon_memory(
    units: Mapping[str, int], input_size: int, batch_size: int, method: str
) -> dict[str, int]:
    """Bytes held at the reconstruction stage's peak, by component."""
    pixels = 3 * input_size * input_size
    parts = {
        "allocator and library workspaces": WORKSPACE,
        "forward and backward pass": FLOAT32
        * BACKWARD_COPIES
        * ACTIVATION_COPIES
        * batch_size
        * sum(units.values()),
        "target features": FLOAT32 * batch_size * sum(units.values()),
        "images and optimizer state": FLOAT32 * batch_size * pixels * 4,
    }
    if method == "lbfgs":
        parts["L-BFGS history"] = FLOAT32 * 2 * LBFGS_HISTORY * batch_size * pixels
    return parts


def resident_bytes() -> int:
    """Memory this process holds now (Python, torch, libraries, loaded data)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def fit_batch(
    estimate: Callable[[int], dict[str, int]],
    batch_size: int,
    limit_mb: float,
    stage: str,
    resident: int | None = None,
) -> int:
    """The largest batch size up to ``batch_size`` (halving) whose estimate fits ``limit_mb``.

    The estimate is added to ``resident`` bytes already held (default: what the process holds,
    :func:`resident_bytes`; 0 for a GPU's free memory, which already excludes them).

    Raises
    ------
    MemoryLimitError
        Even a batch of one exceeds the limit; the message names the largest components.
    """
    limit = limit_mb * 2**20
    size = batch_size
    resident = resident_bytes() if resident is None else resident
    while True:
        parts = {"process now": resident, **estimate(size)}
        total = sum(parts.values())
        if total <= limit:
            if size < batch_size:
                LOGGER.warning(
                    "%s: batch size lowered from %d to %d to stay within %s (estimated peak %s)",
                    stage,
                    batch_size,
                    size,
                    _size(limit),
                    _size(total),
                )
            else:
                LOGGER.info("%s: estimated peak memory %s", stage, _size(total))
            return size
        if size == 1:
            largest = sorted(parts.items(), key=lambda item: -item[1])[:3]
            detail = ", ".join(f"{name} {_size(value)}" for name, value in largest)
            raise MemoryLimitError(
                f"{stage}: estimated peak memory {_size(total)} ({detail}) exceeds the "
                f"limit of {_size(limit)}. Raise --mem (and the job's memory), analyse "
                "fewer --layers or a smaller ROI, or lower --feature-cache-mb."
            )
        size = max(1, size // 2)
