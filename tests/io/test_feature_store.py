"""Layer files of the feature cache: rows written, columns read back, float16 with a scale."""

from __future__ import annotations

import numpy as np
import pytest

from bids_recon.io.feature_store import FeatureCache, cached_layers


def fill(cache: FeatureCache, layer: str, values: np.ndarray, batch: int = 3) -> None:
    writer = cache.writer(layer, values.shape[1])
    for start in range(0, len(values), batch):
        writer[slice(start, start + batch)] = values[start : start + batch]
    cache.commit(layer, writer)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_columns_read_back_what_rows_wrote(tmp_path, dtype):
    rng = np.random.default_rng(0)
    values = (rng.normal(size=(10, 37)) * 3000).astype(np.float32)  # beyond 2048: scaled in fp16
    cache = FeatureCache(tmp_path, "net", [tmp_path / f"{k}.png" for k in range(10)], 2**30, dtype)
    assert not cache.has("conv1")
    fill(cache, "conv1", values)
    assert cache.has("conv1") and not list(tmp_path.rglob(".*.tmp"))  # no private file left
    for cols in (slice(0, 37), slice(5, 6), slice(30, 37)):
        read = cache.read_columns("conv1", cols)
        assert read.dtype == np.float32
        tolerance = 0 if dtype == np.float32 else 2**-11  # float16 rounding, relative
        np.testing.assert_allclose(read, values[:, cols], rtol=tolerance, atol=0)
    if dtype == np.float32:
        np.testing.assert_array_equal(cache.load("conv1"), values)


def test_float16_refuses_values_beyond_its_range_after_the_first_batch(tmp_path):
    cache = FeatureCache(tmp_path, "net", [tmp_path / "a.png"] * 4, 2**30, np.float16)
    writer = cache.writer("fc", 2)
    writer[slice(0, 2)] = np.ones((2, 2), dtype=np.float32)  # scale: largest value -> 1
    with pytest.raises(OverflowError):
        writer[slice(2, 4)] = np.full((2, 2), 1e6, dtype=np.float32)


def test_float16_caches_twice_the_layers_of_float32():
    units = {"a": 100, "b": 100, "c": 200}
    assert cached_layers(units, 10, 4 * 10 * 200) == {"a", "b"}
    assert cached_layers(units, 10, 4 * 10 * 200, itemsize=2) == {"a", "b", "c"}
