"""Helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path


def participant_args(dataset: Path, root: Path, *extra: str | Path) -> list[str]:
    """Arguments of a participant run into ``root/out`` with work folder ``root/work``.

    BIDS validation is skipped: tests of the validator call it explicitly.
    """
    return [
        str(dataset),
        str(root / "out"),
        "participant",
        "-w",
        str(root / "work"),
        "--skip-bids-validation",
        *map(str, extra),
    ]
