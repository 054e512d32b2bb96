"""The lab's preprocessed fMRI (bdpy BData), read without bdpy, from files bdpy wrote.

``tests/data/bdata`` was written by bdpy's own ``BData.save`` (scripts/make_bdata_fixtures.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers import participant_args
from PIL import Image

from bids_recon.cli import main
from bids_recon.errors import InputDataError, MissingInputError
from bids_recon.io.bdata import read_bdata, stimulus_names

DATA = Path(__file__).resolve().parents[1] / "data" / "bdata"
TRAIN = DATA / "sub-01_perceptionNaturalImageTraining_original_VC.h5"
TEST = DATA / "sub-01_perceptionNaturalImageTest_original_VC.h5"


def test_fields_of_a_file_written_by_bdpy():
    data = read_bdata(TRAIN)
    assert data.dataset.shape == (24, 33) and "VoxelData" in data.keys
    assert data.flags("VoxelData").sum() == 30 and data.flags("ROI_LVC").sum() == 20
    assert sorted(set(data.column("Run"))) == [1.0, 2.0, 3.0]
    positions = data.positions(data.flags("ROI_VC"))
    assert positions.shape == (30, 3) and positions.max() == 8.0
    with pytest.raises(InputDataError, match="no metadata key 'ROI_FFA'"):
        data.flags("ROI_FFA")


def test_stimulus_names_from_vmap_imagenet_ids_and_events_table():
    train = stimulus_names(read_bdata(TRAIN), {})
    assert len(set(train)) == 12 and all(n.startswith("n01") for n in train)
    assert "n01000111_1001" in train  # id 1000111.001001: synset, then image number
    test = read_bdata(TEST)
    assert stimulus_names(test, {})[:2] == ["n02000000_2000", "n02000333_2001"]  # the vmap
    renamed = stimulus_names(read_bdata(TRAIN), {"1000111.001001": "my_image"})
    assert "my_image" in renamed and "n01000111_1001" not in renamed


def test_unmappable_labels_and_bad_files_are_refused(tmp_path):
    bad = tmp_path / "bad.h5"
    shutil.copy(TRAIN, bad)
    with h5py.File(bad, "r+") as h5:
        keys = [k.decode() for k in h5["metadata/key"][:]]
        column = int(np.flatnonzero(h5["metadata/value"][keys.index("stimulus_id")] == 1)[0])
        h5["dataset"][0, column] = 3.0  # a shape's id: not an ImageNet image
    with pytest.raises(InputDataError, match=r"bad.h5: stimulus_id value\(s\) \['3.000000'\]"):
        stimulus_names(read_bdata(bad), {})
    assert stimulus_names(read_bdata(bad), {"3.000000": "shape03"})[0] == "shape03"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = np.zeros(3)
    with pytest.raises(InputDataError, match="not a BData file"):
        read_bdata(other)
    (tmp_path / "text.h5").write_text("no")
    with pytest.raises(InputDataError, match="HDF5"):
        read_bdata(tmp_path / "text.h5")
    with pytest.raises(MissingInputError):
        read_bdata(tmp_path / "absent.h5")


@pytest.fixture(scope="module")
def bids_and_stimuli(tmp_path_factory):
    """A BIDS folder with sub-01 only, and images for every stimulus of the BData files."""
    root = tmp_path_factory.mktemp("bdata")
    bids = root / "bids"
    (bids / "sub-01").mkdir(parents=True)
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "BIDSVersion": "1.10.0"})
    )
    stimuli = root / "stimuli"
    stimuli.mkdir()
    rng = np.random.default_rng(0)
    for path in (TRAIN, TEST):
        for name in set(stimulus_names(read_bdata(path), {})):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(stimuli / f"{name}.png")
    return bids, stimuli


def test_participant_run_from_bdata_files(bids_and_stimuli, tmp_path, caplog):
    bids, stimuli = bids_and_stimuli
    args = ["--derivatives", f"bdata={DATA}", "--dataset-spec", "ds001506"]
    args += ["--stimuli-dir", stimuli, "--network", "builtin", "--layers", "fc2"]
    args += ["--roi", "VC", "LVC", "--recon-iterations", "2", "--alphas", "1", "100"]
    assert main(participant_args(bids, tmp_path, *args)) == 0
    out = tmp_path / "out" / "sub-01"
    blocks = pd.read_csv(out / "func" / "sub-01_desc-blocks_table.tsv", sep="\t", dtype=str)
    assert (blocks["set"] == "training").sum() == 24 and (blocks["set"] == "natural").sum() == 10
    assert set(blocks["run"]) == {"1", "2", "3"}
    decoder = json.loads((out / "models" / "sub-01_roi-LVC_desc-ridge_decoder.json").read_text())
    assert decoder["NVoxels"] == 20 and decoder["NTrainingBlocks"] == 24
    assert len(list((out / "recon").glob("*_set-natural_*_desc-recon_image.png"))) == 10
    assert "test set 'imagery' skipped: it has no data" in caplog.text
    assert main(participant_args(bids, tmp_path / "b", *args, "--sets", "letters")) == 18
    assert "No BData file of sub-01 for set 'letters'" in caplog.text


def test_files_of_different_voxels_are_refused(bids_and_stimuli, tmp_path, caplog):
    bids, stimuli = bids_and_stimuli
    folder = tmp_path / "bdata"
    folder.mkdir()
    shutil.copy(TRAIN, folder / TRAIN.name)
    shutil.copy(TEST, folder / TEST.name)
    with h5py.File(folder / TEST.name, "r+") as h5:
        keys = [k.decode() for k in h5["metadata/key"][:]]
        h5["metadata/value"][keys.index("voxel_x"), 0] += 2.0  # another voxel
    args = ["--derivatives", f"bdata={folder}", "--dataset-spec", "ds001506"]
    args += ["--stimuli-dir", stimuli, "--network", "builtin", "--stages", "samples"]
    assert main(participant_args(bids, tmp_path, *args)) == 65
    assert "does not hold the ROI voxels" in caplog.text
