"""The decode stage: DNN features of the stimuli, decoders per layer, decoded test features.

Ridge (default): one streamed pass over the training images accumulates per-unit statistics, the
paper's feature-SD reference and a random subset of units per layer (all units when the layer is
small) for choosing alpha by cross-validation over runs; a second pass accumulates the decoded
test features as weighted sums of training features. Layers that fit the feature cache are kept
whole in the work folder and need no second pass; batches stored by ``--shard`` jobs are read
instead of computed. Voxel selection (the paper's FastL2LiR protocol) keeps every layer on disk
and solves unit chunks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bids_recon import __version__
from bids_recon.config import Config
from bids_recon.decoding.correction import feature_sd
from bids_recon.decoding.ridge import DEFAULT_ALPHAS, GRAM_CHUNK, DualRidge, as_tensor, cv_folds
from bids_recon.decoding.selection import predict_selected, select_and_solve
from bids_recon.errors import UsageError
from bids_recon.evaluation.metrics import pattern_correlation, profile_correlation
from bids_recon.features.extract import feature_batches, fill_store, network_key
from bids_recon.features.networks import TappedNetwork
from bids_recon.fmri.sample_set import SampleSet
from bids_recon.io.atomic import atomic_write_json
from bids_recon.io.feature_store import BatchStore, FeatureCache
from bids_recon.io.outputs import (
    FEATDECODING_COLUMNS,
    decoded_features_path,
    decoder_path,
    featdecoding_eval_path,
    write_array,
    write_table,
)
from bids_recon.io.reference_sd import read_reference_sd
from bids_recon.io.resume import file_identity, fingerprint, marker_fingerprint, stage_lock
from bids_recon.specs import DatasetSpec

LOGGER = logging.getLogger(__name__)


@dataclass
class LayerStats:
    """What one pass over the training images leaves for a layer."""

    shape: tuple[int, ...]
    total: np.ndarray  # per-unit sum
    total_sq: np.ndarray  # per-unit sum of squares
    sd_sum: float = 0.0  # sum over images of the paper's feature SD statistic
    subset: np.ndarray | None = None  # unit indices kept for CV (None: all units)
    kept: list[np.ndarray] = field(default_factory=list)  # rows of the kept units

    def mean(self, n: int) -> np.ndarray:
        """Per-unit mean over the training images."""
        return self.total / n

    def sd(self, n: int) -> np.ndarray:
        """Per-unit SD (ddof=1) over the training images."""
        variance = (self.total_sq - self.total**2 / n) / max(n - 1, 1)
        return np.sqrt(np.clip(variance, 0, None))


@dataclass
class LayerResult:
    """Decoding of one layer for one ROI."""

    layer: str
    shape: tuple[int, ...]
    alpha: float | None
    cv_errors: list[float]
    reference_sd: float
    decoded: dict[str, np.ndarray]  # set -> (n_stimuli, units)
    evaluation: list[dict[str, object]]


@dataclass
class DecodeInputs:
    """Images and samples the decode stage works on."""

    train_paths: list[Path]
    train_rows: np.ndarray  # image index of each training sample
    test_paths: list[Path]  # union of the test sets' images
    test_rows: dict[str, np.ndarray]  # per set: index into test_paths, -1 for no image


def decode_inputs(
    spec: DatasetSpec, sample_set: SampleSet, stimulus_files: dict[str, Path]
) -> DecodeInputs:
    """Map samples to image files (training rows share images when stimuli repeat)."""
    training = spec.training_set.name
    names = sample_set.stimuli[training]
    unique = sorted(set(names))
    position = {name: k for k, name in enumerate(unique)}
    test_names = sorted(
        {n for s in spec.test_sets for n in sample_set.stimuli[s.name] if n in stimulus_files}
    )
    test_position = {name: k for k, name in enumerate(test_names)}
    return DecodeInputs(
        train_paths=[stimulus_files[n] for n in unique],
        train_rows=np.array([position[n] for n in names]),
        test_paths=[stimulus_files[n] for n in test_names],
        test_rows={
            s.name: np.array([test_position.get(n, -1) for n in sample_set.stimuli[s.name]])
            for s in spec.test_sets
        },
    )


def _store(config: Config, network: TappedNetwork, paths: list[Path]) -> BatchStore:
    """Where computed feature batches of ``paths`` are kept for reruns and other jobs."""
    key = network_key(network, config.weights)
    return BatchStore(config.work_dir / "features", key, paths, config.batch_size)


def _store_fits(config: Config, network: TappedNetwork, n_images: int) -> bool:
    """Whether all layers of ``n_images`` images fit ``--feature-cache-mb``."""
    units = sum(network.unit_counts().values())
    return 4 * units * n_images <= config.feature_cache_mb * 2**20


def _stream(config: Config, network: TappedNetwork, paths: list[Path], device, description: str):
    """Features of ``paths`` batch by batch: stored batches are read, the others computed.

    When all layers of these images fit ``--feature-cache-mb``, computed batches are stored
    too, so a killed run resumes its feature extraction where it stopped.
    """
    return feature_batches(
        network,
        paths,
        config.batch_size,
        device,
        description,
        config.nprocs,
        _store(config, network, paths),
        keep=_store_fits(config, network, len(paths)),
    )


def share_extraction(
    config: Config, network: TappedNetwork, inputs: DecodeInputs, device: torch.device
) -> None:
    """``--shard K/N``: store this job's share (every N-th batch) of the training and test features.

    Runs before the decode lock, so the N jobs of a participant extract in parallel and the one
    that decodes reads their batches. Skipped when all layers of all images would not fit
    ``--feature-cache-mb`` in the work folder.
    """
    index, count = config.shard
    if not _store_fits(config, network, len(inputs.train_paths) + len(inputs.test_paths)):
        LOGGER.info(
            "Feature extraction is not shared between shards: all layers of all images do not "
            "fit --feature-cache-mb (%.0f MB) in the work folder",
            config.feature_cache_mb,
        )
        return
    done = 0
    for paths in (inputs.train_paths, inputs.test_paths):
        store = _store(config, network, paths)
        share = range(index - 1, len(store.batches), count)
        done += fill_store(network, paths, store, device, share, config.nprocs)
    LOGGER.info("Shard %d/%d: stored %d feature batch(es) for the decoding job", index, count, done)


def _training_pass(
    config: Config,
    network: TappedNetwork,
    paths: list[Path],
    shapes: dict[str, tuple[int, ...]],
    cache: FeatureCache,
    device,
    seed: int,
) -> dict[str, LayerStats]:
    """Stream the training images once: statistics, SD reference, CV unit subsets, cache."""
    rng = np.random.default_rng(seed)
    cached = cache.plan({layer: int(np.prod(shape)) for layer, shape in shapes.items()})
    stats, full = {}, {}
    for layer, shape in shapes.items():
        units = int(np.prod(shape))
        whole = units <= config.cv_units or layer in cached
        subset = None if whole else np.sort(rng.choice(units, config.cv_units, replace=False))
        stats[layer] = LayerStats(shape, np.zeros(units), np.zeros(units), subset=subset)
        if layer in cached and cache.load(layer) is None:
            full[layer] = cache.writer(layer, units)
    for rows, batch in _stream(config, network, paths, device, "training features"):
        for layer, features in batch.items():
            s = stats[layer]
            s.sd_sum += float(feature_sd(features.reshape(-1, *s.shape)).sum())
            s.total += features.sum(dim=0, dtype=torch.float64).cpu().numpy()
            s.total_sq += features.square().sum(dim=0, dtype=torch.float64).cpu().numpy()
            cpu = features.cpu().numpy()
            if layer in full:
                full[layer][rows] = cpu
            elif layer not in cached:
                s.kept.append(cpu if s.subset is None else cpu[:, s.subset])
    for layer, array in full.items():
        cache.commit(layer, array)
    for layer in cached:  # whole cached layers serve cross-validation from disk
        stats[layer].kept = [cache.load(layer)]
    return stats


def gram(features: np.ndarray, rows: np.ndarray, device, chunk: int = GRAM_CHUNK) -> torch.Tensor:
    """``F[rows] F[rows]ᵀ`` in float64, a column chunk at a time (F may be memory-mapped)."""
    index = torch.as_tensor(rows, device=device)
    out = torch.zeros(len(rows), len(rows), dtype=torch.float64, device=device)
    for start in range(0, features.shape[1], chunk):
        block = as_tensor(np.asarray(features[:, start : start + chunk]), device)[index]
        out += block @ block.T
    return out


def _test_features(
    config: Config,
    network: TappedNetwork,
    paths: list[Path],
    shapes: dict[str, tuple[int, ...]],
    cache: FeatureCache,
    device,
) -> dict[str, np.ndarray]:
    """True features of the test images, all layers, cached in the work folder."""
    if paths and any(cache.load(layer) is None for layer in shapes):
        full = {layer: cache.writer(layer, int(np.prod(shape))) for layer, shape in shapes.items()}
        for rows, batch in _stream(config, network, paths, device, "test features"):
            for layer, features in batch.items():
                full[layer][rows] = features.cpu().numpy()
        for layer, array in full.items():
            cache.commit(layer, array)
    return {
        layer: cache.load(layer) if paths else np.zeros((0, int(np.prod(shape))))
        for layer, shape in shapes.items()
    }


def _evaluate(
    layer: str,
    decoded: dict[str, np.ndarray],
    true: np.ndarray,
    rows: dict[str, np.ndarray],
    mean: np.ndarray,
    sd: np.ndarray,
) -> list[dict[str, object]]:
    out = []
    for name, matrix in decoded.items():
        has = rows[name] >= 0
        if has.sum() < 2:
            continue
        d, t = matrix[has], np.asarray(true[rows[name][has]])
        profile = profile_correlation(d, t)
        pattern = pattern_correlation(d, t, mean, sd)
        for metric, values in (("profile_correlation", profile), ("pattern_correlation", pattern)):
            finite = values[np.isfinite(values)]
            out.append(
                {
                    "set": name,
                    "layer": layer,
                    "metric": metric,
                    "value": float(finite.mean()) if len(finite) else None,
                    "n": int(len(finite)),
                }
            )
    return out


def _features(
    config: Config, network: TappedNetwork, inputs: DecodeInputs, limit: int, device
) -> tuple[dict[str, tuple[int, ...]], FeatureCache, dict[str, LayerStats], dict[str, np.ndarray]]:
    """Layer shapes, the training-feature cache, the training pass and the true test features."""
    shapes = network.unit_shapes()
    key = network_key(network, config.weights)
    folder = config.work_dir / "features"
    train_cache = FeatureCache(folder, key, inputs.train_paths, limit)
    stats = _training_pass(
        config, network, inputs.train_paths, shapes, train_cache, device, config.random_seed
    )
    test_cache = FeatureCache(folder, key, inputs.test_paths, 2**62)
    true = _test_features(config, network, inputs.test_paths, shapes, test_cache, device)
    return shapes, train_cache, stats, true


def _layer_result(
    layer: str,
    stats: LayerStats,
    n_images: int,
    decoded: dict[str, np.ndarray],
    true: np.ndarray,
    inputs: DecodeInputs,
    alpha: float | None = None,
    cv_errors: Sequence[float] = (),
) -> LayerResult:
    """A decoded layer with its reference SD and its evaluation against the true features."""
    return LayerResult(
        layer,
        stats.shape,
        alpha,
        [float(e) for e in cv_errors],
        stats.sd_sum / n_images,
        decoded,
        _evaluate(layer, decoded, true, inputs.test_rows, stats.mean(n_images), stats.sd(n_images)),
    )


def ridge_alphas(config: Config) -> tuple[float, ...]:
    """``--alphas``, or the ridge decoder's default grid."""
    return config.alphas or DEFAULT_ALPHAS


