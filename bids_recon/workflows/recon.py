"""The reconstruction stage: images from decoded features (and, as an upper bound, true ones).

Decoded features are read back from the decode stage's outputs, corrected to the layer's
reference SD (the paper's feature-SD correction), and inverted. For every test stimulus with an
image, the same optimizer also inverts the image's true features (the oracle).

The work is cut into fixed batches (:func:`plan_batches`); ``--shard K/N`` takes every N-th
batch. Each image is written as PNG, then JSON with a fingerprint of its inputs and settings
(the completion marker); batches whose outputs are all current are skipped, so a killed or
sharded run produces the same images as one uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bids_recon import __version__
from bids_recon.config import Config
from bids_recon.decoding.correction import correct_sd
from bids_recon.errors import MissingInputError
from bids_recon.features.extract import extract_features, network_key
from bids_recon.features.networks import TappedNetwork
from bids_recon.fmri.sample_set import SampleSet
from bids_recon.io.atomic import atomic_write, atomic_write_json
from bids_recon.io.outputs import (
    decoded_features_path,
    decoder_path,
    recon_image_path,
    stimulus_labels,
    write_image,
)
from bids_recon.io.resume import file_identity, fingerprint, marker_fingerprint
from bids_recon.log import progress
from bids_recon.recon.generator import load_prior
from bids_recon.recon.reconstruct import ReconSettings, default_iterations, reconstruct
from bids_recon.specs import DatasetSpec

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconItem:
    """One reconstruction: a stimulus, its row in the set (which also seeds it), its output."""

    stimulus: str
    row: int
    path: Path


@dataclass(frozen=True)
class ReconBatch:
    """Images optimized together: one set, one source (decoded from one ROI, or oracle).

    Batches are fixed by the stimulus order, whatever is already done, so a resumed or sharded
    run optimizes exactly the batches of an uninterrupted one and writes the same images.
    """

    set_name: str
    source: str  # "decoded" or "oracle"
    roi: str | None
    items: tuple[ReconItem, ...]


def recon_settings(config: Config) -> ReconSettings:
    """The paper's settings (200 iterations) for VGG19, fast ones for the built-in net."""
    iterations = config.recon_iterations or default_iterations(config.network)
    return ReconSettings(
        config.recon_method,
        iterations,
        config.recon_batch_size,
        config.random_seed,
        tv_weight=config.recon_tv,
        l2_weight=config.recon_l2,
        jitter=config.recon_jitter,
    )


def plan_batches(
    config: Config,
    spec: DatasetSpec,
    label: str,
    sample_set: SampleSet,
    stimulus_files: dict[str, Path],
) -> tuple[list[ReconBatch], list[tuple[ReconItem, ReconItem, str]]]:
    """Every reconstruction of the participant, in fixed batches of ``--recon-batch-size``.

    Per test set: the decoded features of each ROI, then the true features (oracle) of the
    stimuli that have an image. An image already in an earlier set's oracle (an imagery target
    that is also a test image) is not reconstructed again: it comes back as a (source, copy,
    set of the copy) triple, and :func:`copy_oracles` reuses the first set's result.
    """
    size = config.recon_batch_size
    batches, copies = [], []
    first_oracle: dict[str, ReconItem] = {}
    for set_spec in spec.test_sets:
        names = sample_set.stimuli[set_spec.name]
        labels = stimulus_labels(names)

        def item(k: int, desc: str, roi: str | None, names=names, labels=labels, s=set_spec):
            path = recon_image_path(config.output_dir, label, s.name, labels[names[k]], desc, roi)
            return ReconItem(names[k], k, path)

        for roi in sample_set.rois:
            decoded = [item(k, "recon", roi) for k in range(len(names))]
            batches.extend(
                ReconBatch(set_spec.name, "decoded", roi, tuple(decoded[i : i + size]))
                for i in range(0, len(decoded), size)
            )
        oracles = []
        for k, name in enumerate(names):
            if name not in stimulus_files:
                continue
            if name in first_oracle:
                copies.append((first_oracle[name], item(k, "oracle", None), set_spec.name))
            else:
                first_oracle[name] = item(k, "oracle", None)
                oracles.append(first_oracle[name])
        batches.extend(
            ReconBatch(set_spec.name, "oracle", None, tuple(oracles[i : i + size]))
            for i in range(0, len(oracles), size)
        )
    return batches, copies


def copy_oracles(copies: list[tuple[ReconItem, ReconItem, str]]) -> int:
    """Write each reused oracle reconstruction under its other set; returns how many.

    A copy is (re)written when its source is complete and the copy's fingerprint differs from
    the source's; the sidecar names its own set and the file it was reused from.
    """
    done = 0
    for source, target, set_name in copies:
        source_meta = source.path.with_suffix(".json")
        key = marker_fingerprint(source_meta)
        if key is None or marker_fingerprint(target.path.with_suffix(".json")) == key:
            continue
        meta = json.loads(source_meta.read_text(encoding="utf-8"))
        meta.update(Set=set_name, ReusedFrom=source.path.name)
        atomic_write(target.path, source.path.read_bytes())  # the PNG, then its marker
        atomic_write_json(target.path.with_suffix(".json"), meta)
        done += 1
    return done


def shard_batches(batches: list[ReconBatch], shard: tuple[int, int]) -> list[ReconBatch]:
    """The batches of ``--shard K/N``: every N-th batch from the K-th (round robin)."""
    index, count = shard
    return batches[index - 1 :: count]


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
    network: TappedNetwork, paths: list[Path], device: torch.device
) -> dict[str, np.ndarray]:
    """True features of one batch's stimulus images (one forward pass)."""
    return extract_features(network, paths, len(paths), device)


