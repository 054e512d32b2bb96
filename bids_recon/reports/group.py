"""The group report ``OUTPUT_DIR/group.html`` (self-contained; built from OUTPUT_DIR only)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from PIL import Image

from bids_recon import __version__
from bids_recon.io.atomic import atomic_write
from bids_recon.io.outputs import participant_dir
from bids_recon.reports.participant import data_uri, layer_table, participant_report_path
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


def decoding_rows(decoding: pd.DataFrame) -> dict[str, object]:
    """Mean profile correlation per layer (rows) and participant (columns), first test set."""
    if decoding.empty:
        return {"set": None, "columns": [], "rows": []}
    profile = decoding[decoding["metric"] == "profile_correlation"]
    first_set = profile["set"].iloc[0]
    profile = profile[profile["set"] == first_set]
    return {"set": first_set, **layer_table(profile.assign(column=profile["participant_id"]))}


def recon_grid(output_dir: Path, labels: Sequence[str]) -> list[dict[str, object]]:
    """Per set and stimulus: the oracle and each participant's reconstruction from decoding."""
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
            "columns": columns,
            "rows": [(stimulus, [row.get(c) for c in columns]) for stimulus, row in rows.items()],
        }
        for name, rows in cells.items()
    ]


def write_group_report(
    output_dir: Path,
    labels: Sequence[str],
    recon: pd.DataFrame,
    decoding: pd.DataFrame,
    missing: Mapping[str, Sequence[str]],
) -> Path:
    """Render and atomically write ``group.html``; returns its path."""
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
        decoding=decoding_rows(decoding),
        grids=recon_grid(output_dir, labels),
    )
    path = output_dir / "group.html"
    atomic_write(path, html)
    return path
