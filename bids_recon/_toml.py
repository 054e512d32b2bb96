"""TOML reading (stdlib ``tomllib`` or ``tomli`` on Python 3.10) and writing (``tomli_w``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file.

    Raises
    ------
    OSError
        The file cannot be read.
    TOMLDecodeError
        The file is not valid TOML.

    """
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def dumps_toml(data: dict[str, Any]) -> str:
    """Serialize a mapping to TOML, dropping ``None`` values (TOML has no null)."""
    return tomli_w.dumps(_drop_none(data))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value
