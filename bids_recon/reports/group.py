"""The group report ``OUTPUT_DIR/group.html`` (self-contained; built from OUTPUT_DIR only)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup
from PIL import Image

from bids_recon import __version__
from bids_recon.io.atomic import atomic_write
from bids_recon.io.outputs import participant_dir
from bids_recon.reports.participant import data_uri, layer_table, participant_report_path
from bids_recon.reports.plots import interval_plot
from bids_recon.reports.render import render


def identification_rows(recon: pd.DataFrame) -> dict[str, object]:
    """Pixel identification per participant (rows) and set/source (columns), with CIs."""
    if recon.empty:
        return {"columns": [], "rows": []}
    table = recon[recon["metric"] == "pixel_identification"]
    columns = list(dict.fromkeys(zip(table["set"], table["source"], strict=True)))
    rows = []
    for participant, group in table.groupby("participant_id", sort=False):
        cells = {(r.set, r.source): (r.value, r.ci_low, r.ci_high) for r in group.itertuples()}
        rows.append((participant, [cells.get(c) for c in columns]))
    return {"columns": [f"{s} / {src}" for s, src in columns], "rows": rows}


def identification_plot(recon: pd.DataFrame) -> str:
    """SVG: decoded-image identification per test set, a point and CI per participant."""
    if recon.empty:
        return ""
    table = recon[(recon["metric"] == "pixel_identification") & (recon["source"] == "decoded")]
    sets = list(dict.fromkeys(table["set"]))
    series = {}
    for participant, group in table.groupby("participant_id", sort=False):
        cells = {r.set: (r.value, r.ci_low, r.ci_high) for r in group.itertuples()}
        series[participant] = [cells.get(s, (np.nan,) * 3) for s in sets]
    return interval_plot(sets, series, "pixel identification (decoded)", chance=0.5)


def decoding_rows(decoding: pd.DataFrame) -> dict[str, object]:
    """Mean profile correlation per layer (rows) and participant / set (columns)."""
    if decoding.empty:
        return {"columns": [], "rows": []}
    profile = decoding[decoding["metric"] == "profile_correlation"]
    if "roi" in profile:
        profile = profile[profile["roi"] == profile["roi"].iloc[0]]
    column = profile["participant_id"].astype(str) + " / " + profile["set"].astype(str)
    return layer_table(profile.assign(column=column))


def stimulus_images(output_dir: Path, stimuli_dir: Path) -> dict[tuple[str, str], str]:
    """(set, stimulus) → image (data URI) from ``stimuli.tsv``, when the stimuli folder is here."""
    path = output_dir / "stimuli.tsv"
    if not path.is_file() or not stimuli_dir.is_dir():
        return {}
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=["n/a"])
    images = {}
    for row in table.dropna(subset=["source_path"]).itertuples():
        try:
            with Image.open(stimuli_dir / row.source_path) as image:
                images[row.set, row.stimulus_name] = data_uri(image)
        except OSError:
            continue  # moved or unreadable: that stimulus shows no image
    return images


def recon_grid(
    output_dir: Path, labels: Sequence[str], stimuli: Mapping[tuple[str, str], str]
) -> list[dict[str, object]]:
    """Per set and stimulus: the stimulus, the oracle and each participant's reconstruction."""
    cells: dict[str, dict[str, dict[str, str]]] = {}
    for label in labels:
        for sidecar in sorted(participant_dir(output_dir, label, "recon").glob("*_image.json")):
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            column = "oracle" if meta["Source"] == "oracle" else f"sub-{label}"
            row = cells.setdefault(meta["Set"], {}).setdefault(meta["StimulusName"], {})
            if column not in row:
                with Image.open(sidecar.with_suffix(".png")) as image:
                    row[column] = data_uri(image)
    columns = ["oracle"] + [f"sub-{label}" for label in labels]
    return [
        {
            "set": name,
            "rows": [
                (
                    stimulus,
                    [("stimulus", stimuli.get((name, stimulus)))]
                    + [(c, row.get(c)) for c in columns],
                )
                for stimulus, row in rows.items()
            ],
        }
        for name, rows in cells.items()
    ]


def write_group_report(
    output_dir: Path,
    labels: Sequence[str],
    recon: pd.DataFrame,
    decoding: pd.DataFrame,
    stimuli_dir: Path,
    missing: Mapping[str, Sequence[str]],
) -> Path:
    """Render and atomically write ``group.html``; returns its path.

    Stimulus images are shown when ``stimuli_dir`` (``--stimuli-dir``) is reachable.
    """
    participants = []
    for label in labels:
        report = participant_report_path(output_dir, label)
        gaps = [what for what, who in missing.items() if label in who]
        participants.append(
            {"label": label, "report": report.name if report.exists() else None, "missing": gaps}
        )
    html = render(
        "group.html",
        version=__version__,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        participants=participants,
        identification=identification_rows(recon),
        identification_svg=Markup(identification_plot(recon)),
        decoding=decoding_rows(decoding),
        grids=recon_grid(output_dir, labels, stimulus_images(output_dir, stimuli_dir)),
    )
    path = output_dir / "group.html"
    atomic_write(path, html)
    return path
