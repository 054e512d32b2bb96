"""Bad input: a clear message naming the file, the documented exit code, nothing partial written."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import participant_args

from bids_recon.cli import main

RUN = (
    "sub-01/ses-perceptionNaturalImageTraining01/func/"
    "sub-01_ses-perceptionNaturalImageTraining01_task-perception_run-01"
)


@pytest.fixture()
def dataset(simulated_dataset, tmp_path) -> Path:
    copy = tmp_path / "ds"
    shutil.copytree(simulated_dataset, copy)
    return copy


def run_app(dataset: Path, tmp_path: Path, *extra: str) -> tuple[int, Path]:
    code = main(participant_args(dataset, tmp_path, "--stages", "samples", "report", *extra))
    return code, tmp_path / "out"


def assert_nothing_written(out: Path) -> None:
    assert not (out / "sub-01").exists()
    assert not (out / "sub-01.html").exists()


def expect(dataset, tmp_path, caplog, code, *names, extra=()):
    got, out = run_app(dataset, tmp_path, *extra)
    assert got == code, caplog.text
    for name in names:
        assert str(name) in caplog.text
    assert_nothing_written(out)


def test_missing_bold(dataset, tmp_path, caplog):
    (dataset / f"{RUN}_bold.nii.gz").unlink()
    expect(dataset, tmp_path, caplog, 66, f"{RUN}_events.tsv".split("/")[-1], "no BOLD image")


def test_annex_broken_symlink(dataset, tmp_path, caplog):
    bold = dataset / f"{RUN}_bold.nii.gz"
    bold.unlink()
    bold.symlink_to("../../.git/annex/objects/XX/YY/SHA256E-s1--abc.nii.gz")
    expect(dataset, tmp_path, caplog, 66, bold, "datalad get")


def test_annex_pointer_file(dataset, tmp_path, caplog):
    bold = dataset / f"{RUN}_bold.nii.gz"
    bold.write_text("/annex/objects/SHA256E-s200000--0123456789abcdef.nii.gz\n")
    expect(dataset, tmp_path, caplog, 66, bold, "datalad get")


def test_corrupt_bold(dataset, tmp_path, caplog):
    bold = dataset / f"{RUN}_bold.nii.gz"
    bold.write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    expect(dataset, tmp_path, caplog, 65, bold, "not a readable NIfTI")


def test_three_dimensional_bold(dataset, tmp_path, caplog):
    bold = dataset / f"{RUN}_bold.nii.gz"
    image = nib.load(bold)
    nib.save(nib.Nifti1Image(image.get_fdata()[..., 0], image.affine), bold)
    expect(dataset, tmp_path, caplog, 65, bold, "expected 4-D")


def edit_events(dataset: Path, change) -> Path:
    path = dataset / f"{RUN}_events.tsv"
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    change(table).to_csv(path, sep="\t", index=False)
    return path


def test_events_without_stimulus_column(dataset, tmp_path, caplog):
    path = edit_events(dataset, lambda t: t.drop(columns="stimulus_name"))
    expect(dataset, tmp_path, caplog, 65, path, "stimulus_name")


def test_events_with_non_numeric_onset(dataset, tmp_path, caplog):
    def change(table):
        table.loc[3, "onset"] = "fourty"
        return table

    path = edit_events(dataset, change)
    expect(dataset, tmp_path, caplog, 65, path, "non-numeric")


def test_events_past_the_end_of_the_run(dataset, tmp_path, caplog):
    def change(table):
        table.loc[len(table) - 2, "onset"] = "9000"
        return table

    path = edit_events(dataset, change)
    expect(dataset, tmp_path, caplog, 65, path, "past the end")


def test_stimulus_without_image(dataset, tmp_path, caplog):
    events = pd.read_csv(dataset / f"{RUN}_events.tsv", sep="\t", dtype=str)
    name = events.loc[events["event_type"] == "1", "stimulus_name"].iloc[0]
    next((dataset / "stimuli").rglob(f"{name}.*")).unlink()
    expect(dataset, tmp_path, caplog, 66, name, "not found")


@pytest.mark.parametrize("name", ["../../sub-01/secret", "/etc/passwd", "a/../../../b"])
def test_stimulus_names_cannot_leave_the_stimuli_folder(dataset, tmp_path, caplog, name):
    (dataset / "sub-01" / "secret.JPEG").write_bytes(b"not for the app")  # a real target

    def change(table):
        table.loc[table["event_type"] == "1", "stimulus_name"] = name
        return table

    path = edit_events(dataset, change)
    expect(dataset, tmp_path, caplog, 65, path, repr(name), "outside the stimuli folder")


def test_mask_that_does_not_overlap_the_bold_grid(dataset, tmp_path, caplog):
    mask_path = dataset / "sourcedata/sub-01/anat/sub-01_mask_LH_V1d.nii.gz"
    mask = nib.load(mask_path)
    far = mask.affine.copy()
    far[:3, 3] += 5000.0  # five metres away
    nib.save(nib.Nifti1Image(mask.get_fdata().astype(np.uint8), far), mask_path)
    expect(dataset, tmp_path, caplog, 65, mask_path, "empty on the BOLD grid")


def test_nan_voxels(dataset, tmp_path, caplog):
    bold = dataset / f"{RUN}_bold.nii.gz"
    image = nib.load(bold)
    data = image.get_fdata().astype(np.float32)
    mask = nib.load(dataset / "sourcedata/sub-01/anat/sub-01_mask_LH_V1d.nii.gz").get_fdata() > 0
    data[mask, 5] = np.nan
    nib.save(nib.Nifti1Image(data, image.affine), bold)  # float32: NaN survives
    expect(dataset, tmp_path, caplog, 65, bold, "NaN")


def test_no_training_blocks(dataset, tmp_path, caplog):
    for path in dataset.glob("sub-01/ses-perceptionNaturalImageTraining*/func/*_events.tsv"):
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        table.loc[table["event_type"] == "1", "event_type"] = "-3"
        table.to_csv(path, sep="\t", index=False)
    expect(dataset, tmp_path, caplog, 65, "no stimulus blocks")


def test_test_stimulus_also_in_training_warns(dataset, tmp_path, caplog):
    events = pd.read_csv(dataset / f"{RUN}_events.tsv", sep="\t", dtype=str)
    shared = events.loc[events["event_type"] == "1", "stimulus_name"].iloc[0]
    test_events = next(
        dataset.glob("sub-01/ses-perceptionNaturalImageTest01/func/*run-01_events.tsv")
    )
    table = pd.read_csv(test_events, sep="\t", dtype=str, keep_default_na=False)
    first = table.index[table["event_type"] == "1"][0]
    table.loc[first, "stimulus_name"] = shared
    table.to_csv(test_events, sep="\t", index=False)
    code, _ = run_app(dataset, tmp_path)
    assert code == 0
    assert "shares 1 stimulus" in caplog.text and shared in caplog.text
