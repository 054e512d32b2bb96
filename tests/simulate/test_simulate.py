"""The simulated dataset: deterministic, shaped like ds001506, carrying the encoding model."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids import BIDSLayout

from bids_recon.errors import UsageError
from bids_recon.simulate import SIZES, simulate_dataset
from bids_recon.simulate.encoding import canonical_hrf, event_regressors
from bids_recon.simulate.stimuli import letter_name, shape_name
from bids_recon.specs import load_builtin_spec

SESSION_KINDS = (
    "perceptionNaturalImageTraining",
    "perceptionNaturalImageTest",
    "perceptionArtificialImage",
    "perceptionLetterImage",
    "imagery",
)
ROIS = ("V1d", "V1v", "V2d", "V2v", "V3d", "V3v", "hV4", "LOC", "FFA", "PPA", "HVC")


def read_events(path):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def test_same_seed_gives_identical_files(tmp_path, simulated_dataset):
    again = simulate_dataset(tmp_path / "again", n_subjects=1, seed=3)
    first = sorted(
        p.relative_to(simulated_dataset) for p in simulated_dataset.rglob("*") if p.is_file()
    )
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second
    for rel in first:
        assert (simulated_dataset / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_other_seed_gives_other_data(tmp_path, simulated_dataset):
    other = simulate_dataset(tmp_path / "other", n_subjects=1, seed=4)
    rel = "sub-01/ses-imagery01/func/sub-01_ses-imagery01_task-imagery_run-01_bold.nii.gz"
    assert not np.array_equal(
        nib.load(simulated_dataset / rel).get_fdata(), nib.load(other / rel).get_fdata()
    )


def test_pybids_indexes_it_like_ds001506(simulated_dataset_two):
    layout = BIDSLayout(simulated_dataset_two, validate=True)
    assert layout.get_subjects() == ["01", "02"]
    assert set(layout.get_tasks()) == {"perception", "imagery"}
    sessions = layout.get_sessions(subject="01")
    for kind in SESSION_KINDS:
        assert f"{kind}01" in sessions
    bold = layout.get(subject="01", suffix="bold", extension=".nii.gz")
    events = layout.get(subject="01", suffix="events", extension=".tsv")
    assert len(bold) == len(events) > 0
    for image in bold:
        assert image.get_metadata()["RepetitionTime"] == 2.0
        assert image.entities["run"] >= 1


def test_events_have_the_real_columns_and_codes(simulated_dataset, ds001506_dir):
    real = {}
    for path in (ds001506_dir / "sub-01").rglob("*_events.tsv"):
        kind = path.parent.parent.name.removeprefix("ses-").rstrip("0123456789")
        real[kind] = read_events(path)
    for kind in SESSION_KINDS:
        paths = sorted(simulated_dataset.glob(f"sub-01/ses-{kind}*/func/*_events.tsv"))
        assert paths, kind
        for path in paths:
            sim = read_events(path)
            assert list(sim.columns) == list(real[kind].columns), path.name
            assert set(sim["event_type"]) <= set(real[kind]["event_type"]), path.name
            assert set(sim["event_type"]) == set(real[kind]["event_type"]), path.name
            onset = sim["onset"].astype(float)
            duration = sim["duration"].astype(float)
            assert np.allclose(onset.iloc[1:].to_numpy(), (onset + duration).iloc[:-1].to_numpy())
            bold = nib.load(str(path).replace("_events.tsv", "_bold.nii.gz"))
            assert bold.ndim == 4
            assert bold.shape[3] * 2.0 >= onset.iloc[-1] + duration.iloc[-1]


def test_letter_runs_keep_the_odd_rest_cell(simulated_dataset):
    path = next(
        simulated_dataset.glob("sub-01/ses-perceptionLetterImage01/func/*run-01_events.tsv")
    )
    assert "on/a" in set(read_events(path)["stimulus_id"])


def test_block_counts_follow_the_design(simulated_dataset):
    size = SIZES["small"]
    train = [
        read_events(p)
        for p in simulated_dataset.glob(
            "sub-01/ses-perceptionNaturalImageTraining*/func/*_events.tsv"
        )
    ]
    assert len(train) == size.train_sessions * size.train_runs_per_session
    shown = pd.concat(e[e["event_type"] == "1"] for e in train)["stimulus_name"]
    assert shown.is_unique and len(shown) >= size.n_train_images - 5
    for path in simulated_dataset.glob("sub-01/ses-perceptionLetterImage*/func/*_events.tsv"):
        events = read_events(path)
        assert (events["event_type"] == "1").sum() == 10
        assert (events["event_type"] == "2").sum() == 1
    for path in simulated_dataset.glob("sub-01/ses-imagery*/func/*_events.tsv"):
        events = read_events(path)
        assert (events["event_type"] == "2").sum() == 26
        assert sorted(
            events.loc[events["event_type"] == "2", "category_index"].astype(int)
        ) == list(range(1, 27))


def test_masks_have_ds001506_names_and_bold_grid(simulated_dataset):
    anat = simulated_dataset / "sourcedata" / "sub-01" / "anat"
    names = sorted(p.name for p in anat.glob("*.nii.gz"))
    assert names == sorted(f"sub-01_mask_{h}_{r}.nii.gz" for h in ("LH", "RH") for r in ROIS)
    bold = nib.load(next(simulated_dataset.glob("sub-01/ses-imagery01/func/*_bold.nii.gz")))
    for name in names:
        mask = nib.load(anat / name)
        assert mask.shape == bold.shape[:3]
        assert np.allclose(mask.affine, bold.affine)
        data = mask.get_fdata()
        assert set(np.unique(data)) <= {0.0, 1.0} and data.sum() > 0, name


def test_every_stimulus_has_an_image(simulated_dataset):
    stimuli = simulated_dataset / "stimuli"
    files = {p.stem: p for p in stimuli.rglob("*") if p.is_file()}
    for path in simulated_dataset.glob("sub-01/ses-perception*/func/*_events.tsv"):
        events = read_events(path)
        names = set(events.loc[events["event_type"].isin(["1", "2"]), "stimulus_name"])
        assert names <= set(files), path.name
    imagery = load_builtin_spec("ds001506").sets["imagery"].events
    for name in imagery.stimulus_map.values():
        assert name in files or name in imagery.no_image
    assert files[shape_name("yellow", "+")].name == "colorExpStim19_yellow_+.png"
    assert letter_name("R") == "letter_black_img028_R"
    assert (
        files["n03954393_10038" if "n03954393_10038" in files else "n01443537_22563"].suffix
        == ".JPEG"
    )


def test_bold_carries_the_stimulus_signal(simulated_dataset):
    """Block averages of visual voxels correlate with the known noiseless responses."""
    truth = np.load(
        simulated_dataset / "sourcedata/sub-01/simulation/sub-01_desc-truth_responses.npz"
    )
    names = list(truth["stimulus_names"])
    responses, ijk = truth["responses"], truth["voxel_ijk"]
    visual = np.abs(responses).sum(axis=0) > 0
    samples, expected = [], []
    for path in sorted(
        simulated_dataset.glob("sub-01/ses-perceptionNaturalImageTraining*/func/*_bold.nii.gz")
    ):
        data = nib.load(path).get_fdata()[tuple(ijk[visual].T)].T  # volumes x voxels
        t = np.arange(len(data))
        data = (
            data
            - np.polynomial.polynomial.polyval(t, np.polynomial.polynomial.polyfit(t, data, 1)).T
        )
        data = (data - data.mean(0)) / data.std(0)
        events = read_events(str(path).replace("_bold.nii.gz", "_events.tsv"))
        for _, row in events[events["event_type"] == "1"].iterrows():
            start = float(row["onset"]) + 4.0
            volumes = [k for k in range(len(data)) if start <= 2.0 * k < start + 8.0]
            samples.append(data[volumes].mean(0))
            expected.append(responses[names.index(row["stimulus_name"])][visual])
    samples, expected = np.array(samples), np.array(expected)
    r = [np.corrcoef(samples[:, v], expected[:, v])[0, 1] for v in range(samples.shape[1])]
    assert 0.15 < np.median(r) < 0.8  # decodable, but noisy


def test_hrf_and_regressors():
    hrf = canonical_hrf(0.1)
    assert np.isclose(hrf.sum(), 1.0)
    assert 4.5 < np.argmax(hrf) * 0.1 < 6.5
    regressors = event_regressors(np.array([10.0]), np.array([8.0]), 30, 2.0)
    assert regressors.shape == (30, 1)
    assert np.argmax(regressors[:, 0]) * 2.0 > 14.0  # peak lags the block onset


def test_refuses_non_empty_output(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="not an empty folder"):
        simulate_dataset(tmp_path / "ds")
    with pytest.raises(UsageError, match="--size"):
        simulate_dataset(tmp_path / "new", size="huge")
    assert not (tmp_path / "new").exists()


def test_dataset_description_is_valid_raw(simulated_dataset):
    description = json.loads((simulated_dataset / "dataset_description.json").read_text())
    assert description["DatasetType"] == "raw" and description["BIDSVersion"]
