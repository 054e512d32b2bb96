"""Input validation with the BIDS schema validator (bids-validator-deno), when installed.

As fMRIPrep does: errors stop the run with the validator's findings and a hint about
``--skip-bids-validation``; warnings are logged.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bids_recon.errors import BIDSValidationError

LOGGER = logging.getLogger(__name__)
VALIDATOR = "bids-validator-deno"


def find_validator() -> str | None:
    """Path of the validator: beside this Python (a venv's bin) or on PATH."""
    return shutil.which(VALIDATOR, path=str(Path(sys.executable).parent)) or shutil.which(VALIDATOR)


def validate_bids(bids_dir: Path, timeout: float = 600.0) -> None:
    """Validate ``bids_dir``; skip with a log message when the validator is not installed.

    Raises
    ------
    BIDSValidationError
        The validator reported errors (listed, with how to skip validation), or its output could
        not be understood.
    """
    validator = find_validator()
    if validator is None:
        LOGGER.info("%s is not installed: input BIDS validation skipped", VALIDATOR)
        return
    try:
        result = subprocess.run(
            [validator, str(bids_dir), "--format", "json"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        report = json.loads(result.stdout)
        issues = report["issues"]["issues"]
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as err:
        raise BIDSValidationError(
            f"The BIDS validator could not check {bids_dir} ({err}). "
            f"Use --skip-bids-validation to run without it."
        ) from err
    errors = [i for i in issues if i.get("severity") == "error"]
    warnings = Counter(i.get("code", "?") for i in issues if i.get("severity") == "warning")
    if warnings:
        LOGGER.warning(
            "BIDS validator warnings for %s: %s",
            bids_dir,
            ", ".join(f"{code} ({n})" for code, n in warnings.most_common()),
        )
    if errors:
        lines = [
            f"  {i.get('code', '?')}"
            f"{' (' + i['subCode'] + ')' if i.get('subCode') else ''}: "
            f"{i.get('location', '')}"
            for i in errors[:20]
        ]
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise BIDSValidationError(
            f"{bids_dir} failed BIDS validation with {len(errors)} error(s):\n"
            + "\n".join(lines)
            + more
            + "\nFix the dataset, or pass --skip-bids-validation to run anyway "
            "(e.g. ds001506, whose dataset_description.json has Funding as a string)."
        )
    LOGGER.info("BIDS validation of %s passed (%d warning(s))", bids_dir, sum(warnings.values()))
