"""The samples stage end to end: simulated data, a brute-force reference, cache, provenance."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import participant_args

from bids_recon.cli import main, parse_config
from bids_recon.specs import load_builtin_spec
from bids_recon.workflows import samples as samples_module
from bids_recon.workflows.participant import collect_all_inputs
from bids_recon.workflows.samples import compute_samples, run_samples_stage

SPEC = load_builtin_spec("ds001506")
VC_PARTS = ("V1d", "V1v", "V2d", "V2v", "V3d", "V3v", "hV4", "HVC")


def config_for(dataset, tmp_path, *extra):
    return parse_config(participant_args(dataset, tmp_path, *extra))


@pytest.fixture(scope="module")
def computed(simulated_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("samples")
    config = config_for(simulated_dataset, tmp)
    inputs = collect_all_inputs(config, SPEC, ["01"])["01"]
    return config, inputs, compute_samples(config, SPEC, inputs)


def naive_samples(dataset, blocks_table):
    """Brute force: per run polyfit detrend, z-score, loop over volumes of each block."""
    anat = dataset / "sourcedata" / "sub-01" / "anat"
    mask = np.zeros(nib.load(next(anat.glob("*.nii.gz"))).shape, dtype=bool)
    for part in VC_PARTS:
        for hemi in ("LH", "RH"):
            mask |= nib.load(anat / f"sub-01_mask_{hemi}_{part}.nii.gz").get_fdata() > 0
    rows = []
    for (session, run), table in blocks_table.groupby(["session", "run"], sort=False):
        task = table["task"].iloc[0]
        path = (
            dataset
            / "sub-01"
            / f"ses-{session}"
            / "func"
            / f"sub-01_ses-{session}_task-{task}_run-{run}_bold.nii.gz"
        )
        data = nib.load(path).get_fdata()[mask].T  # volumes x voxels
        t = np.arange(len(data))
        for v in range(data.shape[1]):
            slope, intercept = np.polyfit(t, data[:, v], 1)
            data[:, v] = data[:, v] - (slope * t + intercept) + data[:, v].mean()
            sd = data[:, v].std()
            data[:, v] = (data[:, v] - data[:, v].mean()) / sd if sd > 0 else 0.0
        for _, block in table.iterrows():
            volumes = [
                k
                for k in range(len(data))
                if block.onset + 4 <= 2.0 * k < block.onset + block.duration + 4
            ]
            rows.append(data[volumes].mean(axis=0))
    return np.array(rows), mask


def test_vectorized_samples_equal_brute_force(computed, simulated_dataset):
    _, _, result = computed
    raw, mask = naive_samples(simulated_dataset, result.blocks)
    is_train = (result.blocks["set"] == "training").to_numpy()
    mean, sd = raw[is_train].mean(0), raw[is_train].std(0, ddof=1)
    keep = sd > 1e-8
    standardized = (raw[:, keep] - mean[keep]) / sd[keep]
    assert np.array_equal(np.argwhere(mask)[keep], result.voxels)
    assert np.allclose(result.samples["training"], standardized[is_train], atol=1e-4)
    for name in ("natural", "artificial", "letters", "imagery"):
        in_set = (result.blocks["set"] == name).to_numpy()
        labels = result.blocks.loc[in_set, "stimulus"].tolist()
        for row, stimulus in zip(result.samples[name], result.stimuli[name], strict=True):
            expected = standardized[in_set][[i for i, s in enumerate(labels) if s == stimulus]]
            assert np.allclose(row, expected.mean(0), atol=1e-4)


def test_sample_counts_and_cv_groups(computed):
    _, inputs, result = computed
    assert result.samples["training"].shape[0] == len(result.stimuli["training"]) == 200
    assert len(result.stimuli["natural"]) == 10  # 4 repetitions averaged
    assert len(result.stimuli["artificial"]) == 40 and len(result.stimuli["letters"]) == 10
    assert len(result.stimuli["imagery"]) == 26 and "fixation" in result.stimuli["imagery"]
    assert len(np.unique(result.train_runs)) == 8
    assert result.rois["VC"].all()
    assert "fixation" not in inputs.stimulus_files


def test_samples_carry_the_simulated_signal(computed, simulated_dataset):
    """Training samples correlate with the known noiseless responses of the same voxels."""
    _, _, result = computed
    truth = np.load(
        simulated_dataset / "sourcedata/sub-01/simulation/sub-01_desc-truth_responses.npz"
    )
    column = {tuple(v): k for k, v in enumerate(truth["voxel_ijk"])}
    row = {name: k for k, name in enumerate(truth["stimulus_names"])}
    cols = [column[tuple(v)] for v in result.voxels]
    expected = truth["responses"][[row[s] for s in result.stimuli["training"]]][:, cols]
    signal = np.abs(expected).sum(0) > 0
    r = [
        np.corrcoef(result.samples["training"][:, v], expected[:, v])[0, 1]
        for v in np.flatnonzero(signal)
    ]
    assert np.median(r) > 0.15


def test_cache_hit_reads_no_bold_data(computed, tmp_path, monkeypatch):
    config, inputs, _ = computed
    first = run_samples_stage(config, SPEC, inputs)

    def forbidden(*args, **kwargs):
        raise AssertionError("BOLD data read despite a cache hit")

    monkeypatch.setattr(samples_module, "read_voxel_series", forbidden)
    second = run_samples_stage(config, SPEC, inputs)
    for name in first.samples:
        assert np.array_equal(first.samples[name], second.samples[name])
        assert first.stimuli[name] == second.stimuli[name]
    pd.testing.assert_frame_equal(first.blocks, second.blocks, check_dtype=False)


def test_participant_run_writes_blocks_table(simulated_dataset, tmp_path):
    out = tmp_path / "out"
    code = main(participant_args(simulated_dataset, tmp_path, "--stages", "samples", "report"))
    assert code == 0
    table_path = out / "sub-01" / "func" / "sub-01_desc-blocks_table.tsv"
    table = pd.read_csv(table_path, sep="\t", dtype=str, keep_default_na=False)
    for column in ("set", "session", "run", "onset", "duration", "stimulus", "is_repeat"):
        assert column in table.columns
    assert set(table["set"]) == {"training", "natural", "artificial", "letters", "imagery"}
    assert (table["set"] == "training").sum() == 200
    assert set(table["is_repeat"]) == {"false"}
    assert set(json.loads(table_path.with_suffix(".json").read_text())) == set(table.columns)
    assert "Data used" in (out / "sub-01.html").read_text()


def test_session_label_that_matches_nothing_exit_18(simulated_dataset, tmp_path, caplog):
    code = main(
        [
            str(simulated_dataset),
            str(tmp_path / "out"),
            "participant",
            "--session-label",
            "perceptionNaturalImageTest01",
            "--skip-bids-validation",
        ]
    )
    assert code == 18
    assert "training" in caplog.text and "perceptionNaturalImageTraining01" in caplog.text
    assert not (tmp_path / "out").exists()


def test_filter_file_narrows_runs(simulated_dataset, tmp_path):
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {"run": [1], "acquisition": None}}))
    config = config_for(simulated_dataset, tmp_path, "--bids-filter-file", str(filters))
    inputs = collect_all_inputs(config, SPEC, ["01"])["01"]
    assert {run.run for run in inputs.runs} == {"01"}
    assert sum(run.set_name == "training" for run in inputs.runs) == 4  # run 1 of 4 sessions


def test_user_roi_mask_on_another_grid_is_resampled(simulated_dataset, tmp_path):
    mask_path = simulated_dataset / "sourcedata/sub-01/anat/sub-01_mask_LH_V1d.nii.gz"
    mask = nib.load(mask_path)
    # the same mask at half the resolution: 4 mm voxels
    coarse = nib.Nifti1Image(
        mask.get_fdata()[::2, ::2, ::2].astype(np.uint8), np.diag([4.0, 4.0, 4.0, 1.0])
    )
    user = tmp_path / "coarse.nii.gz"
    nib.save(coarse, user)
    config = config_for(
        simulated_dataset, tmp_path, "--roi", "V1", "mine", "--roi-mask", f"mine={user}"
    )
    inputs = collect_all_inputs(config, SPEC, ["01"])["01"]
    assert set(inputs.roi_masks) == {"V1", "mine"}
    assert inputs.roi_masks["mine"].shape == mask.shape
    assert inputs.roi_masks["mine"].sum() > 0


def test_masks_from_a_derivatives_folder(simulated_dataset, tmp_path):
    rois = tmp_path / "rois"
    shutil.copytree(
        simulated_dataset / "sourcedata" / "sub-01" / "anat",
        rois / "sourcedata" / "sub-01" / "anat",
    )
    config = config_for(simulated_dataset, tmp_path, "--derivatives", f"rois={rois}")
    inputs = collect_all_inputs(config, SPEC, ["01"])["01"]
    assert all(p.is_relative_to(rois) for p in inputs.mask_files["VC"])
    assert len(inputs.mask_files["VC"]) == 16


def test_stimuli_table_maps_labels_to_names(simulated_dataset, tmp_path):
    assert main(participant_args(simulated_dataset, tmp_path, "--stages", "samples")) == 0
    table = pd.read_csv(
        tmp_path / "out" / "stimuli.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    row = table[table["stimulus_name"] == "colorExpStim19_yellow_+"].iloc[0]
    assert row["stim_label"] == "colorExpStim19yellow" and row["set"] == "artificial"
    assert row["source_path"] == "artificial/colorExpStim19_yellow_+.png"
    assert len(row["sha256"]) == 64
    fixation = table[table["stimulus_name"] == "fixation"].iloc[0]
    assert fixation["source_path"] == "n/a"
    assert (
        table.groupby("set")["stim_label"].nunique()
        == table.groupby("set")["stimulus_name"].nunique()
    ).all()
    descriptions = pd.read_csv(tmp_path / "out" / "descriptions.tsv", sep="\t")
    assert descriptions["desc_id"].is_unique and "desc-oracle" in set(descriptions["desc_id"])
