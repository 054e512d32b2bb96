"""The frozen run configuration: built once from the command line (and ``--config-file``).

The CLI parses arguments, merges them over a TOML config file and the defaults below, and hands
one :class:`Config` to a workflow. Every run saves the resolved config as TOML under
``OUTPUT_DIR/logs/`` so that a result can be traced to its settings.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bids_recon import __version__
from bids_recon._toml import dumps_toml
from bids_recon.errors import UsageError

ANALYSIS_LEVELS = ("participant", "group")
DECODERS = ("ridge", "voxel-selection")
RECON_METHODS = ("lbfgs", "gd", "generator")
STAGES = ("samples", "decode", "recon", "report")
DEVICES = ("auto", "cpu", "cuda")


def _new_run_uuid() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Config:
    """Everything a run needs to know, resolved and immutable.

    Attributes mirror the command-line options (README.md documents each); paths are absolute.
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    task_id: tuple[str, ...] = ()
    bids_filter_file: Path | None = None
    bids_database_dir: Path | None = None
    dataset_spec: str | None = None
    sets: tuple[str, ...] = ()
    stimuli_dir: Path | None = None
    derivatives: Mapping[str, Path] = field(default_factory=dict)
    space: str = "T1w"
    confounds: tuple[str, ...] = ()
    roi: tuple[str, ...] = ()
    roi_mask: Mapping[str, Path] = field(default_factory=dict)
    work_dir: Path | None = None
    nprocs: int | None = None  # None: the CPUs this job may use
    omp_nthreads: int | None = None  # None: --nprocs
    mem_mb: float | None = None
    shard: tuple[int, int] = (1, 1)
    device: str = "auto"
    network: str = "vgg19"
    weights: Path | None = None
    layers: tuple[str, ...] = ()
    preprocessing: str | None = None
    decoder: str = "ridge"
    alphas: tuple[float, ...] = ()  # empty: the ridge decoder's grid (decoding.ridge)
    cv_folds: int = 5
    cv_units: int = 10_000
    selection_alpha: float = 100.0
    selection_voxels: int = 500
    selection_chunk: int = 4096
    batch_size: int = 16
    feature_cache_mb: float = 16384.0
    feature_sd: Path | None = None
    recon_method: str = "lbfgs"
    recon_iterations: int | None = None
    recon_batch_size: int = 8
    recon_layers: tuple[str, ...] = ()
    generator_weights: Path | None = None
    generator_act_range: Path | None = None
    recon_tv: float = 0.0
    recon_l2: float = 0.0
    recon_jitter: int = 0
    stages: tuple[str, ...] = STAGES
    random_seed: int = 0
    skip_bids_validation: bool = False
    stop_on_first_crash: bool = False
    reports_only: bool = False
    notrack: bool = False
    verbose: int = 0
    run_uuid: str = field(default_factory=_new_run_uuid)
    version: str = __version__

    @property
    def resolved_stimuli_dir(self) -> Path:
        """``--stimuli-dir``, or ``BIDS_DIR/stimuli`` (the BIDS location) when not given."""
        return self.stimuli_dir or self.bids_dir / "stimuli"

    @property
    def logs_dir(self) -> Path:
        """``OUTPUT_DIR/logs``: run logs and saved configs."""
        return self.output_dir / "logs"

    def to_toml(self) -> str:
        """The config as TOML text (paths as strings, None values omitted)."""
        return dumps_toml({"bids_recon": _plain(dataclasses.asdict(self))})


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (job K of N, counted from 1) as ``(K, N)``.

    Raises
    ------
    ValueError
        Not two integers with ``1 <= K <= N``.
    """
    index, sep, count = text.partition("/")
    k, n = int(index), int(count)
    if not sep or not 1 <= k <= n:
        raise ValueError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return k, n


def parse_memory_mb(text: str) -> float:
    """A memory size in MB: a number of MB (fMRIPrep's unit) or with a K, M, G or T suffix.

    Raises
    ------
    ValueError
        Not a positive size.
    """
    units = {"K": 2**-10, "M": 1.0, "G": 2**10, "T": 2**20}
    stripped = text.strip().upper().removesuffix("B")
    scale = units.get(stripped[-1:], None)
    number = float(stripped[:-1] if scale else stripped)
    if number <= 0:
        raise ValueError(f"memory must be positive, got {text!r}")
    return number * (scale or 1.0)


def build_config(values: Mapping[str, Any]) -> Config:
    """Create the frozen :class:`Config`, checking values that argparse cannot.

    Raises
    ------
    UsageError
        A value is out of range or contradicts another.

    """
    config = Config(**values)
    unknown_stages = sorted(set(config.stages) - set(STAGES))
    if unknown_stages:
        raise UsageError(f"--stages: unknown stage(s) {unknown_stages}; choose from {list(STAGES)}")
    if config.decoder not in DECODERS:
        raise UsageError(f"--decoder {config.decoder!r}: choose from {list(DECODERS)}")
    if config.alphas and min(config.alphas) <= 0:
        raise UsageError(f"--alphas must be positive numbers, got {list(config.alphas)}")
    if config.recon_method not in RECON_METHODS:
        raise UsageError(
            f"--recon-method {config.recon_method!r}: choose from {list(RECON_METHODS)}"
        )
    if config.recon_method == "generator" and config.generator_weights is None:
        raise UsageError(
            "--recon-method generator needs --generator-weights PATH, or generator_relu7.pt in "
            "the folder named by $BIDS_RECON_WEIGHTS_DIR (/opt/weights in the container image): "
            "the Dosovitskiy-Brox fc7 generator in the Kamitani lab's PyTorch format (nothing is "
            "downloaded). "
            "Use --recon-method lbfgs or gd to reconstruct without a generator."
        )
    if config.device not in DEVICES:
        raise UsageError(f"--device {config.device!r}: choose from {list(DEVICES)}")
    for name in (
        "nprocs",
        "omp_nthreads",
        "cv_folds",
        "cv_units",
        "selection_voxels",
        "selection_chunk",
        "batch_size",
        "recon_batch_size",
    ):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise UsageError(
                f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}"
            )
    if config.mem_mb is not None and config.mem_mb <= 0:
        raise UsageError(f"--mem must be positive, got {config.mem_mb} MB")
    nprocs = config.nprocs or len(os.sched_getaffinity(0))
    config = dataclasses.replace(config, nprocs=nprocs, omp_nthreads=config.omp_nthreads or nprocs)
    if config.work_dir is None:  # fMRIPrep's default: ./work
        config = dataclasses.replace(config, work_dir=Path.cwd().absolute() / "work")
    if config.reports_only:
        config = dataclasses.replace(config, stages=("report",))
    # keep the documented stage order whatever order the user typed
    return dataclasses.replace(config, stages=tuple(s for s in STAGES if s in config.stages))
