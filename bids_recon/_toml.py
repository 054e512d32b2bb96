"""TOML reading (stdlib ``tomllib`` or ``tomli`` on Python 3.10) and writing (``tomli_w``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import tomli_w

from bids_recon.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; ``what`` names it in errors (``Config file x.toml``).

    Raises
    ------
    UsageError
        The file is missing, unreadable or not valid TOML (exit 64).
    """
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"{what}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{what}: cannot be read ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{what}: not valid TOML ({err})") from None


def dumps_toml(data: dict[str, Any]) -> str:
    """Serialize a mapping to TOML, dropping ``None`` values (TOML has no null)."""
    return tomli_w.dumps(_drop_none(data))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value
