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
import shutil
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
from bids_recon.decoding.streaming import StreamingRidge, image_gram
from bids_recon.errors import UsageError
from bids_recon.evaluation.metrics import pattern_correlation, profile_correlation
from bids_recon.features.extract import feature_batches, fill_store, network_key
from bids_recon.features.networks import TappedNetwork
from bids_recon.fmri.sample_set import SampleSet
from bids_recon.io.atomic import atomic_write_json
from bids_recon.io.feature_store import BatchStore, FeatureCache, batch_slices, cached_layers
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
    """What one pass over the training images leaves for a layer (sums on the device)."""

    shape: tuple[int, ...]
    total: torch.Tensor  # per-unit sum (float64: float32 batch sums added up)
    total_sq: torch.Tensor  # per-unit sum of squares
    sd_sum: torch.Tensor  # sum over images of the paper's feature SD statistic
    subset: np.ndarray | None = None  # unit indices kept for CV (None: all units)
    kept: list[np.ndarray] = field(default_factory=list)  # rows of the kept units

    def add(self, features: torch.Tensor) -> None:
        """Add a batch (images × units, float32) to the sums."""
        self.sd_sum += feature_sd(features.reshape(-1, *self.shape)).sum(dtype=torch.float64)
        self.total += features.sum(dim=0).double()
        self.total_sq += torch.einsum("ij,ij->j", features, features).double()

    def mean(self, n: int) -> np.ndarray:
        """Per-unit mean over the training images (float32)."""
        return (self.total / n).float().cpu().numpy()

    def sd(self, n: int) -> np.ndarray:
        """Per-unit SD (ddof=1) over the training images (float32)."""
        variance = (self.total_sq - self.total**2 / n) / max(n - 1, 1)
        return variance.clamp_min(0).sqrt().float().cpu().numpy()


@dataclass
class TrainingFeatures:
    """The training pass's result: per-layer statistics and where whole layers are kept.

    A layer is kept whole on the device (CUDA, when all layers not in the cache fit its free
    memory), or in the work folder's cache (float16, within ``--feature-cache-mb``); the other
    layers keep a unit subset for cross-validation and need a second network pass to decode.
    """

    stats: dict[str, LayerStats]
    cache: FeatureCache
    on_device: dict[str, torch.Tensor]  # layer -> images × units, float32

    def kept(self, layer: str) -> bool:
        """Whether the whole layer is at hand (no second network pass)."""
        return layer in self.on_device or self.cache.has(layer)

    def column_chunks(self, layer: str, device, chunk: int = GRAM_CHUNK):
        """(columns, images × columns float32 tensor on ``device``) of a kept layer."""
        if layer in self.on_device:
            whole = self.on_device[layer]
            for cols in batch_slices(whole.shape[1], chunk):
                yield cols, whole[:, cols]
        else:
            for cols, values in self.cache.column_chunks(layer, chunk):
                yield cols, torch.as_tensor(values, device=device)


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


