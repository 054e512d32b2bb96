"""A run builds each feature network once, for the memory plan, every stage and participant."""

from __future__ import annotations

from helpers import participant_args

from bids_recon.cli import main
from bids_recon.workflows import context


def test_one_build_for_two_participants_and_all_stages(
    simulated_dataset_two, tmp_path, monkeypatch
):
    builds = []
    build = context.build_network
    monkeypatch.setattr(context, "build_network", lambda *a: builds.append(a) or build(*a))
    args = ["--network", "builtin", "--layers", "conv1", "fc2", "--recon-iterations", "2"]
    args += ["--sets", "natural"]
    assert main(participant_args(simulated_dataset_two, tmp_path, *args)) == 0
    assert len(builds) == 1
    assert (tmp_path / "out" / "sub-02" / "func" / "sub-02_desc-reconsummary_eval.tsv").is_file()
