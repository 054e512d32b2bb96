"""The BIDS-Derivatives output dataset: dataset_description.json, .bidsignore, README, names.

OUTPUT_DIR is a derivative dataset from the first run (BIDS_APPS.md section 2). Dataset-level
files are shared by concurrent participant jobs, so they are written with
:func:`bids_recon.io.atomic.write_shared`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from bids_recon import __version__
from bids_recon.io.atomic import to_json, write_shared

LOGGER = logging.getLogger(__name__)

CODE_URL = "https://github.com/bids-recon/bids_recon"
BIDS_VERSION = "1.10.0"

# Outputs that the BIDS schema has no suffix or extension for (BIDS_APPS.md section 2.3).
BIDSIGNORE = (
    "*.html",
    "logs",  # folders without a trailing slash: the schema validator matches them so
    "**/recon",
    "**/models",
    "*_features.npy",
    "*_features.json",
    "*_decoder.json",
    "*_eval.tsv",
    "*_eval.json",
    "*_table.tsv",
    "*_table.json",
    "group_*",
    "stimuli.tsv",
    "stimuli.json",
)

README_TEXT = """\
# bids_recon outputs

Deep image reconstruction from fMRI (Shen, Horikawa, Majima & Kamitani 2019,
doi:10.1371/journal.pcbi.1006633), computed by bids_recon {version}.

- `sub-<label>.html`: participant reports (self-contained).
- `sub-<label>/`: per-participant tables, decoded features, decoders and reconstructions.
- `group_*.tsv`, `group.html`: evaluation across participants.
- `logs/`: run logs and the configuration of every run.

File names are BIDS-like: a stimulus label is its name reduced to letters and digits
(`colorExpStim04_red_+` → `colorExpStim04red`); `stimuli.tsv` and the JSON sidecars map labels
back to names, and a dataset where two names would get one label is refused. Files the BIDS
schema does not describe are listed in `.bidsignore`.
"""


def container_description() -> dict[str, str] | None:
    """Describe the container this process runs in, from variables baked into the images."""
    tag = os.environ.get("BIDS_RECON_CONTAINER_TAG")
    for variable in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        if os.environ.get(variable):
            return {"Type": "singularity", "URI": os.environ[variable]}
    if tag:
        return {"Type": "docker", "Tag": tag}
    return None


def read_source_description(bids_dir: Path) -> dict[str, Any]:
    """The input dataset's dataset_description.json, or an empty dict when absent or invalid."""
    path = bids_dir / "dataset_description.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        LOGGER.warning("Could not read %s (%s); SourceDatasets will be incomplete.", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def derivative_description(
    bids_dir: Path, source: dict[str, Any], output_dir: Path
) -> dict[str, Any]:
    """The derivative dataset_description.json for outputs computed from ``bids_dir``.

    The input is the BIDS URI ``bids:raw:`` with ``DatasetLinks.raw`` its path relative to
    ``output_dir`` (as fMRIPrep writes it), or its DOI when it has one.
    """
    generated_by: dict[str, Any] = {
        "Name": "bids_recon",
        "Version": __version__,
        "CodeURL": CODE_URL,
    }
    container = container_description()
    if container:
        generated_by["Container"] = container
    description: dict[str, Any] = {
        "Name": "bids_recon - Deep image reconstruction outputs for "
        + str(source.get("Name", bids_dir.name)),
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
    }
    source_dataset: dict[str, str] = {"URL": "bids:raw:"}
    doi = source.get("DatasetDOI")
    if isinstance(doi, str) and doi:
        bare = doi.removeprefix("doi:")
        source_dataset = {"URL": f"https://doi.org/{bare}", "DOI": f"doi:{bare}"}
        version = re.search(r"\.v(\d+(?:\.\d+)*)$", bare)
        if version:
            source_dataset["Version"] = version.group(1)
    description["SourceDatasets"] = [source_dataset]
    description["DatasetLinks"] = {
        "raw": os.path.relpath(bids_dir.absolute(), output_dir.absolute())
    }
    if isinstance(source.get("License"), str) and source["License"]:
        description["License"] = source["License"]
    description["HowToAcknowledge"] = (
        "Cite Shen, Horikawa, Majima & Kamitani (2019), doi:10.1371/journal.pcbi.1006633, "
        "and bids_recon."
    )
    return description


DESCRIPTIONS = {
    "blocks": "Table of the stimulus blocks used for the samples (one row per block).",
    "decoded": "DNN features decoded from brain activity (raw units, before SD correction).",
    "featdecoding": "Feature decoding accuracy (profile and pattern correlation per layer).",
    "ridge": "Dual-form ridge decoder (alpha per layer by cross-validation over runs).",
    "voxelselection": "The paper's decoder: per-unit voxel selection and ridge (FastL2LiR).",
    "recon": "Reconstruction from decoded features (_image) and its metrics per stimulus (_eval).",
    "oracle": "Image reconstructed from the stimulus' true features (upper bound).",
    "reconsummary": "Reconstruction metrics per set with bootstrap confidence intervals.",
}


def init_output_dataset(output_dir: Path, bids_dir: Path) -> None:
    """Make ``output_dir`` a BIDS-Derivatives dataset (idempotent, safe under concurrency)."""
    description = derivative_description(bids_dir, read_source_description(bids_dir), output_dir)
    write_shared(output_dir / "dataset_description.json", to_json(description))
    write_shared(output_dir / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")
    write_shared(output_dir / "README.md", README_TEXT.format(version=__version__))
    write_shared(
        output_dir / "descriptions.tsv",
        "desc_id\tdescription\n"
        + "".join(f"desc-{key}\t{text}\n" for key, text in DESCRIPTIONS.items()),
    )
    (output_dir / "logs").mkdir(parents=True, exist_ok=True)


def sanitize_label(name: str) -> str:
    """Reduce a name to letters and digits: ``n03954393_10038`` → ``n0395439310038``."""
    return re.sub(r"[^0-9a-zA-Z]", "", name)
