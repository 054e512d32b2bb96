"""Hostile inputs, signals and odd places: each ends with a documented exit code and a message
that names the file, never a traceback or stray files (issue 13's matrix)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import participant_args

from bids_recon.cli import main


def test_dataset_below_a_folder_named_like_a_datatype(simulated_dataset, tmp_path):
    dataset = tmp_path / "perf" / "ds"
    shutil.copytree(simulated_dataset, dataset)
    args = participant_args(dataset, tmp_path, "--network", "builtin", "--stages", "samples")
    assert main(args) == 0
    assert (tmp_path / "out" / "sub-01" / "func" / "sub-01_desc-blocks_table.tsv").is_file()


def test_stimuli_linked_into_an_annex_outside_the_folder(simulated_dataset, tmp_path):
    dataset = tmp_path / "ds"
    shutil.copytree(simulated_dataset, dataset, ignore=shutil.ignore_patterns("stimuli"))
    annex = tmp_path / "annex"
    shutil.copytree(simulated_dataset / "stimuli", annex)
    for image in annex.rglob("*"):
        if image.is_file():
            link = dataset / "stimuli" / image.relative_to(annex)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(image)
    args = participant_args(dataset, tmp_path, "--network", "builtin", "--stages", "samples")
    assert main(args) == 0
    table = (tmp_path / "out" / "stimuli.tsv").read_text()
    assert "annex" not in table and ".png" in table


def test_a_catastrophic_spec_pattern_is_refused_up_front(tmp_path):
    import time

    from bids_recon.errors import UsageError
    from bids_recon.specs import load_spec

    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "x"\n[sets.training]\nrole = "training"\n'
        'filters = { session = "(\\\\w+)+X" }\n[sets.test]\nrole = "test"\n'
        '[rois]\npattern = "{roi}.nii.gz"\n'
    )
    start = time.monotonic()
    try:
        load_spec(spec)
    except UsageError as err:
        assert err.exit_code == 64
        assert "[sets.training.filters]" in str(err) and "exponential" in str(err)
    else:
        raise AssertionError("the nested repetition was accepted")
    assert time.monotonic() - start < 1


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_bad_stimulus_images_stop_the_run_before_any_output(simulated_dataset, tmp_path, caplog):
    import io

    from PIL import Image

    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(jpeg, format="JPEG")
    for name, content in (
        ("bomb", png_header_only(20000, 20000)),
        ("large", png_header_only(10000, 9000)),
        ("garbage", b"not an image at all"),
        ("truncated", jpeg.getvalue()[: len(jpeg.getvalue()) // 2]),
    ):
        dataset = tmp_path / name / "ds"
        shutil.copytree(simulated_dataset, dataset)
        victim = sorted((dataset / "stimuli").rglob("*.png"))[0]
        victim.write_bytes(content)
        args = participant_args(dataset, tmp_path / name, "--network", "builtin")
        assert main(args) == 65, name
        assert f"Stimulus image {victim}" in caplog.text
        assert not (tmp_path / name / "out").exists()
        caplog.clear()


@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [(signal.SIGTERM, 143, "Terminated (SIGTERM)"), (signal.SIGINT, 130, "Interrupted (SIGINT)")],
)
@pytest.mark.slow
def test_signals_end_the_run_with_one_line_and_no_temporary_files(
    simulated_dataset, tmp_path, sig, code, line
):
    out, work = tmp_path / "out", tmp_path / "work"
    command = [sys.executable, "-m", "bids_recon", str(simulated_dataset), str(out)]
    command += ["participant", "-w", str(work), "--skip-bids-validation", "--network", "builtin"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(work.rglob(".*.tmp")):
        time.sleep(0.02)  # wait until the run holds temporary files
    process.send_signal(sig)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == code, output[-2000:]
    assert output.count(line) == 1 and "Traceback" not in output
    assert not list(out.rglob(".*.tmp")) and not list(work.rglob(".*.tmp"))
    log = next((out / "logs").glob("bids_recon-*.log")).read_text()
    assert line in log and "temporary file(s)" in log


def test_a_full_disk_leaves_no_temporary_files(simulated_dataset, tmp_path, monkeypatch):
    from bids_recon.errors import OutputNotWritableError
    from bids_recon.io.atomic import private_path
    from bids_recon.workflows import participant

    def fill_the_disk(config, *args, **kwargs):
        private_path(config.work_dir / "features" / "layer.npy").parent.mkdir(parents=True)
        private_path(config.work_dir / "features" / "layer.npy").write_bytes(b"\0" * 1024)
        raise OutputNotWritableError("Cannot write features: No space left on device")

    monkeypatch.setattr(participant, "run_decode_stage", fill_the_disk)
    args = participant_args(simulated_dataset, tmp_path, "--network", "builtin")
    assert main([*args, "--stop-on-first-crash"]) == 73
    assert not list((tmp_path / "work").rglob(".*.tmp"))


def test_a_mask_beyond_the_field_of_view_is_a_warning_in_log_and_report(
    simulated_dataset, tmp_path
):
    import nibabel as nib
    import numpy as np

    mask_file = next((simulated_dataset / "sourcedata" / "sub-01" / "anat").glob("*_V1d.nii.gz"))
    mask = nib.load(mask_file)
    data = np.asarray(mask.dataobj)
    columns = np.argwhere(data > 0)[:, 0]
    moved = mask.affine.copy()  # half of the mask moved beyond the grid's last x column
    moved[0, 3] += mask.header.get_zooms()[0] * (mask.shape[0] - np.median(columns))
    user = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(data, moved), user)
    args = ["--network", "builtin", "--stages", "samples", "report"]
    args += ["--roi", "VC", "mine", "--roi-mask", f"mine={user}"]
    assert main(participant_args(simulated_dataset, tmp_path, *args)) == 0
    log = next((tmp_path / "out" / "logs").glob("bids_recon-*.log")).read_text()
    assert f"ROI mask {user} loses" in log and "ROI mine is smaller than drawn" in log
    assert "ROI mine is smaller than drawn" in (tmp_path / "out" / "sub-01.html").read_text()


def test_cheap_checks_answer_before_the_heavy_imports(tmp_path):
    """An empty folder or a broken spec is reported before torch, nilearn or pybids load."""
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_spec = tmp_path / "spec.toml"
    bad_spec.write_text("name = [unclosed")
    probe = (
        "import sys; from bids_recon.cli import main; code = main(sys.argv[1:]); "
        "heavy = [m for m in ('torch', 'nilearn', 'bids') if m in sys.modules]; "
        "print(code, heavy)"
    )
    for extra, words in (
        ([], "No dataset spec given"),
        (["--dataset-spec", str(bad_spec)], "TOML"),
    ):
        args = [str(empty), str(tmp_path / "out"), "participant", *extra]
        result = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=False
        )
        assert result.stdout.strip() == "64 []" and words in result.stderr
    assert not (tmp_path / "out").exists()
