"""The cohort reduction over a store's float16 maps: exact sums of the stored values, whatever the blocks.

The stores are written here with Zarr directly (float16 or float32, one image per chunk, as the store writer lays
them out), holding signed values down to float16's subnormals, maps that are zero everywhere, and NaN or Inf where
a test plants them; the reference is a sum in Python integers of each value's exact multiple of 2**-24.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_global_xai.aggregate import FRACTION_BITS, GlobalMapAccumulator
from napari_global_xai.cohort.reduce import cohort_reduce, half_codes
from napari_global_xai.store.reader import MapBlocks

N, L, H, W = 23, 3, 6, 5
LABELS = ["a", "b", "c"]


def _maps(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    maps = (rng.standard_normal((N, L, H, W)) * rng.choice([1e-6, 0.5, 300.0], (N, L, 1, 1))).astype(np.float16)
    maps[3, 1] = 0.0
    maps[7, :] = -0.0  # negative zeros only: still a zero map
    maps[9, 2, 0, 0] = np.float16(2.0**-24)  # the smallest subnormal makes a map non-zero
    maps[9, 2, 1:] = 0
    return maps


def _store(tmp_path, maps: np.ndarray, scale: float) -> MapBlocks:
    root = tmp_path / "store.zarr"
    group = zarr.open_group(str(root), mode="w")
    array = group.create_array("maps/0", shape=maps.shape, chunks=(1, 1, H, W), dtype=maps.dtype)
    array[...] = maps
    return MapBlocks(root, {"map_scale": scale})


def _exact_mean(maps: np.ndarray, use: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per label: the mean over the used non-zero maps of stored / scale, from Python-integer sums of 2**-24 units,
    and the counts."""
    units = (maps.astype(np.float64) * 2.0**24).astype(np.int64)  # exact: float16 is a multiple of 2**-24
    nonzero = np.abs(units).reshape(N, L, -1).max(axis=2) > 0
    means, counts = [], []
    for lab in range(L):
        rows = np.nonzero(use[:, lab] & nonzero[:, lab])[0]
        total = units[rows, lab].astype(object).sum(axis=0)  # Python integers: no rounding at any size
        means.append(np.asarray(total, np.float64) / 2.0**24 / scale / max(len(rows), 1))
        counts.append(len(rows))
    return np.stack(means), np.asarray(counts)


@pytest.mark.parametrize("scale", [2.0**18, 1.0, 2.0**10])
def test_float16_means_equal_the_exact_mean_and_leave_out_zero_maps(tmp_path, scale):
    maps = _maps(0)
    rng = np.random.default_rng(1)
    cohort = rng.random((N, L)) < 0.6
    rest = ~cohort
    blocks = _store(tmp_path, maps, scale)
    got = cohort_reduce(blocks, [0, 1, 2], LABELS, [cohort, rest], block=4)
    for acc, use in zip(got, [cohort, rest]):
        mean, count = _exact_mean(maps, use, scale)
        result = acc.result()
        np.testing.assert_array_equal(result.count, count)
        # one rounding to the accumulator's fixed point, of the exact total
        np.testing.assert_allclose(result.mean, mean, rtol=0, atol=2.0**-FRACTION_BITS)
        assert np.isnan(result.std).all()  # no moments in a cohort


def test_any_blocks_and_any_rows_give_the_same_means_to_the_bit(tmp_path):
    maps = _maps(2)
    blocks = _store(tmp_path, maps, 2.0**18)
    use = np.zeros((N, L), bool)
    use[[0, 1, 2, 5, 6, 11, 12, 13, 14, 20, 22]] = True  # runs of consecutive images and single ones
    means = [cohort_reduce(blocks, [0, 1, 2], LABELS, [use], block=b)[0].result().mean for b in (1, 3, 32)]
    for mean in means[1:]:
        np.testing.assert_array_equal(mean, means[0])
    # labels picked out of order: the same planes
    picked = cohort_reduce(blocks, [2, 0], ["c", "a"], [use[:, [2, 0]]], block=3)[0].result().mean
    np.testing.assert_array_equal(picked, means[0][[2, 0]])


def test_a_float32_store_gives_the_accumulators_sums_to_the_bit(tmp_path):
    maps = _maps(3).astype(np.float32) * np.float32(2.0**18)
    use = np.ones((N, L), bool)
    got = cohort_reduce(_store(tmp_path, maps, 2.0**18), [0, 1, 2], LABELS, [use], block=5)[0].result()
    nonzero = np.abs(maps).reshape(N, L, -1).max(axis=2) > 0
    expected = GlobalMapAccumulator(LABELS, (H, W), moments=False).update(maps / np.float32(2.0**18), nonzero)
    np.testing.assert_array_equal(got.mean, expected.result().mean)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -np.nan])
def test_nan_or_inf_in_a_float16_map_is_refused(tmp_path, bad):
    maps = _maps(4)
    maps[17, 1, 2, 3] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        cohort_reduce(_store(tmp_path, maps, 2.0**18), [0, 1, 2], LABELS, [np.ones((N, L), bool)], block=4)


def test_half_codes_read_zero_maps_and_the_largest_magnitude_from_the_bits():
    maps = np.zeros((3, 2, 4, 4), np.float16)
    maps[0, 0, 1, 1] = -7.5
    maps[0, 1, 2, 2] = 3.0
    maps[1, 1] = -0.0
    maps[2, 0, 0, 0] = np.float16(-(2.0**-24))
    nonzero, tops = half_codes(maps)
    np.testing.assert_array_equal(nonzero, [[True, True], [False, False], [True, False]])
    magnitudes = tops.astype(np.uint16).view(np.float16)  # each map's largest magnitude
    np.testing.assert_array_equal(magnitudes, np.float16([[7.5, 3.0], [0, 0], [2.0**-24, 0]]))
