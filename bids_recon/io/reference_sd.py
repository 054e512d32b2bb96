"""Reference feature SDs from a file (``--feature-sd``), e.g. the paper's published values."""

from __future__ import annotations

import json
from pathlib import Path

from bids_recon.errors import UsageError


def read_reference_sd(path: Path) -> dict[str, float]:
    """Read a JSON object ``{"layer": sd, ...}`` of positive numbers.

    Raises
    ------
    UsageError
        The file cannot be read, is not such an object, or has a non-positive value.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"--feature-sd {path}: cannot be read as JSON ({err})") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in data.values()
    ):
        raise UsageError(f'--feature-sd {path}: expected {{"layer": positive number, ...}}')
    return {str(k): float(v) for k, v in data.items()}
