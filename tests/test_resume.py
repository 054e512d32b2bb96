"""Killed and sharded runs: a re-run after kill -9, or N shards, give the uninterrupted outputs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import participant_args

from bids_recon.cli import main

FAST = (
    "--network",
    "builtin",
    "--layers",
    "conv1",
    "conv3",
    "fc2",
    "--recon-iterations",
    "5",
    "--recon-batch-size",
    "8",
)
N_RECON = 86 + 85  # decoded + oracle images of the simulated participant


def snapshot(out: Path) -> dict[str, object]:
    """Every output except logs, HTML reports, locks and run times (which differ by design)."""
    files: dict[str, object] = {}
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out)
        if path.is_dir() or relative.parts[0] == "logs" or path.suffix in (".html", ".lock"):
            continue
        content: object = path.read_bytes()
        if path.suffix == ".json":
            content = json.loads(content)
            if isinstance(content, dict):
                content.pop("Seconds", None)
        files[str(relative)] = content
    return files


def run_until_killed(args: list[str], condition, timeout: float = 600) -> None:
    """Start the app; SIGKILL it as soon as ``condition()`` holds (fail if it never does)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bids_recon", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if condition():
                process.send_signal(signal.SIGKILL)
                assert process.wait(timeout=60) == -signal.SIGKILL
                return
            assert process.poll() is None, "the run ended before the moment to kill it"
            time.sleep(0.005)
        pytest.fail("the moment to kill the run never came")
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="module")
def uninterrupted(simulated_dataset, tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("uninterrupted")
    assert main(participant_args(simulated_dataset, root, *FAST)) == 0
    outputs = snapshot(root / "out")
    assert sum(name.endswith("_image.png") for name in outputs) == N_RECON
    return outputs


@pytest.mark.slow
def test_kill_during_decoding_and_reconstruction_then_rerun(
    simulated_dataset, tmp_path, uninterrupted
):
    args = participant_args(simulated_dataset, tmp_path, *FAST)
    out, work = tmp_path / "out", tmp_path / "work"
    func, recon = out / "sub-01" / "func", out / "sub-01" / "recon"

    def training_features_being_written() -> bool:  # the feature cache's private files
        partial = (work / "features").rglob(".*.tmp") if (work / "features").is_dir() else []
        return len(list(partial)) >= 2

    run_until_killed(args, training_features_being_written)
    assert not list(out.rglob("*_decoder.json")), "killed too late: decoding had finished"
    assert list((work / "features").rglob(".*.tmp")), "the killed run left its partial cache"

    def some_reconstructions_written() -> bool:
        return len(list(recon.glob("*_image.json"))) >= 10 if recon.is_dir() else False

    run_until_killed(args, some_reconstructions_written)
    assert len(list(func.glob("*desc-decoded_features.npy"))) == 4 * 3  # decoding completed
    assert len(list(recon.glob("*_image.json"))) < N_RECON, "killed too late"
    assert not (func / "sub-01_desc-recon_eval.tsv").exists()

    assert main(args) == 0
    assert snapshot(out) == uninterrupted
    assert not list(out.rglob("*.tmp")) and not list(work.rglob("*.tmp"))


@pytest.mark.slow
def test_shards_run_concurrently_and_merge_to_the_unsharded_outputs(
    simulated_dataset, tmp_path, uninterrupted
):
    jobs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bids_recon",
                *participant_args(simulated_dataset, tmp_path, *FAST, "--shard", f"{k}/2"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k in (1, 2)
    ]
    logs = [job.communicate(timeout=900)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], logs
    assert snapshot(tmp_path / "out") == uninterrupted
    # both extracted features for the decoding; one decoded, the other then found it done
    stored = [re.search(r"stored (\d+) feature batch", log) for log in logs]
    assert all(match and int(match[1]) > 0 for match in stored), logs
    assert sum("already decoded" in log for log in logs) == 1
