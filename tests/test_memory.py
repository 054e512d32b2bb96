"""Memory estimates and the --mem limit: batches shrink to fit, or the run stops before output."""

from __future__ import annotations

import pytest
import torch
from helpers import participant_args

from bids_recon import memory
from bids_recon.cli import main
from bids_recon.memory import (
    DecodeSizes,
    MemoryLimitError,
    decode_memory,
    fit_batch,
    recon_memory,
    resident_bytes,
)
from bids_recon.workflows import participant


def per_image(size: int) -> dict[str, int]:
    return {"fixed": 2**20, "batch": size * 2**20}


def test_fit_batch_halves_until_the_estimate_fits(monkeypatch):
    monkeypatch.setattr(memory, "resident_bytes", lambda: 2**20)
    assert fit_batch(per_image, 16, 100.0, "stage") == 16
    assert fit_batch(per_image, 16, 6.5, "stage") == 4
    assert fit_batch(per_image, 16, 3.0, "stage") == 1


def test_fit_batch_refuses_when_one_image_does_not_fit(monkeypatch):
    monkeypatch.setattr(memory, "resident_bytes", lambda: 2**20)
    with pytest.raises(MemoryLimitError, match="stage: estimated peak memory.*fixed") as err:
        fit_batch(per_image, 16, 2.5, "stage")
    assert err.value.exit_code == 75


def test_resident_memory_is_this_process():
    import mmap

    # fresh pages (an allocator could hand back pages this process already holds)
    block = mmap.mmap(-1, 64 * 2**20)
    held = resident_bytes()
    block.write(b"\x01" * len(block))  # written, so resident
    assert resident_bytes() - held >= 60 * 2**20
    block.close()


def test_estimates_grow_with_every_size():
    sizes = DecodeSizes(1200, 1200, 126, 5000, {"a": 100_000, "b": 4096})
    base = sum(decode_memory(sizes, 16, "ridge", 10_000, 5, set()).values())
    for bigger in (
        DecodeSizes(2400, 2400, 126, 5000, sizes.units),
        DecodeSizes(1200, 1200, 252, 5000, sizes.units),
        DecodeSizes(1200, 1200, 126, 10_000, sizes.units),
        DecodeSizes(1200, 1200, 126, 5000, {"a": 200_000, "b": 4096}),
    ):
        assert sum(decode_memory(bigger, 16, "ridge", 10_000, 5, set()).values()) > base
    assert sum(decode_memory(sizes, 32, "ridge", 10_000, 5, set()).values()) > base
    small = sum(recon_memory({"a": 1000}, 64, 1, "lbfgs").values())
    assert sum(recon_memory({"a": 1000}, 64, 2, "lbfgs").values()) > small


def test_run_over_the_memory_limit_stops_before_any_output(simulated_dataset, tmp_path, caplog):
    args = participant_args(simulated_dataset, tmp_path, "--network", "builtin", "--mem", "1")
    assert main(args) == 75
    assert "decode stage: estimated peak memory" in caplog.text and "--mem" in caplog.text
    assert not (tmp_path / "out").exists()


def test_batches_shrink_to_fit_the_memory_limit(simulated_dataset, tmp_path, caplog):
    limit = resident_bytes() / 2**20 + 700  # room for the stage at a small batch only
    args = participant_args(
        simulated_dataset, tmp_path, "--network", "builtin", "--mem", f"{limit:.0f}"
    )
    assert main([*args, "--stages", "samples", "decode", "--batch-size", "512"]) == 0
    assert "decode stage: batch size lowered from 512 to" in caplog.text


def test_out_of_memory_during_a_stage_exits_75(simulated_dataset, tmp_path, caplog, monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(participant, "run_participant", exhausted)
    assert main(participant_args(simulated_dataset, tmp_path, "--stages", "samples")) == 75
    assert "out of memory" in caplog.text and "--recon-batch-size" in caplog.text