def _stream(
    config: Config,
    network: TappedNetwork,
    paths: list[Path],
    device,
    description: str,
    keep: bool = True,
):
    """Features of ``paths`` batch by batch: stored batches are read, the others computed.

    With ``keep``, when all layers of these images fit ``--feature-cache-mb``, computed batches
    are stored too, so a killed run resumes its feature extraction where it stopped.
    """
    return feature_batches(
        network,
        paths,
        config.batch_size,
        device,
        description,
        config.nprocs,
        _store(config, network, paths),
        keep=keep and _store_fits(config, network, len(paths)),
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


def _device_layers(units: dict[str, int], n_images: int, device: torch.device) -> set[str]:
    """The layers to keep whole (float32) on a CUDA device, smallest first.

    Half the device's free memory is the limit; the rest is for the network, the test features
    and the decoded ones.
    """
    if device.type != "cuda":
        return set()
    free, _ = torch.cuda.mem_get_info(device)
    return cached_layers(units, n_images, free // 2, itemsize=4)


def _training_pass(
    config: Config,
    network: TappedNetwork,
    paths: list[Path],
    shapes: dict[str, tuple[int, ...]],
    cache: FeatureCache,
    device,
    cv: bool,
) -> TrainingFeatures:
    """Stream the training images once: statistics, SD reference, kept layers, CV unit subsets.

    With ``cv``, a layer not kept on the device keeps the rows of a random subset of its units
    (all of them when the layer is small) for estimating its Gram matrix.
    """
    device = torch.device(device)
    rng = np.random.default_rng(config.random_seed)
    units = {layer: int(np.prod(shape)) for layer, shape in shapes.items()}
    device_layers = _device_layers(units, len(paths), device)
    cached = cache.plan({k: v for k, v in units.items() if k not in device_layers})
    stats, subsets, writers, on_device = {}, {}, {}, {}
    for layer, shape in shapes.items():
        count = units[layer]
        subset = None
        if count > config.cv_units and layer not in device_layers:
            subset = np.sort(rng.choice(count, config.cv_units, replace=False))
            subsets[layer] = torch.as_tensor(subset, device=device)
        zeros = torch.zeros(count, dtype=torch.float64, device=device)
        stats[layer] = LayerStats(
            shape, zeros, zeros.clone(), torch.zeros((), dtype=torch.float64, device=device), subset
        )
        if layer in device_layers:
            on_device[layer] = torch.empty(len(paths), count, device=device)
        elif layer in cached and not cache.has(layer):
            writers[layer] = cache.writer(layer, count)
    LOGGER.info(
        "Training features: %d layer(s) kept on %s, %d in the work folder's cache (%s), %d "
        "streamed again to decode",
        len(on_device),
        device,
        len(cached),
        cache.dtype.name,
        len(shapes) - len(on_device) - len(cached),
    )
    try:
        # batches are stored for a resumed run only when a second pass will need them
        second_pass = len(on_device) + len(cached) < len(shapes)
        for rows, batch in _stream(
            config, network, paths, device, "training features", keep=second_pass
        ):
            for layer, features in batch.items():
                s = stats[layer]
                s.add(features)
                if layer in on_device:
                    on_device[layer][rows] = features
                elif layer in writers:
                    writers[layer][rows] = features  # converted on the device
                if cv and layer not in on_device:
                    picked = features if s.subset is None else features[:, subsets[layer]]
                    s.kept.append(picked.cpu().numpy())
    except OverflowError as err:
        for writer in writers.values():
            writer.close()  # its private file goes with the run's temporaries
        raise UsageError(
            f"Training features exceed the range of the float16 feature cache ({err}); "
            "run again with --feature-cache-mb 0 to decode without it."
        ) from err
    for layer, writer in writers.items():
        cache.commit(layer, writer)
    return TrainingFeatures(stats, cache, on_device)


def cv_gram(features: TrainingFeatures, layer: str, device) -> torch.Tensor:
    """The layer's image Gram matrix ``F Fᵀ``.

    Exact when the layer is on the device, else estimated from its unit subset (scaled to all
    units), which is exact for layers no larger than ``--cv-units``.
    """
    if layer in features.on_device:
        return image_gram(chunk for _, chunk in features.column_chunks(layer, device))
    s = features.stats[layer]
    kept = torch.as_tensor(np.concatenate(s.kept), device=device)
    scale = 1.0 if s.subset is None else int(np.prod(s.shape)) / len(s.subset)
    return scale * image_gram(kept[:, cols] for cols in batch_slices(kept.shape[1], GRAM_CHUNK))


def _test_features(
    config: Config,
    network: TappedNetwork,
    paths: list[Path],
    shapes: dict[str, tuple[int, ...]],
    cache: FeatureCache,
    device,
) -> dict[str, np.ndarray]:
    """True features of the test images, all layers, cached in the work folder."""
    if paths and not all(cache.has(layer) for layer in shapes):
        full = {layer: cache.writer(layer, int(np.prod(shape))) for layer, shape in shapes.items()}
        for rows, batch in _stream(config, network, paths, device, "test features", keep=False):
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
    config: Config,
    network: TappedNetwork,
    inputs: DecodeInputs,
    device,
    cache_bytes: int,
    cache_dtype: type,
    cv: bool,
) -> tuple[dict[str, tuple[int, ...]], TrainingFeatures, dict[str, np.ndarray]]:
    """Layer shapes, the training pass (:func:`_training_pass`) and the true test features."""
    shapes = network.unit_shapes()
    key = network_key(network, config.weights)
    folder = config.work_dir / "features"
    train_cache = FeatureCache(folder, key, inputs.train_paths, cache_bytes, cache_dtype)
    features = _training_pass(config, network, inputs.train_paths, shapes, train_cache, device, cv)
    test_cache = FeatureCache(folder, key, inputs.test_paths, 2**62)
    true = _test_features(config, network, inputs.test_paths, shapes, test_cache, device)
    return shapes, features, true


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
        float(stats.sd_sum) / n_images,
        decoded,
        _evaluate(layer, decoded, true, inputs.test_rows, stats.mean(n_images), stats.sd(n_images)),
    )