def decode_ridge(
    config: Config,
    network: TappedNetwork,
    spec: DatasetSpec,
    sample_set: SampleSet,
    inputs: DecodeInputs,
    rois: Sequence[str],
    device,
) -> dict[str, list[LayerResult]]:
    """Ridge decoders for every layer of ``network``, for each of ``rois``.

    The training images go through the network once for all ROIs (statistics and CV units),
    and once more for the layers not kept whole in the cache, accumulating every ROI's
    decoded features together.
    """
    limit = int(config.feature_cache_mb * 2**20)
    shapes, train_cache, stats, true = _features(config, network, inputs, limit, device)
    training = spec.training_set.name
    n_img = len(inputs.train_paths)
    n_train = len(inputs.train_rows)
    rows = torch.as_tensor(inputs.train_rows, device=device)
    # samples -> unique images: decoded = W Y = (W P) F with P the sample-to-image map
    to_images = torch.zeros(n_train, n_img, dtype=torch.float64, device=device)
    to_images[torch.arange(n_train, device=device), rows] = 1.0
    grid = ridge_alphas(config)
    folds = cv_folds(n_train, config.cv_folds, sample_set.train_runs, sample_set.stimuli[training])
    if len(grid) > 1 and not folds:
        raise UsageError(
            "Alpha cannot be chosen by cross-validation: every fold would validate on images "
            "that all other runs also show. Pass one value with --alphas."
        )

    def cv_gram(s: LayerStats) -> torch.Tensor:  # n × n, recomputed per ROI: little memory
        kept = s.kept[0] if len(s.kept) == 1 else np.concatenate(s.kept)
        scale = 1.0 if s.subset is None else int(np.prod(s.shape)) / len(s.subset)
        return scale * gram(kept, inputs.train_rows, device)

    alphas: dict[str, dict[str, tuple[float, np.ndarray]]] = {}
    weights: dict[tuple[str, str], dict[str, torch.Tensor]] = {}  # (roi, layer) -> set -> W
    for roi in rois:
        voxels = sample_set.rois[roi]
        model = DualRidge(sample_set.samples[training][:, voxels], folds, device)
        alphas[roi] = {}
        for layer, s in stats.items():
            errors = model.cv_errors(cv_gram(s), grid)
            alpha = float(grid[int(np.argmin(errors))])
            weights[roi, layer] = {
                name: model.weights(sample_set.samples[name][:, voxels], alpha) @ to_images
                for name in sample_set.samples
                if name != training
            }
            alphas[roi][layer] = (alpha, errors)
            LOGGER.info(
                "%s/%s: alpha %.3g (CV over %d folds, %s units)",
                roi,
                layer,
                alpha,
                len(folds),
                "all" if s.subset is None else len(s.subset),
            )
    decoded: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    streamed = [layer for layer in shapes if train_cache.load(layer) is None]
    for layer in shapes:
        if layer not in streamed:
            full = as_tensor(train_cache.load(layer), device, torch.float32)
            for roi in rois:
                decoded[roi, layer] = {
                    name: (w.float() @ full).cpu().numpy()
                    for name, w in weights[roi, layer].items()
                }
    if streamed:
        acc = {
            (roi, layer): {
                name: torch.zeros(len(w), int(np.prod(shapes[layer])), device=device)
                for name, w in weights[roi, layer].items()
            }
            for roi in rois
            for layer in streamed
        }
        for rows_, batch in _stream(config, network, inputs.train_paths, device, "decoding"):
            for (roi, layer), sets in acc.items():
                for name, total in sets.items():
                    total += weights[roi, layer][name][:, rows_].float() @ batch[layer]
        for key, sets in acc.items():
            decoded[key] = {name: total.cpu().numpy() for name, total in sets.items()}
    return {
        roi: [
            _layer_result(
                layer, s, n_img, decoded[roi, layer], true[layer], inputs, *alphas[roi][layer]
            )
            for layer, s in stats.items()
        ]
        for roi in rois
    }


