"""Run designs and events.tsv tables with ds001506's exact columns and codes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PERCEPTION_COLUMNS = [
    "onset",
    "duration",
    "event_type",
    "stimulus_id",
    "stimulus_name",
    "category_index",
    "image_index",
    "response_time",
]
IMAGERY_COLUMNS = [
    "onset",
    "duration",
    "trial_no",
    "event_type",
    "category_id",
    "category_name",
    "category_index",
    "response_time",
    "evaluation",
]
INITIAL_REST = 32.0
FINAL_REST = 6.0
NA = "n/a"


@dataclass(frozen=True)
class Catalogue:
    """ds001506 metadata of stimuli: float-like id and the two internal index columns."""

    stimulus_id: dict[str, str]
    category_index: dict[str, int]
    image_index: dict[str, int]


@dataclass(frozen=True)
class Event:
    """What drives the simulated signal: a stimulus (or none) shown from onset for duration."""

    onset: float
    duration: float
    stimulus: str | None
    gain: float


def _fmt(value: float) -> str:
    return f"{value:g}"


def perception_run(
    order: list[str],
    catalogue: Catalogue,
    repeats: int,
    block: float,
    rest_after_block: float,
    rng: np.random.Generator,
    odd_rest_cell: bool = False,
) -> tuple[pd.DataFrame, list[Event], float]:
    """One perception run: initial rest, stimulus blocks with one-back repeats, final rest.

    Parameters
    ----------
    order : list of str
        Stimulus names in presentation order.
    repeats : int
        Number of one-back repeat blocks (event_type 2) inserted right after a block.
    block : float
        Block duration in seconds (8 for images, 12 for letters).
    rest_after_block : float
        Inter-trial rest (event_type -3) after every block, 0 for none (letters use 12 s).
    odd_rest_cell : bool
        Write ``on/a`` in the first inter-trial rest's stimulus_id, as ds001506 does once.

    Returns
    -------
    events : DataFrame
        The events.tsv table (all cells as text).
    drive : list of Event
        The blocks that drive the signal.
    length : float
        Run length in seconds.

    """
    repeated = set(rng.choice(len(order), size=min(repeats, len(order)), replace=False).tolist())
    rows = [[_fmt(0), _fmt(INITIAL_REST), "-1", NA, NA, NA, NA, NA]]
    drive: list[Event] = []
    t = INITIAL_REST
    odd_pending = odd_rest_cell
    for position, name in enumerate(order):
        codes = ["1", "2"] if position in repeated else ["1"]
        for code in codes:
            response = _fmt(round(t + rng.uniform(0.9, 1.6), 6)) if code == "2" else NA
            rows.append(
                [
                    _fmt(t),
                    _fmt(block),
                    code,
                    catalogue.stimulus_id[name],
                    name,
                    str(catalogue.category_index[name]),
                    str(catalogue.image_index[name]),
                    response,
                ]
            )
            drive.append(Event(t, block, name, 1.0))
            t += block
            if rest_after_block:
                rest_id = "on/a" if odd_pending else NA
                odd_pending = False
                rows.append([_fmt(t), _fmt(rest_after_block), "-3", rest_id, NA, NA, NA, NA])
                t += rest_after_block
    rows.append([_fmt(t), _fmt(FINAL_REST), "-2", NA, NA, NA, NA, NA])
    return pd.DataFrame(rows, columns=PERCEPTION_COLUMNS), drive, t + FINAL_REST


def imagery_run(
    order: list[int],
    targets: dict[int, str],
    release_synsets: list[str],
    no_image: set[str],
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, list[Event], float]:
    """One imagery run: 4-s cue, 8-s imagery, 3-s evaluation and 1-s inter-trial per target.

    ``category_id``/``category_name`` are written as the public release writes them: the first
    synsets of the natural test set, *not* the real targets, which only ``category_index``
    identifies (``targets``). Imagery of a target gives a weaker copy of its perceptual response;
    a target in ``no_image`` (fixation) gives none.
    """
    rows = [["0.0", "32.0", "1.0", "-1", NA, NA, NA, NA, NA]]
    drive: list[Event] = []
    t = INITIAL_REST
    phases = [("1", 4.0), ("2", 8.0), ("3", 3.0), ("4", 1.0)]
    for trial, index in enumerate(order, start=2):
        synset = release_synsets[index - 1]
        response = f"{t + 12.0 + rng.uniform(0.5, 2.5):.6f}"
        rating = f"{float(rng.integers(1, 6)):.1f}"
        for code, duration in phases:
            rows.append(
                [
                    f"{t:.1f}",
                    f"{duration:.1f}",
                    f"{float(trial):.1f}",
                    code,
                    str(int(synset[1:])),
                    synset,
                    str(index),
                    response,
                    rating,
                ]
            )
            target = targets[index]
            if code == "1":  # the cue is a word: a generic visual response only
                drive.append(Event(t, duration, None, 0.3))
            elif code == "2" and target not in no_image:
                drive.append(Event(t, duration, target, 0.35))
            t += duration
    rows.append(
        [f"{t:.1f}", f"{FINAL_REST:.1f}", f"{float(len(order) + 2):.1f}", "-2", NA, NA, NA, NA, NA]
    )
    return pd.DataFrame(rows, columns=IMAGERY_COLUMNS), drive, t + FINAL_REST
