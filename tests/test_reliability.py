"""Running the way clusters do: unwritable HOME, several participant jobs into one OUTPUT_DIR."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest


def app(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "bids_recon", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_runs_with_an_unwritable_home(simulated_dataset, tmp_path):
    env = {**os.environ, "HOME": "/proc/nonexistent-home"}  # nobody can create files there
    process = app(
        simulated_dataset,
        tmp_path / "out",
        "participant",
        "-w",
        tmp_path / "work",
        "--network",
        "builtin",
        "--stages",
        "samples",
        "decode",
        "report",
        "--skip-bids-validation",
        env=env,
    )
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert (tmp_path / "out" / "sub-01.html").is_file()


def test_concurrent_participant_jobs_share_one_output_dir(simulated_dataset_two, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    jobs = [
        app(
            simulated_dataset_two,
            out,
            "participant",
            "--participant-label",
            label,
            "-w",
            work,
            "--stages",
            "samples",
            "report",
            "--skip-bids-validation",
        )
        for label in ("01", "02")
    ]
    for job in jobs:
        output, _ = job.communicate(timeout=600)
        assert job.returncode == 0, output
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Name"] == "bids_recon"
    stimuli = pd.read_csv(out / "stimuli.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert not stimuli.duplicated(["set", "stimulus_name"]).any()
    assert (stimuli["set"] == "training").sum() > 0
    for label in ("01", "02"):
        assert (out / f"sub-{label}" / "func" / f"sub-{label}_desc-blocks_table.tsv").is_file()
    assert len(list((out / "logs").glob("config-*.toml"))) == 2
    assert not list(out.glob(".*.tmp")) and not list(out.glob(".*.partial*"))
