"""The participant report ``OUTPUT_DIR/sub-<label>.html``, assembled from the outputs on disk.

Reading the outputs (not in-memory results) lets ``--reports-only`` rebuild a report at any
time. Images are inlined as base64 PNG, so the file is self-contained.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup
from PIL import Image

from bids_recon.config import Config
from bids_recon.io.atomic import atomic_write
from bids_recon.io.outputs import (
    blocks_table_path,
    featdecoding_eval_path,
    participant_dir,
    recon_eval_paths,
)
from bids_recon.io.stimuli import StimulusIndex
from bids_recon.recon.reconstruct import default_iterations
from bids_recon.reports.plots import line_plot
from bids_recon.reports.render import render
from bids_recon.specs import DatasetSpec

THUMBNAIL = 96


def participant_report_path(output_dir: Path, label: str) -> Path:
    """Where the report of ``sub-<label>`` goes (fMRIPrep's place: the output root)."""
    return output_dir / f"sub-{label}.html"


def data_uri(image: Image.Image) -> str:
    """A PNG data URI of an image scaled to the thumbnail size."""
    buffer = io.BytesIO()
    image.convert("RGB").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BICUBIC).save(
        buffer, format="PNG"
    )
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def data_table(output_dir: Path, label: str) -> list[dict[str, object]]:
    """Per set: runs, blocks and distinct stimuli, from the blocks provenance table."""
    path = blocks_table_path(output_dir, label)
    if not path.is_file():
        return []
    blocks = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return [
        {
            "set": name,
            "runs": group[["session", "run"]].drop_duplicates().shape[0],
            "blocks": len(group),
            "stimuli": group["stimulus"].nunique(),
        }
        for name, group in blocks.groupby("set", sort=False)
    ]


def roi_voxels(output_dir: Path, label: str) -> list[dict[str, object]]:
    """Voxels per ROI (after dropping zero-variance voxels), from the decoder metadata."""
    rows = []
    for path in sorted(participant_dir(output_dir, label, "models").glob("*_decoder.json")):
        meta = json.loads(path.read_text(encoding="utf-8"))
        rows.append({"roi": meta["ROI"], "voxels": meta["NVoxels"], "decoder": meta["Decoder"]})
    return rows


def network_provenance(output_dir: Path, label: str) -> dict[str, object]:
    """Weights and preprocessing of the feature network, and the generator prior, if recorded.

    From the first decoder JSON (weights) and the first generator reconstruction (latent bounds).
    """
    out: dict[str, object] = {}
    for path in sorted(participant_dir(output_dir, label, "models").glob("*_decoder.json")):
        out["weights"] = json.loads(path.read_text(encoding="utf-8")).get("Weights")
        break
    for sidecar in sorted(participant_dir(output_dir, label, "recon").glob("*_image.json")):
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if "LatentBounds" in meta:
            out["generator"] = {"file": meta["Generator"], "bounds": meta["LatentBounds"]}
            break
    return out


def decoding_plot(output_dir: Path, label: str) -> str:
    """SVG: mean profile correlation per layer, one line per ROI and set."""
    path = featdecoding_eval_path(output_dir, label)
    if not path.is_file():
        return ""
    table = pd.read_csv(path, sep="\t")
    profile = table[table["metric"] == "profile_correlation"]
    layers = list(dict.fromkeys(profile["layer"]))
    series = {
        f"{roi}/{name}": [group.set_index("layer")["value"].get(layer, np.nan) for layer in layers]
        for (roi, name), group in profile.groupby(["roi", "set"], sort=False)
    }
    return line_plot(series, layers, "mean profile correlation", "layer")


def loss_plot(output_dir: Path, label: str) -> str:
    """SVG: mean loss curve (log scale) of the reconstructions, per set and source.

    An image that converged early keeps its last loss for the rest of the curve.
    """
    curves: dict[str, list[list[float]]] = {}
    for sidecar in sorted(participant_dir(output_dir, label, "recon").glob("*_image.json")):
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        curves.setdefault(f"{meta['Set']}/{meta['Source']}", []).append(meta["LossCurve"])
    if not curves:
        return ""
    series = {}
    for name, group in curves.items():
        length = max(len(c) for c in group)
        series[name] = list(np.mean([c + c[-1:] * (length - len(c)) for c in group], axis=0))
    return line_plot(series, None, "mean feature loss", "iteration", log_y=True)


