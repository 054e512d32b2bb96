"""Process-wide run settings: compute device, thread counts and random seeds."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from bids_recon.errors import UsageError

LOGGER = logging.getLogger(__name__)


def resolve_device(requested: str) -> torch.device:
    """Turn ``--device {auto,cpu,cuda}`` into a torch device, logging what was chosen.

    On CUDA, TF32 is turned off for convolutions and matrix products: with it, VGG19 features
    differ from the reference (float32) by about 1e-3 of their range; without it by 4e-6
    (``bench/parity_bdpy.py --committed --device cuda`` on an H200).

    Raises
    ------
    UsageError
        ``cuda`` was requested but no CUDA device is visible (hint: ``--nv`` / ``--gpus all``).

    """
    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    if requested == "cuda" and not available:
        raise UsageError(
            "--device cuda was requested but no CUDA device is visible. In containers, pass "
            "--nv (Singularity/Apptainer), --gpus all (Docker) or --device nvidia.com/gpu=all "
            "(Podman); or use --device cpu."
        )
    device = torch.device(
        "cuda" if requested == "cuda" or (requested == "auto" and available) else "cpu"
    )
    LOGGER.info("CUDA available: %s, devices: %d -> using device: %s", available, count, device)
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        LOGGER.info("CUDA arithmetic in full float32 (TF32 off), as the reference")
    return device


def configure_runtime(omp_nthreads: int, seed: int) -> None:
    """Limit torch and BLAS/OpenMP threads to ``--omp-nthreads``; seed Python, numpy and torch."""
    torch.set_num_threads(omp_nthreads)
    threadpool_limits(omp_nthreads)  # numpy's BLAS and any other OpenMP pool in the process
    LOGGER.info("Threads per process: %d", omp_nthreads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
