"""Device choice and process-wide settings."""

from __future__ import annotations

import pytest
import torch

from bids_recon.errors import UsageError
from bids_recon.runtime import resolve_device


def test_cpu_and_auto_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_says_how_to_expose_one():
    with pytest.raises(UsageError, match="--nv .*--gpus all"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU-only: TF32 is a CUDA setting")
def test_cuda_runs_in_full_float32():
    resolve_device("cuda")
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