def decode_voxel_selection(
    config: Config,
    network: TappedNetwork,
    spec: DatasetSpec,
    sample_set: SampleSet,
    inputs: DecodeInputs,
    rois: Sequence[str],
    device,
) -> dict[str, list[LayerResult]]:
    """The paper's decoder for each of ``rois``: every layer kept on disk, units in chunks."""
    _, cache, stats, true = _features(config, network, inputs, 2**62, device)
    training = spec.training_set.name
    n_img = len(inputs.train_paths)
    out: dict[str, list[LayerResult]] = {roi: [] for roi in rois}
    for layer, s in stats.items():
        full = cache.load(layer)
        units = full.shape[1]
        for roi in rois:
            voxels = sample_set.rois[roi]
            x_train = as_tensor(sample_set.samples[training][:, voxels], device)
            tests = {
                name: as_tensor(m[:, voxels], device)
                for name, m in sample_set.samples.items()
                if name != training
            }
            decoded = {
                name: np.empty((len(x), units), dtype=np.float32) for name, x in tests.items()
            }
            for start in range(0, units, config.selection_chunk):
                cols = slice(start, min(start + config.selection_chunk, units))
                y = as_tensor(np.asarray(full[:, cols])[inputs.train_rows], device)
                mean, sd = y.mean(dim=0), y.std(dim=0).clamp_min(1e-12)
                index, coef = select_and_solve(
                    x_train, (y - mean) / sd, config.selection_alpha, config.selection_voxels
                )
                for name, x in tests.items():
                    pred = predict_selected(x, index, coef) * sd + mean
                    decoded[name][:, cols] = pred.cpu().numpy()
            out[roi].append(_layer_result(layer, s, n_img, decoded, true[layer], inputs))
            LOGGER.info(
                "%s/%s: voxel-selection decoder (%d voxels, alpha %g)",
                roi,
                layer,
                config.selection_voxels,
                config.selection_alpha,
            )
    return out


