"""Dataset specs: the built-in ds001506 spec, validation errors, layout detection."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from bids_recon.errors import UsageError
from bids_recon.specs import load_builtin_spec, load_spec, resolve_spec


def test_builtin_ds001506_describes_the_dataset():
    spec = load_builtin_spec("ds001506")
    assert spec.training_set.name == "training"
    assert [s.name for s in spec.test_sets] == ["natural", "artificial", "letters", "imagery"]
    assert spec.training_set.filters == {
        "task": "perception",
        "session": r"perceptionNaturalImageTraining\d+",
    }
    natural = spec.sets["natural"].events
    assert natural.type_column == "event_type"
    assert natural.block_types == ("1",) and natural.repeat_types == ("2",)
    assert natural.stimulus_column == "stimulus_name" and not natural.include_repeats
    imagery = spec.sets["imagery"]
    assert imagery.filters["task"] == "imagery"
    assert imagery.events.block_types == ("2",)
    assert imagery.events.stimulus_column == "category_index"
    assert spec.fmri.hrf_delay == 4.0
    assert spec.rois.combine["VC"] == ("V1d", "V1v", "V2d", "V2v", "V3d", "V3v", "hV4", "HVC")
    assert spec.rois.hemispheres == ("LH", "RH")


def test_imagery_targets_match_the_reference_table(ds001506_dir):
    """The spec labels imagery by the lab's target table, not the release's category_name."""
    table = pd.read_csv(ds001506_dir / "imagery_targets.tsv", sep="\t", dtype=str)
    expected = dict(zip(table["category_index"], table["stimulus_name"], strict=True))
    mapping = load_builtin_spec("ds001506").sets["imagery"].events.stimulus_map
    assert dict(mapping) == expected
    assert len(expected) == 26


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


MINIMAL = """
name = "other"
[events]
type_column = "trial_type"
block_types = ["stimulus"]
stimulus_column = "stim_file"
[sets.train]
role = "training"
filters = { task = "view", run = "[1-8]" }
[sets.test]
role = "test"
filters = { task = "view", run = "9|10" }
[rois]
directory = "derivatives/rois/sub-{subject}"
pattern = "sub-{subject}_label-{roi}_mask.nii.gz"
[rois.combine]
VC = ["V1", "V2"]
"""


def test_minimal_user_spec_loads(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.training_set.name == "train"
    assert spec.sets["test"].events.block_types == ("stimulus",)
    assert spec.rois.hemispheres == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n" + MINIMAL, "unknown key"),
        (MINIMAL.replace('role = "test"', 'role = "testing"'), "not one of"),
        (MINIMAL.replace('run = "9|10"', 'run = "(9"'), "not a valid regular expression"),
        (MINIMAL.replace('role = "training"', 'role = "test"'), "exactly one set"),
        (MINIMAL + "[fmri]\nhrf_delay = 'four'\n", "expected a number"),
        (MINIMAL + "[fmri]\nnormalize = 'none'\n", "not one of"),
        (MINIMAL.replace("{roi}_mask", "x_mask"), "must contain {roi}"),
        ("name = [", "not valid TOML"),
    ],
)
def test_invalid_specs_name_file_and_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UsageError, match=re.escape(message)) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_resolve_detects_ds001506_layout_and_refuses_others(simulated_dataset, tmp_path):
    assert resolve_spec(None, simulated_dataset).name == "ds001506"
    assert resolve_spec("ds001506", tmp_path).source == "builtin:ds001506"
    assert resolve_spec("builtin:ds001506", tmp_path).name == "ds001506"
    with pytest.raises(UsageError, match="Dataset specs"):
        resolve_spec(None, tmp_path)
    user = write(tmp_path, MINIMAL)
    assert resolve_spec(str(user), tmp_path).name == "other"


def test_repeat_and_category_rules_are_validated(tmp_path):
    from bids_recon.errors import UsageError
    from bids_recon.specs import load_spec

    base = """
name = "x"
[sets.training]
role = "training"
repeats = "previous"
[sets.natural]
role = "test"
[sets.imagery]
role = "test"
stimulus_from = "category"
category_set = "natural"
[rois]
pattern = "{roi}.nii.gz"
"""
    path = tmp_path / "spec.toml"
    path.write_text(base)
    spec = load_spec(path)
    assert spec.sets["training"].events.repeats == "previous"
    assert spec.sets["imagery"].events.stimulus_from == "category"
    path.write_text(base.replace('repeats = "previous"', 'repeats = "sometimes"'))
    with pytest.raises(UsageError, match=r"\[sets.training.repeats\] 'sometimes' is not one of"):
        load_spec(path)
    path.write_text(base.replace('category_set = "natural"', 'category_set = "training"'))
    with pytest.raises(UsageError, match=r"\[sets.imagery\] stimulus_from"):
        load_spec(path)
