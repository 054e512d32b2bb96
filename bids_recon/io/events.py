"""Events files → stimulus blocks.

Cells are read as text, so that stimulus names stay strings and malformed cells (ds001506's
``on/a`` in a rest row) cannot break numeric parsing of other columns. Rows whose type is one of
the spec's block types become blocks; one-back repeats are dropped unless the spec keeps them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from bids_recon.errors import InputDataError, MissingInputError
from bids_recon.specs import EventSelection, canonical_code

BLOCK_COLUMNS = ["onset", "duration", "stimulus", "is_repeat"]
MISSING = {"", "n/a", "nan", "none"}


def read_events(path: Path) -> pd.DataFrame:
    """Read an events.tsv with every cell as text.

    Raises
    ------
    MissingInputError
        The file is missing or unreadable.
    InputDataError
        The file is not a tab-separated table with ``onset`` and ``duration`` columns.
    """
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise MissingInputError(f"Events file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise MissingInputError(f"Events file {path} cannot be read: {err}") from None
    except pd.errors.ParserError as err:
        raise InputDataError(f"Events file {path} is not a valid TSV table: {err}") from None
    missing = [c for c in ("onset", "duration") if c not in table.columns]
    if missing:
        raise InputDataError(
            f"Events file {path} lacks the required column(s) {missing}; "
            f"it has {list(table.columns)}."
        )
    return table


def events_to_blocks(events: pd.DataFrame, selection: EventSelection, path: Path) -> pd.DataFrame:
    """Select the stimulus blocks of one run.

    Parameters
    ----------
    events : DataFrame
        From :func:`read_events` (text cells).
    selection : EventSelection
        The set's event rules from the dataset spec.
    path : Path
        The events file, named in error messages.

    Returns
    -------
    DataFrame
        One row per block with ``onset``, ``duration`` (float seconds), ``stimulus`` (the name,
        after ``stimulus_map``) and ``is_repeat``, in file order.

    Raises
    ------
    InputDataError
        A needed column is missing, a block has a non-numeric or negative onset or duration, or
        a block has no stimulus name or one that ``stimulus_map`` does not know.
    """
    needed = [selection.type_column, selection.stimulus_column]
    missing = [c for c in needed if c not in events.columns]
    if missing:
        raise InputDataError(
            f"Events file {path} lacks the column(s) {missing} that the dataset spec uses; "
            f"it has {list(events.columns)}."
        )
    codes = events[selection.type_column].map(canonical_code)
    keep = set(selection.block_types)
    if selection.include_repeats:
        keep |= set(selection.repeat_types)
    rows = events[codes.isin(keep)]
    onset = pd.to_numeric(rows["onset"], errors="coerce")
    duration = pd.to_numeric(rows["duration"], errors="coerce")
    bad = rows.index[onset.isna() | duration.isna() | (onset < 0) | (duration <= 0)]
    if len(bad):
        first = bad[0]
        raise InputDataError(
            f"Events file {path}: block row(s) {[int(i) + 2 for i in bad[:10]]} (line numbers) "
            f"have a non-numeric or invalid onset/duration, e.g. "
            f"onset={events.at[first, 'onset']!r}"
            f" duration={events.at[first, 'duration']!r}."
        )
    raw = rows[selection.stimulus_column].str.strip()
    empty = raw.str.lower().isin(MISSING)
    if empty.any():
        lines = [int(i) + 2 for i in rows.index[empty][:10]]
        raise InputDataError(
            f"Events file {path}: block row(s) at line(s) {lines} have no stimulus in column "
            f"{selection.stimulus_column!r}."
        )
    if selection.stimulus_map:
        keys = raw.map(canonical_code)
        unknown = sorted(set(keys) - set(selection.stimulus_map))
        if unknown:
            raise InputDataError(
                f"Events file {path}: {selection.stimulus_column} value(s) {unknown[:10]} are not "
                f"in the dataset spec's stimulus_map."
            )
        stimulus = keys.map(dict(selection.stimulus_map))
    else:
        stimulus = raw
    if selection.repeats == "previous":  # the same stimulus as the block before it
        is_repeat = (stimulus == stimulus.shift(1)).to_numpy(dtype=bool)
    else:
        is_repeat = codes[rows.index].isin(selection.repeat_types).to_numpy(dtype=bool)
    blocks = pd.DataFrame(
        {
            "onset": onset.to_numpy(dtype=float),
            "duration": duration.to_numpy(dtype=float),
            "stimulus": stimulus.to_numpy(dtype=object),
            "is_repeat": is_repeat,
        }
    )
    if selection.repeats == "previous" and not selection.include_repeats:
        blocks = blocks[~blocks["is_repeat"]].reset_index(drop=True)
    return blocks


def category_key(value: str) -> str:
    """A category label in canonical form: ``n01443537``, ``1443537`` and ``1443537.0`` agree."""
    text = canonical_code(value)
    match = re.fullmatch(r"[nN]?0*(\d+)", text)
    return match.group(1) if match else text


def stimuli_from_categories(
    blocks: pd.DataFrame, images: Iterable[str], selection: EventSelection, path: Path
) -> pd.DataFrame:
    """Replace category labels by the one image of each category (``stimulus_from = "category"``).

    An image's category is its name up to the first ``_`` (ImageNet: ``<synset>_<number>``).
    Names in ``no_image`` are kept as they are.

    Raises
    ------
    InputDataError
        A category has no image, or several, among ``images`` (the category set's stimuli).
    """
    by_category: dict[str, list[str]] = {}
    for name in sorted(set(images)):
        by_category.setdefault(category_key(name.split("_", 1)[0]), []).append(name)

    def pick(value: str) -> str:
        if value in selection.no_image:
            return value
        found = by_category.get(category_key(value), [])
        if len(found) != 1:
            count = "no image" if not found else f"{len(found)} images ({', '.join(found[:5])})"
            raise InputDataError(
                f"Events file {path}: category {value!r} has {count} in test set "
                f"'{selection.category_set}'; stimulus_from = \"category\" needs exactly one."
            )
        return found[0]

    return blocks.assign(stimulus=blocks["stimulus"].map(pick))


def check_blocks_in_run(blocks: pd.DataFrame, run_seconds: float, path: Path) -> None:
    """Refuse blocks that end after the last volume of the run.

    Raises
    ------
    InputDataError
        Naming the events file, the block and the run length.
    """
    ends = blocks["onset"].to_numpy() + blocks["duration"].to_numpy()
    late = np.flatnonzero(ends > run_seconds + 1e-6)
    if len(late):
        k = late[0]
        raise InputDataError(
            f"Events file {path}: {len(late)} block(s) extend past the end of the run "
            f"({run_seconds:g} s of BOLD), e.g. {blocks['stimulus'].iloc[k]!r} at "
            f"{blocks['onset'].iloc[k]:g} s lasting {blocks['duration'].iloc[k]:g} s."
        )
