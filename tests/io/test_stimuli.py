"""The stimulus index: names to image files, inside the stimuli folder only."""

from __future__ import annotations

from PIL import Image

from bids_recon.io.stimuli import StimulusIndex


def test_names_resolve_with_any_listed_extension_and_never_leave_the_folder(tmp_path):
    root = tmp_path / "stimuli"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "sub" / "n01_1.JPEG", format="JPEG")
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.png")
    index = StimulusIndex(root, [".jpeg", ".png"])
    assert index.resolve("n01_1") == (root / "sub" / "n01_1.JPEG").resolve()
    assert index.resolve("missing") is None
    assert index.escapes("../secret.png") and index.resolve("../secret.png") is None
    assert not index.escapes("sub/n01_1.JPEG")
