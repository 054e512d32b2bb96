"""The group report ``OUTPUT_DIR/group.html``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from bids_recon import __version__
from bids_recon.io.atomic import atomic_write
from bids_recon.reports.participant import participant_report_path
from bids_recon.reports.render import render


def write_group_report(output_dir: Path, labels: Sequence[str]) -> Path:
    """Render and atomically write ``group.html`` for ``labels``; returns its path."""
    participants = []
    for label in labels:
        report = participant_report_path(output_dir, label)
        participants.append({"label": label, "report": report.name if report.exists() else None})
    html = render(
        "group.html",
        version=__version__,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        participants=participants,
    )
    path = output_dir / "group.html"
    atomic_write(path, html)
    return path
