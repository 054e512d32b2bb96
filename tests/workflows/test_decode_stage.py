"""The decode stage on the simulated dataset with the built-in network."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from helpers import participant_args

from bids_recon.cli import main, parse_config
from bids_recon.decoding import RidgeDecoder, VoxelSelectionDecoder
from bids_recon.features import extract
from bids_recon.features.extract import feature_batches, fill_store
from bids_recon.features.networks import build_network
from bids_recon.io.feature_store import BatchStore
from bids_recon.specs import load_builtin_spec
from bids_recon.workflows import decode
from bids_recon.workflows.decode import decode_inputs, decode_ridge, decode_voxel_selection
from bids_recon.workflows.participant import collect_all_inputs
from bids_recon.workflows.samples import run_samples_stage

SPEC = load_builtin_spec("ds001506")


@pytest.fixture(scope="module")
def prepared(simulated_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("decode")
    config = parse_config(
        participant_args(
            simulated_dataset,
            tmp,
            "--network",
            "builtin",
            "--layers",
            "conv3",
            "fc2",
            "--cv-units",
            "100000",
        )
    )
    inputs = collect_all_inputs(config, SPEC, ["01"])["01"]
    sample_set = run_samples_stage(config, SPEC, inputs)
    network = build_network("builtin", layers=["conv3", "fc2"])
    return config, sample_set, decode_inputs(SPEC, sample_set, inputs.stimulus_files), network


def true_training_features(network, inputs):
    rows = {layer: [] for layer in network.layers}
    for _, batch in feature_batches(network, inputs.train_paths, 7, "cpu"):
        for layer, values in batch.items():
            rows[layer].append(values.numpy())
    return {layer: np.concatenate(v) for layer, v in rows.items()}


def test_threaded_image_loading_gives_the_same_features(prepared):
    _, _, inputs, network = prepared
    paths = inputs.train_paths[:23]
    plain = list(feature_batches(network, paths, 5, "cpu"))
    threaded = list(feature_batches(network, paths, 5, "cpu", loaders=3))
    assert [rows for rows, _ in plain] == [rows for rows, _ in threaded]
    for (_, a), (_, b) in zip(plain, threaded, strict=True):
        for layer in network.layers:
            assert np.array_equal(a[layer].numpy(), b[layer].numpy())


def test_stored_batches_are_read_instead_of_computed(prepared, tmp_path, monkeypatch):
    _, _, inputs, network = prepared
    paths = inputs.train_paths[:23]
    store = BatchStore(tmp_path, "key", paths, 5)
    assert fill_store(network, paths, store, "cpu", [0, 2, 4]) == 3
    assert fill_store(network, paths, store, "cpu", [0, 2, 4]) == 0  # already there
    computed = list(feature_batches(network, paths, 5, "cpu"))
    loaded = []

    def count_forward(*args):
        loaded.append(1)
        return forward(*args)

    forward = extract._forward
    monkeypatch.setattr(extract, "_forward", count_forward)
    mixed = list(feature_batches(network, paths, 5, "cpu", loaders=2, store=store))
    assert len(loaded) == 2  # batches 1 and 3 only
    for (rows_a, a), (rows_b, b) in zip(computed, mixed, strict=True):
        assert rows_a == rows_b
        for layer in network.layers:
            assert np.array_equal(a[layer].numpy(), b[layer].numpy())


@pytest.mark.parametrize("cache_mb", [0.0, 512.0])
def test_streamed_decoding_equals_in_memory_ridge(prepared, cache_mb, tmp_path):
    config, sample_set, inputs, network = prepared
    config = dataclasses.replace(config, feature_cache_mb=cache_mb, work_dir=tmp_path)
    results = {
        r.layer: r
        for r in decode_ridge(config, network, SPEC, sample_set, inputs, ["VC"], "cpu")["VC"]
    }
    features = true_training_features(network, inputs)
    x_train = sample_set.samples["training"]
    for layer, result in results.items():
        y = features[layer][inputs.train_rows]
        reference = RidgeDecoder(cv=config.cv_folds).fit(x_train, y, groups=sample_set.train_runs)
        assert result.alpha == reference.alpha_
        for name in ("natural", "letters"):
            expected = reference.predict(sample_set.samples[name])
            assert np.allclose(result.decoded[name], expected, rtol=1e-4, atol=1e-3)


def test_reference_sd_is_the_training_mean_of_the_papers_statistic(prepared, tmp_path):
    config, sample_set, inputs, network = prepared
    config = dataclasses.replace(config, work_dir=tmp_path)
    result = decode_ridge(config, network, SPEC, sample_set, inputs, ["VC"], "cpu")["VC"][0]
    features = true_training_features(network, inputs)["conv3"].reshape(-1, 64, 16 * 16)
    expected = features.std(axis=2).mean(axis=1).mean()
    assert np.isclose(result.reference_sd, expected, rtol=1e-5)


def test_voxel_selection_stage_equals_estimator(prepared, tmp_path):
    config, sample_set, inputs, network = prepared
    config = dataclasses.replace(
        config, work_dir=tmp_path, selection_voxels=50, selection_chunk=1000
    )
    results = decode_voxel_selection(config, network, SPEC, sample_set, inputs, ["VC"], "cpu")["VC"]
    fc2 = next(r for r in results if r.layer == "fc2")
    y = true_training_features(network, inputs)["fc2"][inputs.train_rows]
    mean, sd = y.mean(0), y.std(0, ddof=1)
    model = VoxelSelectionDecoder(alpha=100.0, n_voxels=50).fit(
        sample_set.samples["training"], (y - mean) / sd
    )
    expected = model.predict(sample_set.samples["natural"]) * sd + mean
    assert np.allclose(fc2.decoded["natural"], expected, rtol=1e-4, atol=1e-4)


def test_participant_run_writes_decoded_features_and_accuracy(simulated_dataset, tmp_path):
    reference = tmp_path / "sd.json"
    reference.write_text(json.dumps({"fc2": 2.628}))
    args = ["--network", "builtin", "--stages", "samples", "decode", "report"]
    code = main(participant_args(simulated_dataset, tmp_path, *args, "--feature-sd", reference))
    assert code == 0
    func = tmp_path / "out" / "sub-01" / "func"
    table = pd.read_csv(func / "sub-01_desc-featdecoding_eval.tsv", sep="\t")
    profile = table[(table["metric"] == "profile_correlation") & (table["set"] == "natural")]
    early = profile.set_index("layer").loc[["conv1", "conv2"], "value"]
    assert (early > 0.2).all(), profile
    path = func / "sub-01_roi-VC_set-natural_feat-conv1_desc-decoded_features.npy"
    decoded = np.load(path)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert decoded.shape == (len(sidecar["Stimuli"]), 16, 64, 64)
    assert sidecar["Layer"] == "conv1" and sidecar["ROI"] == "VC" and sidecar["Alpha"] > 0
    assert sidecar["NTrainingBlocks"] == 200
    assert sidecar["ReferenceSD"] > 0 and "training images" in sidecar["ReferenceSDSource"]
    fc2 = json.loads(
        (func / "sub-01_roi-VC_set-natural_feat-fc2_desc-decoded_features.json").read_text()
    )
    assert fc2["ReferenceSD"] == 2.628 and fc2["ReferenceSDSource"] == str(reference)
    models = tmp_path / "out" / "sub-01" / "models" / "sub-01_roi-VC_desc-ridge_decoder.json"
    meta = json.loads(models.read_text())
    assert set(meta["Layers"]) == {"conv1", "conv2", "conv3", "fc1", "fc2"}
    assert "Feature decoding accuracy" in (tmp_path / "out" / "sub-01.html").read_text()


def test_missing_vgg19_weights_fail_before_any_output(
    simulated_dataset, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code = main(participant_args(simulated_dataset, tmp_path))  # default network: vgg19
    assert code == 66
    assert "--weights" in caplog.text
    assert not (tmp_path / "out").exists()


def test_several_rois_share_one_feature_extraction(simulated_dataset, tmp_path, monkeypatch):
    """--roi VC LVC HVC runs the network as often as one ROI does, with the same results."""
    calls = []
    forward = extract._forward
    monkeypatch.setattr(extract, "_forward", lambda *a: calls.append(1) or forward(*a))
    args = ["--network", "builtin", "--layers", "conv3", "fc2", "--stages", "samples", "decode"]
    args += ["--feature-cache-mb", "0"]  # nothing kept: every pass runs the network
    outputs = {}
    for rois in (["VC"], ["VC", "LVC", "HVC"]):
        calls.clear()
        root = tmp_path / "-".join(rois)
        assert main(participant_args(simulated_dataset, root, *args, "--roi", *rois)) == 0
        outputs[len(rois)] = len(calls), root / "out" / "sub-01" / "func"
    (one, single), (three, several) = outputs[1], outputs[3]
    assert one == three > 0
    name = "sub-01_roi-{}_set-natural_feat-fc2_desc-decoded_features.npy"
    assert np.allclose(np.load(single / name.format("VC")), np.load(several / name.format("VC")))
    lvc = json.loads((several / name.format("LVC")).with_suffix(".json").read_text())
    hvc = json.loads((several / name.format("HVC")).with_suffix(".json").read_text())
    assert 0 < lvc["NVoxels"] and 0 < hvc["NVoxels"] and lvc["NVoxels"] != hvc["NVoxels"]


def test_layers_kept_on_the_device_give_the_exact_gram_and_one_pass(
    prepared, tmp_path, monkeypatch
):
    """The GPU route (layers kept whole in device memory), exercised on the CPU."""
    config, sample_set, inputs, network = prepared
    config = dataclasses.replace(config, feature_cache_mb=0.0, work_dir=tmp_path, cv_units=100)
    monkeypatch.setattr(decode, "_device_layers", lambda units, n, device: set(units))
    passes = []
    stream = decode._stream
    monkeypatch.setattr(decode, "_stream", lambda *a, **k: passes.append(a[4]) or stream(*a, **k))
    results = decode_ridge(config, network, SPEC, sample_set, inputs, ["VC"], "cpu")["VC"]
    assert passes == ["training features", "test features"]  # no second training pass
    features = true_training_features(network, inputs)
    for result in results:  # the Gram matrix is exact although cv_units is small
        y = features[result.layer][inputs.train_rows]
        reference = RidgeDecoder(cv=config.cv_folds).fit(
            sample_set.samples["training"], y, groups=sample_set.train_runs,
            labels=sample_set.stimuli["training"],
        )  # fmt: skip
        assert result.alpha == reference.alpha_
        expected = reference.predict(sample_set.samples["natural"])
        assert np.allclose(result.decoded["natural"], expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("cache_mb", [0.0, 512.0])
def test_training_images_go_through_the_network_twice_only_without_the_cache(
    prepared, tmp_path, monkeypatch, cache_mb
):
    config, sample_set, inputs, network = prepared
    config = dataclasses.replace(config, feature_cache_mb=cache_mb, work_dir=tmp_path)
    passes = []
    stream = decode._stream
    monkeypatch.setattr(decode, "_stream", lambda *a, **k: passes.append(a[4]) or stream(*a, **k))
    decode_ridge(config, network, SPEC, sample_set, inputs, ["VC"], "cpu")
    second = ["decoding"] if cache_mb == 0 else []
    assert passes == ["training features", "test features", *second]