def decode_fingerprint(
    config: Config, network: TappedNetwork, sample_set: SampleSet, inputs: DecodeInputs, roi: str
) -> str:
    """Hash of everything one ROI's decoding depends on (its completion marker holds it)."""
    return fingerprint(
        __version__,
        sample_set.key,
        roi,
        network_key(network, config.weights),
        [file_identity(path) for path in (*inputs.train_paths, *inputs.test_paths)],
        config.decoder,
        ridge_alphas(config),
        config.cv_folds,
        config.cv_units,
        config.selection_alpha,
        config.selection_voxels,
        config.random_seed,
        file_identity(config.feature_sd) if config.feature_sd else None,
    )


def run_decode_stage(
    config: Config,
    spec: DatasetSpec,
    label: str,
    sample_set: SampleSet,
    stimulus_files: dict[str, Path],
    network: TappedNetwork,
    device: torch.device,
) -> None:
    """Decode every layer of ``network`` for every ROI; write the outputs and the evaluation.

    Each ROI is a resumable unit: its decoder JSON, written after its decoded features, is the
    completion marker (with the :func:`decode_fingerprint` and the ROI's evaluation rows), so a
    re-run skips finished ROIs. Jobs of one participant take turns (:func:`stage_lock`); with
    ``--shard`` they first extract their share of the features (:func:`share_extraction`).
    """
    inputs = decode_inputs(spec, sample_set, stimulus_files)
    keys = {
        roi: decode_fingerprint(config, network, sample_set, inputs, roi) for roi in sample_set.rois
    }
    markers = {roi: decoder_path(config.output_dir, label, roi, config.decoder) for roi in keys}
    pending = [roi for roi in keys if marker_fingerprint(markers[roi]) != keys[roi]]
    if pending and config.shard[1] > 1:
        share_extraction(config, network, inputs, device)
    rows: list[dict[str, object]] = []
    with stage_lock(config.work_dir, label, "decode"):
        pending = [roi for roi in keys if marker_fingerprint(markers[roi]) != keys[roi]]
        for roi in keys:
            if roi not in pending:
                LOGGER.info("sub-%s: %s already decoded (%s)", label, roi, markers[roi].name)
        if pending:
            decode = decode_ridge if config.decoder == "ridge" else decode_voxel_selection
            LOGGER.info("sub-%s: decoding %s (one feature pass for all)", label, ", ".join(pending))
            results = decode(config, network, spec, sample_set, inputs, pending, device)
            for roi in pending:
                _write_roi(
                    config, spec, label, sample_set, inputs, network, roi, keys[roi], results[roi]
                )
        for roi in keys:
            evaluation = json.loads(markers[roi].read_text(encoding="utf-8"))["Evaluation"]
            rows.extend({"roi": roi, **row} for row in evaluation)
        write_table(featdecoding_eval_path(config.output_dir, label), rows, FEATDECODING_COLUMNS)


