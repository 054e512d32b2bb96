"""Fitting a run to its memory limit before it starts (``--mem``).

The participant level calls :func:`fit_to_memory` once every participant's inputs are checked:
the sizes the decode and reconstruction stages depend on are known then, so batch sizes can be
lowered, or the run refused, before any output is written.
"""

from __future__ import annotations

import dataclasses

import torch

from bids_recon.config import Config
from bids_recon.io.feature_store import cached_layers
from bids_recon.memory import (
    DecodeSizes,
    decode_memory,
    fit_batch,
    memory_limit_mb,
    recon_memory,
)
from bids_recon.specs import DatasetSpec
from bids_recon.workflows.context import RunNetworks
from bids_recon.workflows.samples import SampleInputs


def fit_to_memory(
    config: Config,
    spec: DatasetSpec,
    inputs: list[SampleInputs],
    networks: RunNetworks,
    device: torch.device,
) -> Config:
    """Check the decode and reconstruction stages' memory estimates against the limits.

    The host limit is ``--mem``, else the job's cgroup or physical memory; on CUDA the
    reconstruction batch must also fit the device's free memory. Batch sizes are lowered when
    that makes a stage fit (the returned config has them), and the plan is logged.

    Raises
    ------
    MemoryLimitError
        A stage cannot fit even with batches of one (exit code 75), before any output.
    """
    limit = memory_limit_mb(config.mem_mb)
    training = spec.training_set.name
    if "decode" in config.stages:
        units = networks.decode().unit_counts()
        budget = int(config.feature_cache_mb * 2**20)
        batch = config.batch_size
        for item in inputs:
            sizes = decode_sizes(item, training, units)
            itemsize = 2 if config.decoder == "ridge" else 4  # the ridge cache is float16
            cached = cached_layers(units, sizes.n_images, budget, itemsize)
            batch = fit_batch(
                lambda size, sizes=sizes, cached=cached: decode_memory(
                    sizes,
                    size,
                    config.decoder,
                    config.cv_units,
                    config.cv_folds,
                    cached,
                    config.selection_voxels,
                    config.selection_chunk,
                ),
                batch,
                limit,
                f"sub-{item.label} decode stage",
            )
        config = dataclasses.replace(config, batch_size=batch)
    if "recon" in config.stages:
        network = networks.recon()
        units = network.unit_counts()

        def estimate(size: int) -> dict[str, int]:
            return recon_memory(units, network.preprocessing.size, size, config.recon_method)

        batch = fit_batch(estimate, config.recon_batch_size, limit, "reconstruction stage")
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            batch = fit_batch(estimate, batch, free / 2**20, f"reconstruction on {device}", 0)
        config = dataclasses.replace(config, recon_batch_size=batch)
    return config


def decode_sizes(inputs: SampleInputs, training: str, units: dict[str, int]) -> DecodeSizes:
    """The decode stage's sizes for one participant, from its checked inputs."""
    samples = inputs.sample_stimuli()
    train_names = [name for set_name, name in samples if set_name == training]
    test = {(set_name, name) for set_name, name in samples if set_name != training}
    roi_voxels = inputs.roi_voxels()
    return DecodeSizes(
        n_samples=len(train_names),
        n_images=len(set(train_names)),
        n_test=len(test) * len(roi_voxels),  # the ROIs are decoded together
        n_voxels=max(roi_voxels.values()),
        units=units,
    )
