"""Participant output files: decoded features, decoder metadata, evaluation tables.

Names are BIDS-like (``sub-<label>_roi-<roi>_set-<set>_feat-<layer>_desc-decoded_features.npy``)
with labels reduced to letters and digits; the original names are kept in the JSON sidecars.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_recon.errors import InputDataError
from bids_recon.io.atomic import atomic_write, atomic_write_json, update_lock
from bids_recon.io.derivatives import sanitize_label

FEATDECODING_COLUMNS = {
    "roi": "Region of interest whose voxels were decoded.",
    "set": "Test set (from the dataset spec).",
    "layer": "Network layer (original name).",
    "metric": "profile_correlation: mean over units of the correlation across stimuli of decoded "
    "and true features; pattern_correlation: mean over stimuli of the correlation across units "
    "(both z-scored with the training features' mean and SD).",
    "value": "Mean of the metric.",
    "n": "Number of units (profile) or stimuli (pattern) averaged.",
}


def participant_dir(output_dir: Path, label: str, datatype: str) -> Path:
    """``OUTPUT_DIR/sub-<label>/<datatype>``."""
    return output_dir / f"sub-{label}" / datatype


def decoded_features_path(
    output_dir: Path, label: str, roi: str, set_name: str, layer: str
) -> Path:
    """Path of the decoded features of one set and layer."""
    name = (
        f"sub-{label}_roi-{sanitize_label(roi)}_set-{sanitize_label(set_name)}"
        f"_feat-{sanitize_label(layer)}_desc-decoded_features.npy"
    )
    return participant_dir(output_dir, label, "func") / name


def write_array(path: Path, array: np.ndarray, sidecar: Mapping[str, Any]) -> None:
    """Write a .npy array and its JSON sidecar, each atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32))
    atomic_write(path, buffer.getvalue())
    atomic_write_json(path.with_suffix(".json"), dict(sidecar))


def write_table(path: Path, rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> None:
    """Write a TSV (``n/a`` for missing values) and its JSON data dictionary."""
    table = pd.DataFrame(list(rows), columns=list(columns))
    atomic_write(path, table.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.6g"))
    atomic_write_json(
        path.with_suffix(".json"), {name: {"Description": text} for name, text in columns.items()}
    )


def recon_eval_paths(output_dir: Path, label: str) -> tuple[Path, Path]:
    """The per-stimulus table and the per-set summary table of a participant."""
    func = participant_dir(output_dir, label, "func")
    return (
        func / f"sub-{label}_desc-recon_eval.tsv",
        func / f"sub-{label}_desc-reconsummary_eval.tsv",
    )


def blocks_table_path(output_dir: Path, label: str) -> Path:
    """``OUTPUT_DIR/sub-<label>/func/sub-<label>_desc-blocks_table.tsv``."""
    return output_dir / f"sub-{label}" / "func" / f"sub-{label}_desc-blocks_table.tsv"


def featdecoding_eval_path(output_dir: Path, label: str) -> Path:
    """The participant's feature-decoding accuracy table."""
    return participant_dir(output_dir, label, "func") / f"sub-{label}_desc-featdecoding_eval.tsv"


def decoder_path(output_dir: Path, label: str, roi: str, decoder: str) -> Path:
    """Decoder metadata of one ROI."""
    name = f"sub-{label}_roi-{sanitize_label(roi)}_desc-{sanitize_label(decoder)}_decoder.json"
    return participant_dir(output_dir, label, "models") / name


def stimulus_labels(names: Sequence[str]) -> dict[str, str]:
    """File labels of the stimulus names of one set: their letters and digits.

    A label depends on its name only, so it is the same in every run; ``stimuli.tsv`` and the
    sidecars map it back to the name.

    Raises
    ------
    InputDataError
        Two names would get the same label, or a name has no letter or digit (exit code 65).
    """
    labels: dict[str, str] = {}
    owners: dict[str, str] = {}
    for name in dict.fromkeys(names):
        label = sanitize_label(name)
        if not label:
            raise InputDataError(
                f"Stimulus name {name!r} has no letter or digit to make a file label from; "
                "rename it in the events files."
            )
        if owners.setdefault(label, name) != name:
            raise InputDataError(
                f"Stimulus names {owners[label]!r} and {name!r} would share the file label "
                f"'stim-{label}' (labels keep only letters and digits); rename one of them in "
                "the events files."
            )
        labels[name] = label
    return labels


def recon_image_path(
    output_dir: Path,
    label: str,
    set_name: str,
    stimulus_label: str,
    desc: str,
    roi: str | None = None,
) -> Path:
    """``sub-<label>/recon/sub-<label>[_roi-<roi>]_set-<set>_stim-<stim>_desc-<desc>_image.png``."""
    roi_part = f"_roi-{sanitize_label(roi)}" if roi else ""
    name = (
        f"sub-{label}{roi_part}_set-{sanitize_label(set_name)}_stim-{stimulus_label}"
        f"_desc-{desc}_image.png"
    )
    return participant_dir(output_dir, label, "recon") / name


def write_image(path: Path, image: np.ndarray, sidecar: Mapping[str, Any]) -> None:
    """Write an RGB uint8 image as PNG, then its JSON sidecar (the sidecar marks completion)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())
    atomic_write_json(path.with_suffix(".json"), dict(sidecar))


STIMULI_COLUMNS = {
    "stim_label": "Label in file names (stim-<label>): the name reduced to letters and digits.",
    "stimulus_name": "Original stimulus name, as in the events files.",
    "set": "Test or training set of the dataset spec.",
    "source_path": "Image file, relative to the stimuli folder.",
    "sha256": "SHA-256 of the image file.",
}


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def update_stimuli_table(
    output_dir: Path,
    stimuli_dir: Path,
    names_by_set: Mapping[str, Sequence[str]],
    files: Mapping[str, Path],
) -> Path:
    """Add this participant's stimuli to ``OUTPUT_DIR/stimuli.tsv`` (shared, locked, atomic)."""
    path = output_dir / "stimuli.tsv"
    rows = []
    for set_name, names in names_by_set.items():
        labels = stimulus_labels(names)
        for name in names:
            image = files.get(name)
            rows.append(
                {
                    "stim_label": labels[name],
                    "stimulus_name": name,
                    "set": set_name,
                    # the name below the folder, not a link's target (DataLad/git-annex
                    # datasets link every file into an annex outside the folder)
                    "source_path": os.path.relpath(image, stimuli_dir.resolve()) if image else None,
                    "sha256": _sha256(image) if image else None,
                }
            )
    with update_lock(path):
        table = pd.DataFrame(rows, columns=list(STIMULI_COLUMNS))
        if path.is_file():
            old = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=["n/a"])
            table = pd.concat([old, table], ignore_index=True)
        table = table.drop_duplicates(subset=["set", "stimulus_name"], keep="last")
        write_table(path, table.to_dict("records"), STIMULI_COLUMNS)
    return path