def decoding_table(output_dir: Path, label: str) -> dict[str, object]:
    """Mean profile correlation as a layers × (ROI, set) table, from the evaluation TSV."""
    path = featdecoding_eval_path(output_dir, label)
    if not path.is_file():
        return {"columns": [], "rows": []}
    table = pd.read_csv(path, sep="\t")
    profile = table[table["metric"] == "profile_correlation"]
    return layer_table(profile.assign(column=profile["roi"] + " / " + profile["set"]))


def layer_table(profile: pd.DataFrame) -> dict[str, object]:
    """Pivot rows with ``layer``, ``column`` and ``value`` into layers × columns, in file order."""
    columns = list(dict.fromkeys(profile["column"]))
    value = {(r.layer, r.column): r.value for r in profile.itertuples()}
    return {
        "columns": columns,
        "rows": [
            (layer, [value.get((layer, c)) for c in columns])
            for layer in dict.fromkeys(profile["layer"])
        ],
    }


def identification_table(output_dir: Path, label: str) -> list[dict[str, object]]:
    """Reconstruction metrics per set and source with CIs, from the summary table."""
    path = recon_eval_paths(output_dir, label)[1]
    if not path.is_file():
        return []
    table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
    shown = table[table["metric"].isin(["pixel_identification", "pixel_correlation", "ssim"])]
    return shown.to_dict("records")


def recon_grids(
    output_dir: Path,
    label: str,
    stimuli: StimulusIndex,
    no_image: Mapping[str, Collection[str]] | None = None,
) -> list[dict[str, object]]:
    """Per set, one row per stimulus: the stimulus, its oracle and its reconstructions.

    Stimuli that the spec marks as having no image (``no_image``, per set: a fixation
    target) never show one, whatever the stimuli folder holds.
    """
    sets: dict[str, dict[str, dict[str, object]]] = {}
    for sidecar in sorted(participant_dir(output_dir, label, "recon").glob("*_image.json")):
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        row = sets.setdefault(meta["Set"], {}).setdefault(
            meta["StimulusName"], {"stimulus": meta["StimulusName"], "oracle": None, "decoded": []}
        )
        with Image.open(sidecar.with_suffix(".png")) as image:
            uri = data_uri(image)
        if meta["Source"] == "oracle":
            row["oracle"] = uri
        else:
            row["decoded"].append((f"decoded {meta.get('ROI') or ''}".strip(), uri))
    grids = []
    for name, rows in sets.items():
        for row in rows.values():
            shown = row["stimulus"] not in (no_image or {}).get(name, ())
            path = stimuli.resolve(str(row["stimulus"])) if shown else None
            if path is not None:
                with Image.open(path) as image:
                    row["image"] = data_uri(image)
            else:
                row["image"] = None
        grids.append({"set": name, "rows": list(rows.values())})
    return grids


def run_command(config: Config) -> str:
    """The command line of this run, from the first line of its log (empty if there is none)."""
    path = config.logs_dir / f"bids_recon-{config.run_uuid}.log"
    marker = f"bids_recon v{config.version}: "
    try:
        with path.open(encoding="utf-8") as handle:
            first = handle.readline()
    except OSError:
        return ""
    return first.split(marker, 1)[1].strip() if marker in first else ""


