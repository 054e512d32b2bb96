"""Events → blocks, on the real ds001506 events files and on malformed ones."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from bids_recon.errors import InputDataError
from bids_recon.io.events import check_blocks_in_run, events_to_blocks, read_events
from bids_recon.specs import EventSelection, load_builtin_spec

SPEC = load_builtin_spec("ds001506")
REAL = {
    "training": "ses-perceptionNaturalImageTraining01",
    "natural": "ses-perceptionNaturalImageTest01",
    "artificial": "ses-perceptionArtificialImage01",
    "letters": "ses-perceptionLetterImage01",
    "imagery": "ses-imagery01",
}


def real_events(reference_dir: Path, set_name: str) -> Path:
    folder = reference_dir / "ds001506" / "sub-01" / REAL[set_name] / "func"
    return next(folder.glob("*_events.tsv"))


@pytest.mark.parametrize(
    ("set_name", "n_blocks"),
    [("training", 50), ("natural", 50), ("artificial", 40), ("letters", 10), ("imagery", 26)],
)
def test_real_ds001506_block_counts(reference_dir, set_name, n_blocks):
    path = real_events(reference_dir, set_name)
    blocks = events_to_blocks(read_events(path), SPEC.sets[set_name].events, path)
    assert len(blocks) == n_blocks
    assert not blocks["is_repeat"].any()
    assert blocks["stimulus"].map(type).eq(str).all()
    if set_name != "imagery":
        assert blocks["stimulus"].is_unique  # one-back repeats are excluded


def test_real_repeats_kept_on_request(reference_dir):
    path = real_events(reference_dir, "training")
    selection = replace(SPEC.sets["training"].events, include_repeats=True)
    blocks = events_to_blocks(read_events(path), selection, path)
    assert len(blocks) == 55 and blocks["is_repeat"].sum() == 5
    # a repeat shows the image of the block before it
    repeats = blocks.index[blocks["is_repeat"]]
    assert (
        blocks.loc[repeats, "stimulus"].to_numpy() == blocks.loc[repeats - 1, "stimulus"].to_numpy()
    ).all()


def test_real_imagery_labelled_by_target_not_category_name(reference_dir):
    path = real_events(reference_dir, "imagery")
    events = read_events(path)
    blocks = events_to_blocks(events, SPEC.sets["imagery"].events, path)
    assert blocks["duration"].eq(8.0).all()
    imagery_rows = events[events["event_type"] == "2"]
    mapping = SPEC.sets["imagery"].events.stimulus_map
    expected = [mapping[str(int(i))] for i in imagery_rows["category_index"]]
    assert blocks["stimulus"].tolist() == expected
    assert set(blocks["stimulus"]) - set(imagery_rows["category_name"])  # not the release's names
    assert "fixation" in set(blocks["stimulus"])


def test_real_letters_tolerate_the_odd_cell(reference_dir):
    path = real_events(reference_dir, "letters")
    assert "on/a" in set(read_events(path)["stimulus_id"])
    blocks = events_to_blocks(read_events(path), SPEC.sets["letters"].events, path)
    assert blocks["duration"].eq(12.0).all()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sub-01_task-x_run-1_events.tsv"
    path.write_text(text)
    return path


STRING_TYPES = EventSelection(
    type_column="trial_type", block_types=("stimulus",), stimulus_column="stim_file"
)


def test_string_event_types_and_stim_file(tmp_path):
    path = write(
        tmp_path,
        "onset\tduration\ttrial_type\tstim_file\n"
        "0\t10\trest\tn/a\n10\t6\tstimulus\timages/cat.png\n"
        "16.0\t6\tstimulus\timages/dog.png\n",
    )
    blocks = events_to_blocks(read_events(path), STRING_TYPES, path)
    assert blocks["stimulus"].tolist() == ["images/cat.png", "images/dog.png"]
    assert blocks["onset"].tolist() == [10.0, 16.0]


def test_numeric_codes_match_whatever_their_format(tmp_path):
    path = write(
        tmp_path,
        "onset\tduration\tevent_type\tstimulus_name\n0\t8\t1.0\ta\n8\t8\t 1\tb\n16\t8\t-1\tn/a\n",
    )
    selection = SPEC.sets["natural"].events
    assert events_to_blocks(read_events(path), selection, path)["stimulus"].tolist() == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("onset\tduration\tevent_type\n0\t8\t1\n", "stimulus_name"),
        ("onset\tduration\tevent_type\tstimulus_name\nabc\t8\t1\ta\n", "non-numeric"),
        ("onset\tduration\tevent_type\tstimulus_name\n0\t8\t1\tn/a\n", "no stimulus"),
        ("duration\tevent_type\n8\t1\n", "onset"),
    ],
)
def test_malformed_events_name_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputDataError, match=message) as err:
        events_to_blocks(read_events(path), SPEC.sets["natural"].events, path)
    assert str(path) in str(err.value)


def test_unknown_imagery_index_is_an_error(tmp_path):
    path = write(tmp_path, "onset\tduration\tevent_type\tcategory_index\n0\t8\t2\t99\n")
    with pytest.raises(InputDataError, match="stimulus_map"):
        events_to_blocks(read_events(path), SPEC.sets["imagery"].events, path)


def test_blocks_past_the_end_of_the_run(tmp_path):
    blocks = pd.DataFrame(
        {
            "onset": [0.0, 90.0],
            "duration": [8.0, 12.0],
            "stimulus": ["a", "b"],
            "is_repeat": [False, False],
        }
    )
    check_blocks_in_run(blocks, 102.0, tmp_path / "e.tsv")
    with pytest.raises(InputDataError, match="past the end") as err:
        check_blocks_in_run(blocks, 100.0, tmp_path / "e.tsv")
    assert "'b'" in str(err.value)
