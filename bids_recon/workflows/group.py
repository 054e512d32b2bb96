"""Group level: tables and report across participants. Reads only OUTPUT_DIR, never BIDS_DIR."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.config import Config
from bids_recon.errors import InputDataError, MissingInputError
from bids_recon.evaluation.metrics import bootstrap_ci
from bids_recon.io.atomic import atomic_write
from bids_recon.io.outputs import featdecoding_eval_path, recon_eval_paths, write_table
from bids_recon.log import add_log_file, remove_log_file
from bids_recon.reports.group import write_group_report
from bids_recon.workflows.evaluate import RECON_SUMMARY_COLUMNS

LOGGER = logging.getLogger(__name__)
GROUP_ID = "group"

GROUP_RECON_COLUMNS = {
    "participant_id": f"sub-<label>, or '{GROUP_ID}' for the mean over participants.",
    **{k: v for k, v in RECON_SUMMARY_COLUMNS.items() if k != "n"},
    "n": "Stimuli (participant rows) or participants (group rows) averaged.",
}
GROUP_FEATDECODING_COLUMNS = {
    "participant_id": GROUP_RECON_COLUMNS["participant_id"],
    "roi": "Region of interest whose voxels were decoded.",
    "set": "Test set.",
    "layer": "Network layer.",
    "metric": "profile_correlation or pattern_correlation (see the participant tables).",
    "value": "Mean of the metric.",
    "ci_low": "Group rows: lower bound of the bootstrap 95% CI over participants; else n/a.",
    "ci_high": "Group rows: upper bound of the bootstrap 95% CI over participants; else n/a.",
    "n": "Units or stimuli (participant rows) or participants (group rows) averaged.",
}


def participant_labels(output_dir: Path) -> list[str]:
    """Labels of the participants with outputs (``sub-*`` folders or reports)."""
    return sorted(
        {
            p.name.removeprefix("sub-").removesuffix(".html")
            for p in output_dir.glob("sub-*")
            if p.is_dir() or p.suffix == ".html"
        }
    )


def _check_output_dataset(output_dir: Path) -> None:
    description = output_dir / "dataset_description.json"
    try:
        generated_by = json.loads(description.read_text(encoding="utf-8"))["GeneratedBy"][0]
        ok = generated_by.get("Name") == "bids_recon"
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise MissingInputError(
            f"{output_dir} is not a bids_recon output dataset ({description} missing or not "
            f"written by bids_recon): run the participant level first."
        )


RECON_KEYS = ["roi", "set", "source", "metric", "layer"]
DECODING_KEYS = ["roi", "set", "layer", "metric"]


def read_participant_table(path: Path, keys: list[str]) -> pd.DataFrame:
    """A participant's evaluation table, checked to be whole: columns, types, last line.

    Raises
    ------
    InputDataError
        The file is truncated, not a TSV table, lacks columns, or has non-numeric values or
        rows without set or metric (the message names the file).
    """
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        raise InputDataError(f"{path}: truncated (the last line is incomplete)")
    try:
        table = pd.read_csv(io.BytesIO(data), sep="\t", na_values=["n/a"], keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputDataError(f"{path}: not a valid TSV table ({err})") from None
    missing = [c for c in [*keys, "value", "n"] if c not in table.columns]
    if missing:
        raise InputDataError(f"{path}: lacks the column(s) {missing}")
    for column in ("value", "n"):
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = numbers.isna() & table[column].notna()
        if bad.any():
            line = int(np.flatnonzero(bad)[0]) + 2
            raise InputDataError(
                f"{path}: line {line}: {column} {table[column][bad].iloc[0]!r} is not a number"
            )
        table[column] = numbers
    required = [c for c in ("set", "metric", "source") if c in keys]
    empty = table[required].isna().any(axis=1)
    if empty.any():
        line = int(np.flatnonzero(empty)[0]) + 2
        raise InputDataError(f"{path}: line {line} has no {' or '.join(required)}")
    return table


def _collect(paths: dict[str, Path], keys: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Concatenate participants' tables.

    Also returns the participants whose table is missing, and those whose table is unreadable
    (logged with the reason and left out).
    """
    frames, missing, unreadable = [], [], []
    for label, path in paths.items():
        if not path.is_file():
            missing.append(label)
            continue
        try:
            table = read_participant_table(path, keys)
        except InputDataError as err:
            LOGGER.warning("Left out of the group results (unreadable): %s", err)
            unreadable.append(label)
            continue
        frames.append(table.assign(participant_id=f"sub-{label}"))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame, missing, unreadable


def _with_group_rows(table: pd.DataFrame, keys: list[str], seed: int) -> pd.DataFrame:
    """Append the mean over participants of each key, with a bootstrap CI over participants."""
    rows = []
    for key, group in table.groupby(keys, sort=False, dropna=False):
        values = group["value"].to_numpy(dtype=float)
        low, high = bootstrap_ci(values, seed=seed)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "participant_id": GROUP_ID,
                "value": float(np.nanmean(values)),
                "ci_low": low,
                "ci_high": high,
                "n": int(np.isfinite(values).sum()),
            }
        )
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


def run_group_level(config: Config) -> None:
    """Write the group tables and report from the participant outputs in OUTPUT_DIR.

    Participants without some outputs are listed in the report, not crashed on.

    Raises
    ------
    MissingInputError
        OUTPUT_DIR is not a bids_recon output dataset or holds no participant outputs.
    """
    output_dir = config.output_dir
    _check_output_dataset(output_dir)
    labels = participant_labels(output_dir)
    if not labels:
        raise MissingInputError(f"No participant outputs (sub-*) in {output_dir}.")
    log_file = add_log_file(config.logs_dir / f"bids_recon-{config.run_uuid}.log")
    try:
        atomic_write(config.logs_dir / f"config-{config.run_uuid}.toml", config.to_toml())
        recon, no_recon, bad_recon = _collect(
            {x: recon_eval_paths(output_dir, x)[1] for x in labels}, RECON_KEYS
        )
        decoding, no_decoding, bad_decoding = _collect(
            {x: featdecoding_eval_path(output_dir, x) for x in labels}, DECODING_KEYS
        )
        if not recon.empty:
            recon = _with_group_rows(recon, RECON_KEYS, config.random_seed)
        if not decoding.empty:
            decoding = _with_group_rows(decoding, DECODING_KEYS, config.random_seed)
        write_table(
            output_dir / "group_desc-recon_eval.tsv", recon.to_dict("records"), GROUP_RECON_COLUMNS
        )
        write_table(
            output_dir / "group_desc-featdecoding_eval.tsv",
            decoding.to_dict("records"),
            GROUP_FEATDECODING_COLUMNS,
        )
        for label in sorted(set(no_recon) | set(no_decoding)):
            LOGGER.warning(
                "sub-%s has no %s table: it is left out of those group results",
                label,
                "reconstruction" if label in no_recon else "decoding",
            )
        path = write_group_report(
            output_dir,
            labels,
            recon,
            decoding,
            config.resolved_stimuli_dir,
            {
                "reconstruction": no_recon,
                "decoding": no_decoding,
                "reconstruction table unreadable (left out)": bad_recon,
                "decoding table unreadable (left out)": bad_decoding,
            },
        )
        LOGGER.info("Group report for %d participant(s): %s", len(labels), path)
    finally:
        remove_log_file(log_file)