def methods_text(config: Config, spec: DatasetSpec) -> list[str]:
    """The methods boilerplate of this run, one paragraph per stage that ran, with citations."""
    test_sets = ", ".join(s.name for s in spec.test_sets)
    rois = ", ".join(config.roi) or "the spec's default ROI"
    decoder = (
        "ridge regression (dual form, one regularization per layer chosen by "
        f"{config.cv_folds}-fold cross-validation over runs, no image on both sides of a fold)"
        if config.decoder == "ridge"
        else f"the voxel-selection decoder of Shen et al. (2019) ({config.selection_voxels} voxels "
        f"per unit, alpha {config.selection_alpha:g})"
    )
    method = {
        "lbfgs": "L-BFGS on the pixels within their valid range (Liu & Nocedal, 1989)",
        "gd": "gradient descent with momentum on the pixels",
        "generator": "gradient descent on the input of the fc7 image generator of Dosovitskiy "
        "& Brox (2016), within its activation bounds",
    }[config.recon_method]
    iterations = config.recon_iterations or default_iterations(config.network)
    text = [
        f"Images were reconstructed from fMRI with bids_recon {config.version}, after the deep "
        "image reconstruction of Shen, Horikawa, Majima & Kamitani (2019, PLoS Comput Biol 15: "
        "e1006633).",
        f"Samples (dataset spec {spec.name}): each BOLD run was detrended and z-scored per voxel, "
        f"shifted by a haemodynamic delay of {spec.fmri.hrf_delay:g} s, and the volumes of each "
        "stimulus block were averaged into one sample; test samples were averaged over the "
        f"repetitions of each stimulus. Training set: {spec.training_set.name}; test sets: "
        f"{test_sets}.",
    ]
    if "decode" in config.stages:
        text.append(
            f"The stimuli's features were computed by {config.network} (pre-ReLU activations of "
            "every layer; VGG19: Simonyan & Zisserman, 2015) and decoded from the voxels of "
            f"{rois} by {decoder}. Decoded features were rescaled to the mean feature SD of the "
            "training images before reconstruction."
        )
    if "recon" in config.stages:
        text.append(
            f"Reconstructions minimized the squared difference between the features of the "
            f"image and the decoded ones over all layers (weights inversely proportional to each "
            f"layer's squared norm) by {method}, {iterations} iterations; the same optimization "
            "of the stimuli's true features gives the upper bound (oracle). Accuracy is pairwise "
            "identification by pixel correlation (chance 0.5) with bootstrap 95% confidence "
            "intervals and a one-sided Wilcoxon signed-rank test against chance."
        )
    return text


def write_participant_report(
    config: Config,
    spec: DatasetSpec,
    label: str,
    device: str,
    stages: Mapping[str, str],
    messages: Sequence[str] = (),
    elapsed: float | None = None,
) -> Path:
    """Render and atomically write the participant report; returns its path.

    ``elapsed``: seconds the participant's run took (shown with the command line).
    """
    sets = [
        {
            "name": s.name,
            "role": s.role,
            "filters": ", ".join(f"{k}={v}" for k, v in s.filters.items()),
            "blocks": f"{s.events.type_column} in {list(s.events.block_types)}",
            "stimulus_column": s.events.stimulus_column,
        }
        for s in spec.sets.values()
    ]
    stimuli = StimulusIndex(config.resolved_stimuli_dir, spec.stimulus_extensions)
    html = render(
        "participant.html",
        label=label,
        version=config.version,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        bids_dir=str(config.bids_dir),
        spec_name=spec.name,
        spec_source=spec.source,
        network=config.network,
        provenance=network_provenance(config.output_dir, label),
        device=device,
        seed=config.random_seed,
        run_uuid=config.run_uuid,
        command=run_command(config) or "n/a",
        elapsed="n/a" if elapsed is None else f"{elapsed:.0f} s",
        methods=methods_text(config, spec),
        sets=sets,
        stages=list(stages.items()),
        data=data_table(config.output_dir, label),
        decoding=decoding_table(config.output_dir, label),
        recons=recon_grids(
            config.output_dir,
            label,
            stimuli,
            {s.name: s.events.no_image for s in spec.sets.values()},
        ),
        rois=roi_voxels(config.output_dir, label),
        decoding_svg=Markup(decoding_plot(config.output_dir, label)),
        loss_svg=Markup(loss_plot(config.output_dir, label)),
        identification=identification_table(config.output_dir, label),
        messages=list(messages),
    )
    path = participant_report_path(config.output_dir, label)
    atomic_write(path, html)
    return path
