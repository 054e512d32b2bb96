"""The reconstruction stage on the simulated dataset: outputs, sidecars, report, resume."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import participant_args
from PIL import Image

from bids_recon.cli import main
from bids_recon.io.validation import find_validator
from bids_recon.workflows import recon as recon_module

FAST = (
    "--network",
    "builtin",
    "--recon-iterations",
    "5",
    "--recon-batch-size",
    "16",
    "--layers",
    "conv1",
    "conv3",
    "fc2",
)


@pytest.fixture(scope="module")
def reconstructed(simulated_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("recon")
    assert main(participant_args(simulated_dataset, root, *FAST)) == 0
    return root


def test_recon_outputs_for_every_test_stimulus(reconstructed):
    recon = reconstructed / "out" / "sub-01" / "recon"
    sidecars = [json.loads(p.read_text()) for p in sorted(recon.glob("*_image.json"))]
    decoded = [s for s in sidecars if s["Source"] == "decoded"]
    oracle = [s for s in sidecars if s["Source"] == "oracle"]
    assert len(decoded) == 10 + 40 + 10 + 26
    assert len(oracle) == 10 + 40 + 10 + 25  # fixation has no image
    assert {s["Set"] for s in decoded} == {"natural", "artificial", "letters", "imagery"}
    assert "colorExpStim19_yellow_+" in {s["StimulusName"] for s in decoded}
    example = next(recon.glob("*_set-artificial_stim-colorExpStim19yellow_desc-recon_image.png"))
    assert np.asarray(Image.open(example)).shape == (64, 64, 3)
    first = decoded[0]
    assert first["Iterations"] == 5 and len(first["LossCurve"]) == 6
    assert first["Method"] == "lbfgs" and first["Layers"] == ["conv1", "conv3", "fc2"]


def test_an_image_in_several_sets_gets_one_oracle_reconstruction(reconstructed):
    recon = reconstructed / "out" / "sub-01" / "recon"
    oracle = {p: json.loads(p.read_text()) for p in recon.glob("*_desc-oracle_image.json")}
    reused = {p: meta for p, meta in oracle.items() if "ReusedFrom" in meta}
    # the imagery targets: 15 shapes of the artificial set and 10 natural test images
    assert len(reused) == 25 and {m["Set"] for m in reused.values()} == {"imagery"}
    computed = {m["StimulusName"] for m in oracle.values() if "ReusedFrom" not in m}
    assert len(computed) == len(oracle) - len(reused)  # each image optimized once
    for path, meta in reused.items():
        source = recon / meta["ReusedFrom"]
        assert meta["StimulusName"] in computed
        assert np.array_equal(
            np.asarray(Image.open(path.with_suffix(".png"))), np.asarray(Image.open(source))
        )


def test_report_shows_stimulus_oracle_and_reconstruction(reconstructed):
    html = (reconstructed / "out" / "sub-01.html").read_text()
    assert html.count('alt="oracle ') == 85 and html.count('alt="decoded VC ') == 86
    main = html.split("<main>")[1]  # nothing fetched from the network (svg namespaces aside)
    assert "data:image/png;base64," in html and not re.search(r'(src|href)="https?:', main)


def test_rerun_skips_finished_images(reconstructed, simulated_dataset, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a finished image was reconstructed again")

    monkeypatch.setattr(recon_module, "reconstruct", forbidden)
    assert main(participant_args(simulated_dataset, reconstructed, *FAST)) == 0


def test_generator_without_weights_is_refused(simulated_dataset, tmp_path, caplog):
    code = main(
        participant_args(
            simulated_dataset, tmp_path, "--network", "builtin", "--recon-method", "generator"
        )
    )
    assert code == 64 and "--generator-weights" in caplog.text
    assert not (tmp_path / "out").exists()


def test_reconstruction_metrics_with_cis(reconstructed):
    func = reconstructed / "out" / "sub-01" / "func"
    per_stimulus = pd.read_csv(func / "sub-01_desc-recon_eval.tsv", sep="\t")
    summary = pd.read_csv(
        func / "sub-01_desc-reconsummary_eval.tsv",
        sep="\t",
        na_values=["n/a"],
        keep_default_na=False,
    )
    assert set(per_stimulus["metric"]) == {
        "pixel_identification",
        "pixel_correlation",
        "ssim",
        "feature_identification",
    }
    ident = summary[summary["metric"] == "pixel_identification"].set_index(["set", "source"])
    assert ident.loc[("natural", "oracle"), "value"] > 0.9
    assert ident.loc[("natural", "decoded"), "value"] > 0.5
    assert (ident["ci_low"] <= ident["value"]).all() and (ident["value"] <= ident["ci_high"]).all()
    assert ident.loc[("artificial", "decoded"), "n"] == 40
    assert "Reconstruction accuracy" in (reconstructed / "out" / "sub-01.html").read_text()


def test_group_tables_and_report(reconstructed, tmp_path):
    out = reconstructed / "out"
    assert main([str(tmp_path / "no_bids"), str(out), "group"]) == 0
    recon = pd.read_csv(out / "group_desc-recon_eval.tsv", sep="\t")
    for column in ("participant_id", "set", "source", "metric", "value", "ci_low", "ci_high"):
        assert column in recon.columns
    assert set(recon["participant_id"]) == {"sub-01", "group"}
    decoding = pd.read_csv(out / "group_desc-featdecoding_eval.tsv", sep="\t")
    assert {"participant_id", "set", "layer", "metric", "value"} <= set(decoding.columns)
    html = (out / "group.html").read_text()
    assert "Pairwise identification accuracy" in html and 'alt="sub-01 ' in html


def test_group_reports_a_partial_participant(reconstructed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reconstructed / "out", out)
    (out / "sub-02").mkdir()  # a participant whose run produced nothing yet
    assert main([str(tmp_path / "no_bids"), str(out), "group"]) == 0
    html = (out / "group.html").read_text()
    assert "sub-02" in html and "reconstruction, decoding" in html


@pytest.mark.parametrize(
    ("table", "damage"),
    [
        ("reconsummary", lambda text: text[: len(text) // 2]),  # truncated mid-line
        ("featdecoding", lambda text: "garbage\x00\x01 not a table"),
        ("reconsummary", lambda text: text.replace("\t0.", "\tabc", 1)),  # a value not a number
    ],
)
def test_group_leaves_out_an_unreadable_participant_table(
    reconstructed, tmp_path, table, damage, caplog
):
    out = tmp_path / "out"
    shutil.copytree(reconstructed / "out", out)
    shutil.copytree(out / "sub-01", out / "sub-02")
    path = out / "sub-02" / "func" / f"sub-01_desc-{table}_eval.tsv"
    target = path.with_name(path.name.replace("sub-01", "sub-02"))
    for tsv in (out / "sub-02" / "func").glob("sub-01_*"):
        tsv.rename(tsv.with_name(tsv.name.replace("sub-01", "sub-02")))
    target.write_text(damage(target.read_text()))
    assert main([str(tmp_path / "no_bids"), str(out), "group"]) == 0
    assert f"{target}:" in caplog.text and "unreadable" in caplog.text
    group = pd.read_csv(
        out / f"group_desc-{'recon' if 'recon' in table else 'featdecoding'}_eval.tsv", sep="\t"
    )
    assert "sub-01" in set(group["participant_id"]) and "sub-02" not in set(group["participant_id"])
    html = (out / "group.html").read_text()
    assert "unreadable (left out)" in html


def test_outputs_and_simulated_input_pass_the_bids_validator(reconstructed, simulated_dataset):
    validator = find_validator()
    if validator is None:
        pytest.fail("bids-validator-deno is part of the test extra but is not installed")
    for dataset in (reconstructed / "out", simulated_dataset):
        result = subprocess.run(
            [validator, str(dataset), "--format", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        issues = json.loads(result.stdout)["issues"]["issues"]
        errors = [(i["code"], i.get("location")) for i in issues if i["severity"] == "error"]
        assert errors == [], dataset
