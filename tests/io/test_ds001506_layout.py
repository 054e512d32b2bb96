"""The built-in spec on the real ds001506 events and sidecars, with small synthetic images."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import participant_args
from PIL import Image

from bids_recon.cli import main, parse_config
from bids_recon.specs import load_builtin_spec
from bids_recon.workflows.participant import collect_all_inputs
from bids_recon.workflows.samples import compute_samples

SPEC = load_builtin_spec("ds001506")
SHAPE = (8, 8, 6)
ROIS = ("V1d", "V1v", "V2d", "V2v", "V3d", "V3v", "hV4", "LOC", "FFA", "PPA", "HVC")


@pytest.fixture(scope="module")
def real_layout(ds001506_dir, tmp_path_factory) -> Path:
    """ds001506's real events and sidecars for sub-01, with random BOLD of the right length."""
    source = ds001506_dir
    root = tmp_path_factory.mktemp("ds001506") / "ds001506"
    root.mkdir()
    shutil.copy(source / "dataset_description.json", root)
    (root / "README").write_text("ds001506 events of sub-01 with random BOLD (bids_recon tests)\n")
    sidecar = json.loads(
        next(
            source.glob("sub-01/ses-perceptionNaturalImageTraining01/func/*_bold.json")
        ).read_text()
    )
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    names: set[str] = set()
    for events in sorted(source.glob("sub-01/ses-*/func/*_events.tsv")):
        target = root / events.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(events, target)
        table = pd.read_csv(events, sep="\t", dtype=str, keep_default_na=False)
        end = (table["onset"].astype(float) + table["duration"].astype(float)).max()
        n_volumes = math.ceil(end / sidecar["RepetitionTime"])
        data = rng.normal(1000, 10, (*SHAPE, n_volumes)).astype(np.int16)
        stem = target.name.removesuffix("_events.tsv")
        image = nib.Nifti1Image(data, affine)
        image.header.set_xyzt_units("mm", "sec")
        image.header.set_zooms((2.0, 2.0, 2.0, sidecar["RepetitionTime"]))
        nib.save(image, target.with_name(f"{stem}_bold.nii.gz"))
        task = "imagery" if "imagery" in stem else "perception"
        (target.with_name(f"{stem}_bold.json")).write_text(
            json.dumps({**sidecar, "TaskName": task})
        )
        if "stimulus_name" in table:
            names |= set(table["stimulus_name"]) - {"n/a"}
    names |= set(SPEC.sets["imagery"].events.stimulus_map.values()) - {"fixation"}
    anat = root / "sourcedata" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    for hemi in ("LH", "RH"):
        for roi in ROIS:
            mask = (rng.random(SHAPE) < 0.2).astype(np.uint8)
            nib.save(nib.Nifti1Image(mask, affine), anat / f"sub-01_mask_{hemi}_{roi}.nii.gz")
    stimuli = root / "stimuli"
    stimuli.mkdir()
    for name in names:
        Image.new("RGB", (8, 8), (128, 64, 32)).save(stimuli / f"{name}.JPEG", format="JPEG")
    return root


def test_spec_yields_the_block_counts_the_readme_implies(real_layout, tmp_path):
    config = parse_config(participant_args(real_layout, tmp_path))
    inputs = collect_all_inputs(config, SPEC, ["01"])["01"]
    result = compute_samples(config, SPEC, inputs)
    counts = {name: matrix.shape[0] for name, matrix in result.samples.items()}
    # 50 images + 5 repeats per natural run -> 50 samples; letters 10 + 1 repeat; imagery 26 trials
    assert counts == {"training": 50, "natural": 50, "artificial": 40, "letters": 10, "imagery": 26}
    assert (result.blocks["n_volumes"] == result.blocks["duration"] / 2).all()


def test_real_description_fails_schema_validation_with_hint(real_layout, tmp_path, caplog):
    """ds001506's dataset_description.json has Funding as a string: exit 16 unless skipped."""
    code = main([str(real_layout), str(tmp_path / "out"), "participant"])
    assert code == 16
    assert (
        "with 1 error(s)" in caplog.text and "(Funding): /dataset_description.json" in caplog.text
    )
    assert "--skip-bids-validation" in caplog.text
    assert not (tmp_path / "out").exists()
