"""Output names and writers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bids_recon.errors import InputDataError
from bids_recon.io.outputs import stimulus_labels, write_image


def test_stimulus_labels_keep_letters_and_digits_and_refuse_collisions():
    names = ["colorExpStim04_red_+", "n03954393_10038", "colorExpStim04_red_+"]
    assert stimulus_labels(names) == {
        "colorExpStim04_red_+": "colorExpStim04red",
        "n03954393_10038": "n0395439310038",
    }
    with pytest.raises(InputDataError, match="'colorExpStim04_red_-' would share"):
        stimulus_labels(["colorExpStim04_red_+", "colorExpStim04_red_-"])
    with pytest.raises(InputDataError, match="no letter or digit"):
        stimulus_labels(["++"])


def test_write_image_writes_png_then_its_sidecar(tmp_path):
    path = tmp_path / "sub-01" / "x_image.png"
    pixels = np.arange(12 * 10 * 3, dtype=np.uint8).reshape(12, 10, 3)
    write_image(path, pixels, {"Source": "oracle"})
    assert np.array_equal(np.asarray(Image.open(path)), pixels)
    assert json.loads(path.with_suffix(".json").read_text()) == {"Source": "oracle"}
    assert not list(path.parent.glob(".*.tmp"))


def test_source_dataset_is_a_bids_uri_linked_by_a_relative_path(tmp_path):
    from bids_recon.io.derivatives import BIDSIGNORE, derivative_description

    bids_dir, out = tmp_path / "data" / "ds", tmp_path / "derivatives" / "bids_recon"
    description = derivative_description(bids_dir, {"Name": "x"}, out)
    assert description["SourceDatasets"] == [{"URL": "bids:raw:"}]
    link = description["DatasetLinks"]["raw"]
    assert not link.startswith(("/", "file:")) and (out / link).resolve() == bids_dir.resolve()
    assert "descriptions.tsv" not in BIDSIGNORE  # a file BIDS defines