class ReconPlan:
    """The batches of a participant with the fingerprint each output must carry to count."""

    def __init__(
        self,
        config: Config,
        label: str,
        batches: list[ReconBatch],
        network: TappedNetwork,
        stimulus_files: dict[str, Path],
    ):
        self.batches = batches
        settings = recon_settings(config)
        prior_files = (
            [config.generator_weights, config.generator_act_range]
            if settings.method == "generator"
            else []
        )
        self._stage = fingerprint(
            __version__,
            network_key(network, config.weights),
            network.layers,
            dataclasses.asdict(settings),
            [file_identity(path) if path else None for path in prior_files],
        )
        self._config, self._label, self._files = config, label, stimulus_files

    def keys(self, batch: ReconBatch) -> list[str]:
        """The fingerprint of each output of ``batch``.

        Decoded outputs depend on the decoding (its marker's fingerprint, which covers the
        samples and so the stimulus list), oracle outputs on the batch's stimulus images; both
        on the network and the reconstruction settings.

        Raises
        ------
        MissingInputError
            The decoding of the batch's ROI has not completed.
        """
        if batch.source == "oracle":  # the batch's images (batch-mates change the last bits)
            images = [file_identity(self._files[item.stimulus]) for item in batch.items]
            return [fingerprint(self._stage, images)] * len(batch.items)
        marker = decoder_path(self._config.output_dir, self._label, batch.roi, self._config.decoder)
        decoded = marker_fingerprint(marker)
        if decoded is None:
            raise MissingInputError(
                f"{marker} not found: the decode stage has not completed for ROI {batch.roi}; "
                "run it (--stages decode) before reconstructing."
            )
        return [fingerprint(self._stage, decoded)] * len(batch.items)

    def is_done(self, batch: ReconBatch) -> bool:
        """Every output of ``batch`` is written with the current fingerprint."""
        return all(
            marker_fingerprint(item.path.with_suffix(".json")) == key
            for item, key in zip(batch.items, self.keys(batch), strict=True)
        )


def run_recon_stage(
    config: Config,
    spec: DatasetSpec,
    label: str,
    sample_set: SampleSet,
    stimulus_files: dict[str, Path],
    network: TappedNetwork,
    device: torch.device,
) -> int:
    """Reconstruct this job's batches (all, or ``--shard K/N``'s) of every test stimulus.

    Finished batches are skipped; a batch with any missing or outdated output is redone whole.

    Returns
    -------
    int
        The number of the participant's batches still to do (other shards' work); 0 when every
        reconstruction is complete and the outputs can be evaluated.
    """
    settings = recon_settings(config)
    prior = (
        load_prior(config.generator_weights, config.generator_act_range)
        if settings.method == "generator"
        else None
    )
    batches, copies = plan_batches(config, spec, label, sample_set, stimulus_files)
    plan = ReconPlan(config, label, batches, network, stimulus_files)
    mine = shard_batches(plan.batches, config.shard)
    todo = [batch for batch in mine if not plan.is_done(batch)]
    LOGGER.info(
        "sub-%s: reconstruction with %s, %d iterations: %d of %d batches to do (shard %d/%d)",
        label,
        settings.method,
        settings.iterations,
        len(todo),
        len(mine),
        *config.shard,
    )
    decoded: dict[tuple[str | None, str], dict[str, np.ndarray]] = {}
    for batch in progress(todo, "reconstruction batches", total=len(todo)):
        rows = [item.row for item in batch.items]
        if batch.source == "oracle":
            paths = [stimulus_files[item.stimulus] for item in batch.items]
            targets = _true_targets(network, paths, device)
        else:
            if (batch.roi, batch.set_name) not in decoded:
                decoded[batch.roi, batch.set_name] = _decoded_targets(
                    config, label, batch.roi, batch.set_name, network
                )
            targets = {k: v[rows] for k, v in decoded[batch.roi, batch.set_name].items()}
        result = reconstruct(network, targets, settings, device, prior, indices=rows)
        per_image = result.seconds / len(rows)
        iterations = sum(len(curve) for curve in result.curves)
        LOGGER.debug(
            "%s/%s%s: %d image(s) in %.1f s, %.1f network passes per image-iteration",
            batch.set_name,
            batch.source,
            f" ({batch.roi})" if batch.roi else "",
            len(rows),
            result.seconds,
            sum(result.passes) / max(iterations, 1),
        )
        keys = plan.keys(batch)
        for item, image, curve, passes, key in zip(
            batch.items, result.images, result.curves, result.passes, keys, strict=True
        ):
            write_image(
                item.path,
                image,
                {
                    "StimulusName": item.stimulus,
                    "Set": batch.set_name,
                    "Source": batch.source,
                    "Network": network.name,
                    "Layers": network.layers,
                    "Method": settings.method,
                    "Weights": network.weights_info.as_dict(),
                    **(
                        {
                            "Generator": config.generator_weights.name,
                            "LatentBounds": prior.bounds,
                        }
                        if prior is not None
                        else {}
                    ),
                    "Iterations": len(curve) - (settings.method == "lbfgs"),
                    "Seed": settings.seed,
                    "ROI": batch.roi,
                    "LossCurve": curve,
                    "NetworkPasses": passes,
                    "Seconds": per_image,
                    "Fingerprint": key,
                },
            )
    if reused := copy_oracles(copies):
        LOGGER.info("sub-%s: %d oracle reconstruction(s) reused in another set", label, reused)
    return sum(not plan.is_done(batch) for batch in plan.batches)
