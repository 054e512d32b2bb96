"""Other input modes: fMRIPrep derivatives with confounds, pybids database reuse, validation."""

from __future__ import annotations

import json
import stat

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import participant_args

from bids_recon.cli import main, parse_config
from bids_recon.errors import BIDSValidationError, MissingInputError
from bids_recon.io import validation
from bids_recon.io.layout import build_layout
from bids_recon.specs import load_builtin_spec
from bids_recon.workflows.participant import collect_all_inputs
from bids_recon.workflows.samples import compute_samples

SPEC = load_builtin_spec("ds001506")
MOTION = [f"{axis}_{d}" for axis in ("trans", "rot") for d in "xyz"]


@pytest.fixture(scope="module")
def fmriprep(simulated_dataset, tmp_path_factory):
    """A fake fMRIPrep output: the raw BOLD as float in space-T1w, StartTime, motion confounds."""
    root = tmp_path_factory.mktemp("fmriprep") / "fmriprep"
    rng = np.random.default_rng(1)
    for bold in sorted(simulated_dataset.glob("sub-01/ses-*/func/*_bold.nii.gz")):
        folder = root / bold.parent.relative_to(simulated_dataset)
        folder.mkdir(parents=True, exist_ok=True)
        stem = bold.name.removesuffix("_bold.nii.gz")
        image = nib.load(bold)
        nib.save(
            nib.Nifti1Image(image.get_fdata().astype(np.float32), image.affine),
            folder / f"{stem}_space-T1w_desc-preproc_bold.nii.gz",
        )
        (folder / f"{stem}_space-T1w_desc-preproc_bold.json").write_text(
            json.dumps({"RepetitionTime": 2.0, "StartTime": 1.0})
        )
        n = image.shape[3]
        columns = {}
        for name in MOTION:
            columns[name] = rng.normal(0, 0.1, n)
            columns[f"{name}_derivative1"] = np.r_[0, np.diff(columns[name])]
            for base in (name, f"{name}_derivative1"):
                columns[f"{base}_power2"] = columns[base] ** 2
        pd.DataFrame(columns).to_csv(
            folder / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False
        )
        (folder / f"{stem}_desc-confounds_timeseries.json").write_text("{}")
    return root


def config_for(dataset, tmp_path, *extra):
    return parse_config(participant_args(dataset, tmp_path, *extra))


def test_fmriprep_bold_with_motion_confounds(simulated_dataset, fmriprep, tmp_path):
    config = config_for(
        simulated_dataset,
        tmp_path,
        "--derivatives",
        f"fmriprep={fmriprep}",
        "--confounds",
        "motion",
    )
    inputs = collect_all_inputs(config, SPEC, ["01"])["01"]
    assert all(run.bold.is_relative_to(fmriprep) for run in inputs.runs)
    assert all(run.start_time == 1.0 for run in inputs.runs)
    assert all("_space-T1w_desc-preproc_bold" in run.bold.name for run in inputs.runs)
    with_confounds = compute_samples(config, SPEC, inputs)
    raw = compute_samples(
        config_for(simulated_dataset, tmp_path),
        SPEC,
        collect_all_inputs(config_for(simulated_dataset, tmp_path), SPEC, ["01"])["01"],
    )
    a, b = with_confounds.samples["training"], raw.samples["training"]
    assert a.shape == b.shape and not np.allclose(a, b)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8  # same signal, confounds removed


def test_fmriprep_output_missing_in_space(simulated_dataset, fmriprep, tmp_path):
    config = config_for(
        simulated_dataset,
        tmp_path,
        "--derivatives",
        f"fmriprep={fmriprep}",
        "--space",
        "MNI152NLin2009cAsym",
    )
    with pytest.raises(MissingInputError, match="--output-spaces MNI152NLin2009cAsym"):
        collect_all_inputs(config, SPEC, ["01"])


def test_confounds_need_fmriprep(simulated_dataset, tmp_path):
    code = main(
        [str(simulated_dataset), str(tmp_path / "o"), "participant", "--confounds", "motion"]
    )
    assert code == 64


def test_bids_database_is_built_privately_then_reused(simulated_dataset, tmp_path):
    database = tmp_path / "db"
    layout = build_layout(simulated_dataset, database, ["01"])
    assert any(database.glob("*.sqlite"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".db.")]
    again = build_layout(simulated_dataset, database, ["01"])
    assert again.get_subjects() == layout.get_subjects() == ["01"]


def fake_validator(tmp_path, issues):
    script = tmp_path / "bids-validator-deno"
    report = json.dumps({"issues": {"issues": issues, "codeMessages": {}}, "summary": {}})
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{report}\nEOF\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_validator_errors_stop_and_warnings_log(tmp_path, monkeypatch, caplog):
    warning = {"code": "README_FILE_MISSING", "severity": "warning", "location": "/"}
    error = {"code": "EVENTS_TSV_MISSING", "severity": "error", "location": "/sub-01/x_bold.nii"}
    monkeypatch.setattr(validation, "find_validator", lambda: fake_validator(tmp_path, [warning]))
    validation.validate_bids(tmp_path)
    assert "README_FILE_MISSING" in caplog.text
    monkeypatch.setattr(
        validation, "find_validator", lambda: fake_validator(tmp_path, [warning, error])
    )
    with pytest.raises(BIDSValidationError, match="EVENTS_TSV_MISSING") as err:
        validation.validate_bids(tmp_path)
    assert "--skip-bids-validation" in str(err.value)


def test_validator_absent_is_skipped(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(validation, "find_validator", lambda: None)
    validation.validate_bids(tmp_path)
    assert "not installed" in caplog.text


def test_real_validator_passes_the_simulated_dataset(simulated_dataset):
    if validation.find_validator() is None:
        pytest.fail("bids-validator-deno is part of the test extra but is not installed")
    validation.validate_bids(simulated_dataset)


def test_unreadable_validator_output(tmp_path, monkeypatch):
    script = tmp_path / "bids-validator-deno"
    script.write_text("#!/bin/sh\necho not json\n")
    script.chmod(0o755)
    monkeypatch.setattr(validation, "find_validator", lambda: str(script))
    with pytest.raises(BIDSValidationError, match="could not check"):
        validation.validate_bids(tmp_path)