def _write_roi(
    config: Config,
    spec: DatasetSpec,
    label: str,
    sample_set: SampleSet,
    inputs: DecodeInputs,
    network: TappedNetwork,
    roi: str,
    key: str,
    results: list[LayerResult],
) -> None:
    """Write one ROI's decoded features, then its decoder JSON (the completion marker)."""
    reference_sd = read_reference_sd(config.feature_sd) if config.feature_sd else {}
    n_train = len(inputs.train_rows)
    for result in results:
        result.reference_sd = reference_sd.get(result.layer, result.reference_sd)
    n_voxels = int(sample_set.rois[roi].sum())
    for result in results:
        for set_name, matrix in result.decoded.items():
            write_array(
                decoded_features_path(config.output_dir, label, roi, set_name, result.layer),
                matrix.reshape(len(matrix), *result.shape),
                {
                    "Description": "Decoded DNN features (raw units, before SD correction), "
                    "one row per stimulus of the set.",
                    "Network": network.name,
                    "Layer": result.layer,
                    "ROI": roi,
                    "Set": set_name,
                    "Stimuli": list(sample_set.stimuli[set_name]),
                    "Decoder": config.decoder,
                    "Alpha": result.alpha,
                    "NTrainingBlocks": n_train,
                    "NTrainingImages": len(inputs.train_paths),
                    "NVoxels": n_voxels,
                    "ReferenceSD": result.reference_sd,
                    "ReferenceSDSource": str(config.feature_sd)
                    if result.layer in reference_sd
                    else "mean over the training images' true features",
                },
            )
    atomic_write_json(
        decoder_path(config.output_dir, label, roi, config.decoder),
        {
            "Decoder": config.decoder,
            "Network": network.name,
            "Preprocessing": network.preprocessing.kind,
            "Weights": network.weights_info.as_dict(),
            "ROI": roi,
            "NVoxels": n_voxels,
            "NTrainingBlocks": n_train,
            "TrainingRuns": sorted(
                {
                    f"{r.session}/{r.run}"
                    for r in sample_set.blocks.itertuples()
                    if r.set == spec.training_set.name
                }
            ),
            "RandomSeed": config.random_seed,
            "Alphas": list(ridge_alphas(config))
            if config.decoder == "ridge"
            else [config.selection_alpha],
            "CVFolds": config.cv_folds,
            "SelectionVoxels": config.selection_voxels if config.decoder != "ridge" else None,
            "Layers": {
                r.layer: {
                    "Alpha": r.alpha,
                    "CVErrors": r.cv_errors,
                    "ReferenceSD": r.reference_sd,
                    "Shape": list(r.shape),
                }
                for r in results
            },
            "Evaluation": [row for r in results for row in r.evaluation],
            "Fingerprint": key,
        },
    )
