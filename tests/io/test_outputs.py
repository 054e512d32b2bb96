"""Output names and writers."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from bids_recon.io.outputs import stimulus_labels, write_image


def test_stimulus_labels_are_unique_and_bids_safe():
    names = ["colorExpStim04_red_+", "colorExpStim04_red_X", "colorExpStim04red", "a b", "++"]
    labels = stimulus_labels(names)
    assert len(set(labels.values())) == len(names)
    assert all(label.isalnum() for label in labels.values())
    assert labels["colorExpStim04red"] == "colorExpStim04red2"  # collides with the first


def test_write_image_writes_png_then_its_sidecar(tmp_path):
    path = tmp_path / "sub-01" / "x_image.png"
    pixels = np.arange(12 * 10 * 3, dtype=np.uint8).reshape(12, 10, 3)
    write_image(path, pixels, {"Source": "oracle"})
    assert np.array_equal(np.asarray(Image.open(path)), pixels)
    assert json.loads(path.with_suffix(".json").read_text()) == {"Source": "oracle"}
    assert not list(path.parent.glob(".*.tmp"))
