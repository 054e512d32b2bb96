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


def real_events(ds001506_dir: Path, set_name: str) -> Path:
    folder = ds001506_dir / "sub-01" / REAL[set_name] / "func"
    return next(folder.glob("*_events.tsv"))


@pytest.mark.parametrize(
    ("set_name", "n_blocks"),
    [("training", 50), ("natural", 50), ("artificial", 40), ("letters", 10), ("imagery", 26)],
)
def test_real_ds001506_block_counts(ds001506_dir, set_name, n_blocks):
    path = real_events(ds001506_dir, set_name)
    blocks = events_to_blocks(read_events(path), SPEC.sets[set_name].events, path)
    assert len(blocks) == n_blocks
    assert not blocks["is_repeat"].any()
    assert blocks["stimulus"].map(type).eq(str).all()
    if set_name != "imagery":
        assert blocks["stimulus"].is_unique  # one-back repeats are excluded


def test_real_repeats_kept_on_request(ds001506_dir):
    path = real_events(ds001506_dir, "training")
    selection = replace(SPEC.sets["training"].events, include_repeats=True)
    blocks = events_to_blocks(read_events(path), selection, path)
    assert len(blocks) == 55 and blocks["is_repeat"].sum() == 5
    # a repeat shows the image of the block before it
    repeats = blocks.index[blocks["is_repeat"]]
    assert (
        blocks.loc[repeats, "stimulus"].to_numpy() == blocks.loc[repeats - 1, "stimulus"].to_numpy()
    ).all()


def test_real_imagery_labelled_by_target_not_category_name(ds001506_dir):
    path = real_events(ds001506_dir, "imagery")
    events = read_events(path)
    blocks = events_to_blocks(events, SPEC.sets["imagery"].events, path)
    assert blocks["duration"].eq(8.0).all()
    imagery_rows = events[events["event_type"] == "2"]
    mapping = SPEC.sets["imagery"].events.stimulus_map
    expected = [mapping[str(int(i))] for i in imagery_rows["category_index"]]
    assert blocks["stimulus"].tolist() == expected
    assert set(blocks["stimulus"]) - set(imagery_rows["category_name"])  # not the release's names
    assert "fixation" in set(blocks["stimulus"])


def test_real_letters_tolerate_the_odd_cell(ds001506_dir):
    path = real_events(ds001506_dir, "letters")
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


def text_events(rows: list[tuple[float, str, str]]) -> pd.DataFrame:
    """An events table as read_events gives it (text cells): (onset, trial_type, stim_file)."""
    return pd.DataFrame(
        {
            "onset": [str(o) for o, _, _ in rows],
            "duration": ["8"] * len(rows),
            "trial_type": [t for _, t, _ in rows],
            "stim_file": [s for _, _, s in rows],
        }
    )


def test_repeats_previous_marks_a_block_showing_the_previous_stimulus():
    names = ["a", "b", "b", "c", "c", "c", "b"]
    events = text_events([(8.0 * k, "stimulus", n) for k, n in enumerate(names)])
    rule = replace(EventSelection(), repeats="previous")
    kept = events_to_blocks(events, rule, Path("x_events.tsv"))
    assert kept["stimulus"].tolist() == ["a", "b", "c", "b"] and not kept["is_repeat"].any()
    every = events_to_blocks(events, replace(rule, include_repeats=True), Path("x_events.tsv"))
    assert every["is_repeat"].tolist() == [False, False, True, False, True, True, False]


def test_stimulus_from_category_picks_the_one_image_of_the_category():
    from bids_recon.io.events import stimuli_from_categories

    rule = replace(
        EventSelection(), stimulus_from="category", category_set="natural", no_image=("fixation",)
    )
    blocks = pd.DataFrame({"stimulus": ["n01443537", "1443537.0", "2128385", "fixation"]})
    images = ["n01443537_22563", "n02128385_20264", "n02128385_20264", "n09999999_1"]
    mapped = stimuli_from_categories(blocks, images, rule, Path("im_events.tsv"))
    assert mapped["stimulus"].tolist() == [
        "n01443537_22563",
        "n01443537_22563",
        "n02128385_20264",
        "fixation",
    ]
    with pytest.raises(InputDataError, match=r"im_events.tsv: category '42' has no image"):
        stimuli_from_categories(
            pd.DataFrame({"stimulus": ["42"]}), images, rule, Path("im_events.tsv")
        )
    two = [*images, "n01443537_1"]
    with pytest.raises(InputDataError, match="2 images"):
        stimuli_from_categories(blocks, two, rule, Path("im_events.tsv"))


def test_missing_category_like_stimuli_hint_at_a_mapping_rule(tmp_path):
    from bids_recon.errors import MissingInputError
    from bids_recon.io.stimuli import StimulusIndex

    index = StimulusIndex(tmp_path, [".png"])
    with pytest.raises(MissingInputError, match="mapping rule") as caught:
        index.resolve_all({"imagery": ["1443537", "n02128385"]})
    assert "Set 'imagery'" in str(caught.value)
    with pytest.raises(MissingInputError) as plain:
        index.resolve_all({"natural": ["cat_photo"]})
    assert "mapping rule" not in str(plain.value)
