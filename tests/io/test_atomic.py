"""Atomic and shared writes: no partial files, safe under concurrent writers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from bids_recon.errors import OutputNotWritableError
from bids_recon.io.atomic import (
    atomic_write,
    atomic_write_json,
    private_path,
    remove_orphans,
    write_shared,
)
from bids_recon.io.derivatives import init_output_dataset, sanitize_label

WRITER = """
import sys
from pathlib import Path
from bids_recon.io.atomic import atomic_write
path, letter = Path(sys.argv[1]), sys.argv[2]
for _ in range(150):
    atomic_write(path, letter * 200_000)
"""


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "b.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


def test_failed_write_keeps_old_content_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.txt"
    atomic_write(path, "old")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OutputNotWritableError, match="keep.txt"):
        atomic_write(path, "new" * 1000)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_unwritable_folder_is_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputNotWritableError):
        atomic_write(blocker / "sub" / "x.txt", "data")


def test_concurrent_writers_never_expose_partial_files(tmp_path):
    path = tmp_path / "shared.txt"
    atomic_write(path, "A" * 200_000)
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), letter]) for letter in "AB"
    ]
    seen = set()
    while any(w.poll() is None for w in writers):
        content = path.read_text()
        assert len(content) == 200_000 and len(set(content)) == 1
        seen.add(content[0])
        time.sleep(0.001)
    assert all(w.returncode == 0 for w in writers)
    assert not [p for p in tmp_path.iterdir() if p.name != "shared.txt"]


def test_write_shared_skips_identical_content(tmp_path):
    path = tmp_path / "dataset_description.json"
    assert write_shared(path, "same\n")
    stamp = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert not write_shared(path, "same\n")
    assert path.stat().st_mtime_ns == stamp
    assert write_shared(path, "changed\n")


def test_init_output_dataset_is_idempotent(tmp_path, simulated_dataset):
    out = tmp_path / "out"
    init_output_dataset(out, simulated_dataset)
    first = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    init_output_dataset(out, simulated_dataset)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == first
    assert set(first) == {
        "dataset_description.json",
        ".bidsignore",
        "README.md",
        "descriptions.tsv",
    }


def test_sanitize_label():
    assert sanitize_label("n03954393_10038") == "n0395439310038"
    assert sanitize_label("colorExpStim19_yellow_+") == "colorExpStim19yellow"
    assert sanitize_label("conv5_4") == "conv54"


def test_remove_orphans_deletes_only_dead_writers_temporaries(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    orphan = tmp_path / "sub" / f".x.npy.{host}-{dead.pid}-ab12cd34.tmp"
    orphan_dir = tmp_path / f".key.{host}-{dead.pid}-ef56ab78.tmp"
    alive = tmp_path / "sub" / f".y.json.{host}-{os.getpid()}-0123abcd.tmp"
    elsewhere = tmp_path / f".z.json.another-host-{dead.pid}-99aa88bb.tmp"
    orphan.parent.mkdir()
    (orphan_dir / "inner").mkdir(parents=True)
    for path in (orphan, alive, elsewhere):
        path.write_text("partial")
    assert remove_orphans(tmp_path) == 2
    assert not orphan.exists() and not orphan_dir.exists()
    assert alive.exists() and elsewhere.exists()


def test_temporary_names_identify_their_writer(tmp_path):
    path = private_path(tmp_path / "layer.npy")
    assert path.name.startswith(f".layer.npy.{socket.gethostname()}-{os.getpid()}-")
    assert path.suffix == ".tmp" and path.parent == tmp_path


def _increment(path, times):
    from bids_recon.io.atomic import atomic_write, update_lock

    for _ in range(times):
        with update_lock(path):
            atomic_write(path, str(int(path.read_text()) + 1))


def test_update_lock_serializes_jobs_and_leaves_nothing(tmp_path):
    import multiprocessing
    import socket

    from bids_recon.io.atomic import update_lock

    counter = tmp_path / "stimuli.tsv"
    counter.write_text("0")
    jobs = [multiprocessing.get_context("fork").Process(target=_increment, args=(counter, 25))
            for _ in range(4)]  # fmt: skip
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
    assert counter.read_text() == "100"  # no update lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stimuli.tsv"]  # no lock file left
    stale = tmp_path / ".stimuli.tsv.lock"  # a killed holder of this host: broken at once
    stale.mkdir()
    (stale / f"{socket.gethostname()}-{2**22 + 12345}").touch()
    with update_lock(counter):
        pass
    assert not stale.exists()