def cache_budget(config: Config) -> int:
    """Bytes the training-feature cache may take.

    That is ``--feature-cache-mb``, within the work folder's free space less a 2 GB margin.
    """
    config.work_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(config.work_dir).free - 2 * 2**30
    budget = int(config.feature_cache_mb * 2**20)
    if free < budget:
        LOGGER.info(
            "Feature cache limited to %.0f MB by the free space of %s",
            max(free, 0) / 2**20,
            config.work_dir,
        )
    return max(min(budget, free), 0)


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
    """Ridge decoders (:class:`StreamingRidge`) for every layer of ``network``, for each ROI.

    The training images go through the network once for all ROIs; layers kept whole (on the
    device or in the cache) are then decoded a column chunk at a time, and the others need a
    second pass, which decodes them for all ROIs together.
    """
    shapes, features, true = _features(
        config, network, inputs, device, cache_budget(config), np.float16, cv=True
    )
    training = spec.training_set.name
    n_img = len(inputs.train_paths)
    grid = ridge_alphas(config)
    folds = cv_folds(
        len(inputs.train_rows), config.cv_folds, sample_set.train_runs, sample_set.stimuli[training]
    )
    if len(grid) > 1 and not folds:
        raise UsageError(
            "Alpha cannot be chosen by cross-validation: every fold would validate on images "
            "that all other runs also show. Pass one value with --alphas."
        )
    grams = {layer: cv_gram(features, layer, device) for layer in shapes} if len(grid) > 1 else {}
    tests = {name: m for name, m in sample_set.samples.items() if name != training}
    models: dict[tuple[str, str], StreamingRidge] = {}
    for roi in rois:
        voxels = sample_set.rois[roi]
        ridge = DualRidge(sample_set.samples[training][:, voxels], folds, device)
        for layer, shape in shapes.items():
            model = StreamingRidge(ridge, inputs.train_rows, n_img, int(np.prod(shape)))
            model.fit(grams.get(layer), grid)
            models[roi, layer] = model.start_predict({k: x[:, voxels] for k, x in tests.items()})
            subset = features.stats[layer].subset
            LOGGER.info(
                "%s/%s: alpha %.3g (CV over %d folds, %s units)",
                roi,
                layer,
                model.alpha_,
                len(folds),
                "all" if subset is None or layer in features.on_device else len(subset),
            )
    del grams
    streamed = [layer for layer in shapes if not features.kept(layer)]
    for layer in shapes:
        if layer not in streamed:
            for cols, chunk in features.column_chunks(layer, device):
                for roi in rois:
                    models[roi, layer].partial_predict(slice(None), cols, chunk)
            features.on_device.pop(layer, None)  # its device memory is free for the next
    if streamed:
        for rows, batch in _stream(config, network, inputs.train_paths, device, "decoding"):
            for layer in streamed:
                for roi in rois:
                    models[roi, layer].partial_predict(rows, slice(None), batch[layer])
    results = {}
    for roi in rois:
        results[roi] = []
        for layer, s in features.stats.items():
            model = models.pop((roi, layer))
            decoded = {name: d.cpu().numpy() for name, d in model.decoded_.items()}
            results[roi].append(
                _layer_result(
                    layer, s, n_img, decoded, true[layer], inputs, model.alpha_, model.cv_errors_
                )
            )
    return results


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
    _, features, true = _features(config, network, inputs, device, 2**62, np.float32, cv=False)
    training = spec.training_set.name
    n_img = len(inputs.train_paths)
    out: dict[str, list[LayerResult]] = {roi: [] for roi in rois}
    for layer, s in features.stats.items():
        full = features.cache.load(layer)
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
