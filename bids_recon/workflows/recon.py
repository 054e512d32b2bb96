"""The reconstruction stage: images from decoded features (and, as an upper bound, true ones).

Decoded features are read back from the decode stage's outputs, corrected to the layer's
reference SD (the paper's feature-SD correction), and inverted. For every test stimulus with an
image, the same optimizer also inverts the image's true features (the oracle). Each image is
written as PNG + JSON as soon as its batch is done; existing complete outputs are skipped, so a
killed run resumes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bids_recon.config import Config
from bids_recon.decoding.correction import correct_sd
from bids_recon.errors import MissingInputError
from bids_recon.features.extract import feature_batches
from bids_recon.features.networks import TappedNetwork, build_network
from bids_recon.io.outputs import (
    decoded_features_path,
    recon_image_path,
    stimulus_labels,
    write_image,
)
from bids_recon.recon.generator import load_generator
from bids_recon.recon.reconstruct import ReconSettings, reconstruct
from bids_recon.specs import DatasetSpec
from bids_recon.workflows.samples import SampleSet

LOGGER = logging.getLogger(__name__)
FAST_ITERATIONS = {"builtin": 50}


@dataclass(frozen=True)
class ReconItem:
    """One reconstruction to make: which stimulus, from which features, written where."""

    set_name: str
    stimulus: str
    source: str  # "decoded" or "oracle"
    path: Path


def recon_network(config: Config) -> TappedNetwork:
    """The network whose features reconstructions match (and are evaluated with)."""
    return build_network(
        config.network, config.weights, config.recon_layers or config.layers, config.preprocessing
    )


def recon_settings(config: Config) -> ReconSettings:
    """The paper's settings (200 iterations) for VGG19, fast ones for the built-in net."""
    iterations = config.recon_iterations or FAST_ITERATIONS.get(config.network, 200)
    return ReconSettings(
        config.recon_method,
        iterations,
        config.recon_batch_size,
        config.random_seed,
        tv_weight=config.recon_tv,
        l2_weight=config.recon_l2,
        jitter=config.recon_jitter,
    )


def _decoded_targets(
    config: Config, label: str, roi: str, set_name: str, network: TappedNetwork
) -> dict[str, np.ndarray]:
    targets = {}
    for layer in network.layers:
        path = decoded_features_path(config.output_dir, label, roi, set_name, layer)
        if not path.is_file():
            raise MissingInputError(
                f"Decoded features {path} not found: run the decode stage (--stages decode) "
                f"with the same --network and --layers before reconstructing."
            )
        reference = json.loads(path.with_suffix(".json").read_text())["ReferenceSD"]
        decoded = torch.as_tensor(np.load(path))
        targets[layer] = correct_sd(decoded, reference).flatten(1).numpy()
    return targets


def _true_targets(
    network: TappedNetwork, paths: list[Path], config: Config, device
) -> dict[str, np.ndarray]:
    rows: dict[str, list[np.ndarray]] = {layer: [] for layer in network.layers}
    for _, batch in feature_batches(network, paths, config.batch_size, device, "true features"):
        for layer, values in batch.items():
            rows[layer].append(values.cpu().numpy())
    return {layer: np.concatenate(v) for layer, v in rows.items()}


def _run(
    network: TappedNetwork,
    targets: dict[str, np.ndarray],
    items: list[ReconItem],
    rows: list[int],
    settings: ReconSettings,
    config: Config,
    device,
    generator,
) -> None:
    todo = [k for k, item in enumerate(items) if not item.path.with_suffix(".json").is_file()]
    if not todo:
        return
    for first in range(0, len(todo), settings.batch_size):
        chunk = todo[first : first + settings.batch_size]
        result = reconstruct(
            network,
            {k: v[[rows[i] for i in chunk]] for k, v in targets.items()},
            settings,
            device,
            generator,
            indices=[rows[i] for i in chunk],
        )
        per_image = result.seconds / len(chunk)
        for k, image, curve in zip(chunk, result.images, result.curves, strict=True):
            item = items[k]
            write_image(
                item.path,
                image,
                {
                    "StimulusName": item.stimulus,
                    "Set": item.set_name,
                    "Source": item.source,
                    "Network": network.name,
                    "Layers": network.layers,
                    "Method": settings.method,
                    "Iterations": len(curve) - (settings.method == "lbfgs"),
                    "Seed": settings.seed,
                    "LossCurve": curve,
                    "Seconds": per_image,
                },
            )


def run_recon_stage(
    config: Config,
    spec: DatasetSpec,
    label: str,
    sample_set: SampleSet,
    stimulus_files: dict[str, Path],
    network: TappedNetwork,
    device: torch.device,
) -> None:
    """Reconstruct every test stimulus of every set and ROI, from decoded and true features."""
    generator = (
        load_generator(config.generator_weights) if config.recon_method == "generator" else None
    )
    settings = recon_settings(config)
    LOGGER.info(
        "sub-%s: reconstruction with %s, %d iterations, batches of %d",
        label,
        settings.method,
        settings.iterations,
        settings.batch_size,
    )
    for set_spec in spec.test_sets:
        names = sample_set.stimuli[set_spec.name]
        labels = stimulus_labels(names)
        for roi in sample_set.rois:
            items = [
                ReconItem(
                    set_spec.name,
                    name,
                    "decoded",
                    recon_image_path(
                        config.output_dir, label, set_spec.name, labels[name], "recon", roi
                    ),
                )
                for name in names
            ]
            targets = _decoded_targets(config, label, roi, set_spec.name, network)
            _run(
                network,
                targets,
                items,
                list(range(len(names))),
                settings,
                config,
                device,
                generator,
            )
        with_image = [name for name in names if name in stimulus_files]
        oracle = [
            ReconItem(
                set_spec.name,
                name,
                "oracle",
                recon_image_path(config.output_dir, label, set_spec.name, labels[name], "oracle"),
            )
            for name in with_image
        ]
        if any(not item.path.with_suffix(".json").is_file() for item in oracle):
            true = _true_targets(network, [stimulus_files[n] for n in with_image], config, device)
            _run(
                network,
                true,
                oracle,
                list(range(len(with_image))),
                settings,
                config,
                device,
                generator,
            )
