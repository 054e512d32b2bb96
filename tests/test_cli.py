"""The command-line contract: flags, label handling, exit codes, nothing written on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bids_recon import __version__
from bids_recon.cli import build_parser, main, parse_config
from bids_recon.config import Config
from bids_recon.errors import EXIT_CODES


def run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def test_version_and_help_via_console_script():
    out = subprocess.run(
        [sys.executable, "-m", "bids_recon", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"bids_recon v{__version__}"
    helptext = subprocess.run(
        [sys.executable, "-m", "bids_recon", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in (
        "--participant-label",
        "--session-label",
        "--task-id",
        "--bids-filter-file",
        "--dataset-spec",
        "--stimuli-dir",
        "--derivatives",
        "--work-dir",
        "--nprocs",
        "--omp-nthreads",
        "--mem",
        "--shard",
        "--device",
        "--network",
        "--weights",
        "--stages",
        "--random-seed",
        "--config-file",
        "--skip-bids-validation",
        "--stop-on-first-crash",
        "--reports-only",
        "--notrack",
        "--verbose",
    ):
        assert flag in helptext


def test_missing_bids_dir_exit_66_names_path(tmp_path, caplog):
    missing = tmp_path / "missing"
    out = tmp_path / "out"
    assert run(missing, out, "participant") == 66
    assert str(missing) in caplog.text
    assert not out.exists()


def test_unknown_analysis_level_exit_17(simulated_dataset, tmp_path):
    assert run(simulated_dataset, tmp_path / "out", "session") == 17


def test_argparse_error_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), str(tmp_path / "o"), "participant", "--nprocs", "0"])
    assert exc.value.code == 2


@pytest.mark.parametrize("bad", ["0/3", "4/3", "3", "a/b", "1/0"])
def test_bad_shard_is_a_usage_error(tmp_path, bad):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), str(tmp_path / "o"), "participant", "--shard", bad])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("text", "mb"), [("512", 512.0), ("16G", 16384.0), ("16gb", 16384.0), ("2T", 2.0 * 2**20)]
)
def test_memory_sizes_in_mb_or_with_units(simulated_dataset, tmp_path, text, mb):
    config = parse_config(
        [str(simulated_dataset), str(tmp_path / "o"), "participant", "--mem", text]
    )
    assert config.mem_mb == mb


def test_resources_default_to_the_cpus_the_job_may_use(simulated_dataset, tmp_path):
    config = parse_config([str(simulated_dataset), str(tmp_path / "o"), "participant"])
    assert config.nprocs == len(os.sched_getaffinity(0)) and config.omp_nthreads == config.nprocs
    given = parse_config(
        [
            str(simulated_dataset),
            str(tmp_path / "o"),
            "participant",
            "--nprocs",
            "3",
            "--shard",
            "2/5",
        ]
    )
    assert (given.nprocs, given.omp_nthreads, given.shard) == (3, 3, (2, 5))


@pytest.mark.parametrize("label", ["01", "sub-01"])
def test_participant_label_with_or_without_prefix(simulated_dataset, tmp_path, label):
    config = parse_config(
        [
            str(simulated_dataset),
            str(tmp_path / "o"),
            "participant",
            "--participant_label",
            label,
            "--session-label",
            "ses-x",
            "-t",
            "task-perception",
        ]
    )
    assert config.participant_label == ("01",)
    assert config.session_label == ("x",)
    assert config.task_id == ("perception",)


def test_unknown_label_lists_available_and_writes_nothing(simulated_dataset, tmp_path, caplog):
    out = tmp_path / "out"
    code = run(
        simulated_dataset,
        out,
        "participant",
        "--participant-label",
        "01",
        "sub-07",
        "--network",
        "builtin",
    )
    assert code == 18
    assert "07" in caplog.text and "Available: 01" in caplog.text
    assert not out.exists()


def test_bad_dataset_spec_exit_64(simulated_dataset, tmp_path, caplog):
    out = tmp_path / "out"
    assert run(simulated_dataset, out, "participant", "--dataset-spec", "nope") == 64
    assert "nope" in caplog.text
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[sets.train]\nrole = 'training'\nfiltres = {}\n")
    assert run(simulated_dataset, out, "participant", "--dataset-spec", bad) == 64
    assert "filtres" in caplog.text and str(bad) in caplog.text
    assert not out.exists()


def test_dataset_without_spec_refused_with_how_to(tmp_path, caplog):
    bids = tmp_path / "other"
    (bids / "sub-01" / "func").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    assert run(bids, tmp_path / "out", "participant") == 64
    assert "--dataset-spec" in caplog.text and "Dataset specs" in caplog.text


def test_output_equal_to_input_refused(simulated_dataset):
    assert run(simulated_dataset, simulated_dataset, "participant") == 64


def test_missing_weights_exit_66(simulated_dataset, tmp_path):
    assert (
        run(simulated_dataset, tmp_path / "o", "participant", "--weights", tmp_path / "vgg19.pth")
        == 66
    )


def test_bad_filter_file_exit_64(simulated_dataset, tmp_path, caplog):
    filters = tmp_path / "filters.json"
    filters.write_text("{not json")
    assert (
        run(simulated_dataset, tmp_path / "o", "participant", "--bids-filter-file", filters) == 64
    )
    assert str(filters) in caplog.text


def test_group_on_missing_outputs_exit_66(tmp_path):
    assert run(tmp_path / "nodata", tmp_path / "empty", "group") == 66


def test_participant_then_group_run(simulated_dataset, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--participant-label", "01", "--stages", "samples", "report", "-w", work]
    assert run(simulated_dataset, out, "participant", *args, "--device", "cpu") == 0
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bids_recon"
    assert (out / ".bidsignore").read_text().splitlines()[0] == "*.html"
    report = (out / "sub-01.html").read_text()
    assert "Data used" in report and "The decode stage did not run." in report
    configs = list((out / "logs").glob("config-*.toml"))
    logs = list((out / "logs").glob("bids_recon-*.log"))
    assert len(configs) == 1 and len(logs) == 1
    assert not [p for p in out.rglob("*") if p.name.endswith(".lock")]  # no lock left behind
    # the log holds the run from its first line: command line, spec, device, memory plan
    lines = logs[0].read_text().splitlines()
    assert "bids_recon v" in lines[0] and "participant --participant-label 01" in lines[0]
    text = "\n".join(lines)
    for needle in ("using the built-in spec", "using device: cpu", "sub-01: samples stage took"):
        assert needle in text
    # group reads only OUTPUT_DIR: a BIDS_DIR that does not exist is fine
    assert run(tmp_path / "gone", out, "group") == 0
    group = (out / "group.html").read_text()
    assert "sub-01.html" in group and "No participant has reconstruction results yet." in group


def test_config_file_and_saved_config_round_trip(simulated_dataset, tmp_path):
    config_file = tmp_path / "opts.toml"
    config_file.write_text(
        'network = "builtin"\nrandom-seed = 7\nomp_nthreads = 2\nstages = ["samples", "report"]\n'
    )
    config = parse_config(
        [
            str(simulated_dataset),
            str(tmp_path / "o"),
            "participant",
            "--config-file",
            str(config_file),
            "--random-seed",
            "9",
        ]
    )
    assert config.network == "builtin" and config.omp_nthreads == 2
    assert config.random_seed == 9  # the command line wins over the file
    assert config.stages == ("samples", "report")
    saved = tmp_path / "saved.toml"
    saved.write_text(config.to_toml())
    again = parse_config(
        [str(simulated_dataset), str(tmp_path / "o"), "participant", "--config-file", str(saved)]
    )
    assert again.random_seed == 9 and again.stages == config.stages
    assert again.work_dir == config.work_dir


def test_config_file_unknown_option_exit_64(simulated_dataset, tmp_path, caplog):
    config_file = tmp_path / "opts.toml"
    config_file.write_text("netwrok = 'vgg19'\n")
    assert run(simulated_dataset, tmp_path / "o", "participant", "--config-file", config_file) == 64
    assert "netwrok" in caplog.text


def test_reports_only_runs_only_the_report_stage(simulated_dataset, tmp_path):
    config = parse_config(
        [
            str(simulated_dataset),
            str(tmp_path / "o"),
            "participant",
            "--reports-only",
            "--stages",
            "decode",
        ]
    )
    assert config.stages == ("report",)


def test_unknown_stage_exit_64(simulated_dataset, tmp_path):
    assert run(simulated_dataset, tmp_path / "o", "participant", "--stages", "train") == 64


def test_exit_codes_documented_in_readme():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in readme


def test_relative_dataset_spec_in_a_config_file_is_relative_to_that_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "myspec.toml").write_text("name = 'x'\n")
    (folder / "opts.toml").write_text('dataset_spec = "myspec.toml"\n')
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    bids = tmp_path / "bids"
    bids.mkdir()
    args = ["--config-file", str(folder / "opts.toml"), str(bids), str(tmp_path / "out")]
    config = parse_config([*args, "participant"])
    assert config.dataset_spec == str(folder / "myspec.toml")
    (folder / "named.toml").write_text('dataset_spec = "ds001506"\n')
    args[1] = str(folder / "named.toml")
    assert parse_config([*args, "participant"]).dataset_spec == "ds001506"


def test_readme_options_table_is_the_option_table():
    from bids_recon.options import OPTIONS, options_table, readme_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert readme_table(readme) == options_table(), "run `make options-table`"
    parser_dests = {a.dest for a in build_parser()._actions}
    assert {o.dest for o in OPTIONS} <= parser_dests
    fields = set(Config.__dataclass_fields__)
    assert {o.dest for o in OPTIONS if o.kind} <= fields  # every option sets a Config field
