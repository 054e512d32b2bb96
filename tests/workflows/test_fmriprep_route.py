"""Raw runs of different sessions are refused with the way out; the fMRIPrep route works.

``bids_recon-simulate --fmriprep`` writes raw runs with a head position per session (not
aligned) and fMRIPrep-like aligned outputs under ``derivatives/fmriprep``.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import participant_args

from bids_recon.cli import main
from bids_recon.simulate import simulate_dataset


@pytest.fixture(scope="module")
def raw_and_fmriprep(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("fp") / "ds", n_subjects=1, fmriprep=True)


def test_simulated_pair_raw_misaligned_derivatives_aligned(raw_and_fmriprep):
    ds = raw_and_fmriprep
    raw = sorted(ds.glob("sub-01/ses-*/func/*_bold.nii.gz"))
    prep = sorted(ds.glob("derivatives/fmriprep/sub-01/ses-*/func/*_desc-preproc_bold.nii.gz"))
    assert len(raw) == len(prep) > 0
    raw_affines = {tuple(nib.load(p).affine[:3, 3]) for p in raw}
    prep_affines = {tuple(nib.load(p).affine[:3, 3]) for p in prep}
    assert len(raw_affines) > 1 and len(prep_affines) == 1
    confounds = next(ds.glob("derivatives/fmriprep/sub-01/ses-*/func/*_timeseries.tsv"))
    table = pd.read_csv(confounds, sep="\t", na_values="n/a")
    assert {"trans_x", "rot_z_derivative1_power2", "csf", "white_matter"} <= set(table.columns)
    assert np.isnan(table["framewise_displacement"][0])
    assert (ds / "derivatives" / "fmriprep" / "dataset_description.json").is_file()


def test_raw_mode_on_unaligned_runs_is_refused_with_the_route(raw_and_fmriprep, tmp_path, caplog):
    code = main(participant_args(raw_and_fmriprep, tmp_path, "--network", "builtin"))
    assert code == 65
    message = caplog.text
    assert "has another affine (head position in the scanner)" in message
    assert "_bold.nii.gz" in message and "--derivatives fmriprep=PATH" in message
    assert "--derivatives bdata=DIR" in message
    assert not (tmp_path / "out").exists()


def test_fmriprep_route_recovers_the_simulated_signal(raw_and_fmriprep, tmp_path):
    fmriprep = raw_and_fmriprep / "derivatives" / "fmriprep"
    args = ["--network", "builtin", "--derivatives", f"fmriprep={fmriprep}"]
    args += ["--confounds", "motion", "wm_csf", "--sets", "natural", "--recon-iterations", "10"]
    assert main(participant_args(raw_and_fmriprep, tmp_path, *args)) == 0
    summary = pd.read_csv(
        tmp_path / "out" / "sub-01" / "func" / "sub-01_desc-reconsummary_eval.tsv", sep="\t"
    )
    row = summary[(summary["metric"] == "pixel_identification") & (summary["source"] == "decoded")]
    assert row["value"].iloc[0] > 0.7  # chance is 0.5
