"""Partial datasets: absent test sets are skipped with a warning, --sets chooses test sets."""

from __future__ import annotations

import re
import shutil

import pytest
from helpers import participant_args

from bids_recon.cli import main

ABSENT = ("ses-perceptionArtificialImage*", "ses-perceptionLetterImage*", "ses-imagery*")


@pytest.fixture(scope="module")
def natural_only(simulated_dataset, tmp_path_factory):
    """The simulated dataset as a common partial download: training and natural test only."""
    out = tmp_path_factory.mktemp("partial") / "ds"
    shutil.copytree(simulated_dataset, out, ignore=shutil.ignore_patterns(*ABSENT))
    return out


def run(dataset, root, *extra):
    args = ["--network", "builtin", "--layers", "fc2", "--recon-iterations", "2", *extra]
    return main(participant_args(dataset, root, *args))


def test_absent_test_sets_are_skipped_with_a_warning_and_all_stages_run(natural_only, tmp_path):
    assert run(natural_only, tmp_path) == 0
    out = tmp_path / "out"
    log = next((out / "logs").glob("bids_recon-*.log")).read_text()
    for name in ("artificial", "letters", "imagery"):
        assert f"test set '{name}' skipped: it has no data" in log
    report = (out / "sub-01.html").read_text()
    assert "test set &#39;imagery&#39; skipped" in report or "test set 'imagery' skipped" in report
    recon = sorted(p.name for p in (out / "sub-01" / "recon").glob("*.png"))
    assert recon and all("set-natural" in name for name in recon)
    assert (out / "sub-01" / "func" / "sub-01_desc-recon_eval.tsv").is_file()
    assert main([str(natural_only), str(out), "group"]) == 0
    group = (out / "group.html").read_text()
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", group)  # base64 may spell "nan"
    assert "nan" not in text and "n/a" in text  # one participant: no CI across participants


def test_sets_option_chooses_and_checks_test_sets(
    simulated_dataset, natural_only, tmp_path, caplog
):
    stages = ("--stages", "samples", "decode")
    assert run(simulated_dataset, tmp_path / "a", "--sets", "letters", *stages) == 0
    decoded = {
        p.name.split("_set-")[1].split("_")[0] for p in (tmp_path / "a").rglob("*_features.npy")
    }
    assert decoded == {"letters"}
    assert run(natural_only, tmp_path / "b", "--sets", "artificial", *stages) == 18
    assert "No BOLD runs of sub-01 match set 'artificial'" in caplog.text
    assert not (tmp_path / "b" / "out").exists()
    assert run(natural_only, tmp_path / "c", "--sets", "nosuchset") == 64
    assert "test sets: natural, artificial, letters, imagery" in caplog.text
