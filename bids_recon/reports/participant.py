"""The participant report ``OUTPUT_DIR/sub-<label>.html``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from bids_recon.config import Config
from bids_recon.io.atomic import atomic_write
from bids_recon.reports.render import render
from bids_recon.specs import DatasetSpec


def participant_report_path(output_dir: Path, label: str) -> Path:
    """Where the report of ``sub-<label>`` goes (fMRIPrep's place: the output root)."""
    return output_dir / f"sub-{label}.html"


def decoding_table(rows: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """Feature-decoding accuracy as a layers × (ROI, set) table of mean profile correlations."""
    profile = [r for r in rows if r["metric"] == "profile_correlation"]
    columns = list(dict.fromkeys((str(r["roi"]), str(r["set"])) for r in profile))
    layers = list(dict.fromkeys(str(r["layer"]) for r in profile))
    value = {(str(r["layer"]), str(r["roi"]), str(r["set"])): r["value"] for r in profile}
    return {
        "columns": [f"{roi} / {name}" for roi, name in columns],
        "rows": [(layer, [value.get((layer, *c)) for c in columns]) for layer in layers],
    }


def write_participant_report(
    config: Config,
    spec: DatasetSpec,
    label: str,
    device: str,
    stages: Mapping[str, str],
    data: Sequence[Mapping[str, object]] = (),
    decoding: Sequence[Mapping[str, object]] = (),
    messages: Sequence[str] = (),
) -> Path:
    """Render and atomically write the participant report; returns its path."""
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
    html = render(
        "participant.html",
        label=label,
        version=config.version,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        bids_dir=str(config.bids_dir),
        spec_name=spec.name,
        spec_source=spec.source,
        network=config.network,
        device=device,
        seed=config.random_seed,
        run_uuid=config.run_uuid,
        sets=sets,
        stages=list(stages.items()),
        data=list(data),
        decoding=decoding_table(decoding),
        messages=list(messages),
    )
    path = participant_report_path(config.output_dir, label)
    atomic_write(path, html)
    return path
