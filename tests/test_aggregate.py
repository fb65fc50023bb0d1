"""Streaming aggregation equals the in-memory computation exactly, for any chunking; merging halves = whole."""

import numpy as np
import pytest

from napari_global_xai.aggregate import GlobalMapAccumulator, overall_map

from _tolerance import float64_atol, pairwise_sum_terms

LABELS = ["a", "b", "any"]


@pytest.fixture
def maps_and_subset():
    rng = np.random.default_rng(1)
    maps = rng.random((23, 3, 8, 10)).astype(np.float32)
    maps /= maps.sum(axis=(2, 3), keepdims=True)  # mass-normalised like real image-wise maps
    include = rng.random((23, 3)) < 0.6
    return maps, include


def _std_atol(std, n_images):
    """float64 std merged in another order (Chan et al.): 4 roundings per image of the std's scale, each image's
    deviation entering the second moment once (tests/_tolerance.py)."""
    return float64_atol(np.nanmax(np.abs(std)), 4 * n_images)


def _accumulate(maps, include, cuts):
    acc = GlobalMapAccumulator(LABELS, maps.shape[2:])
    for a, b in zip(cuts[:-1], cuts[1:]):
        acc.update(maps[a:b], include[a:b])
    return acc.result()


def test_mean_std_count_match_numpy(maps_and_subset):
    maps, include = maps_and_subset
    res = _accumulate(maps, include, [0, len(maps)])
    for lab in range(3):
        sel = maps[include[:, lab], lab].astype(np.float64)
        assert res.count[lab] == len(sel)
        # the int64 fixed-point mean rounds each value to 2**-40 (off by at most half of that on average); numpy's
        # float64 mean rounds its pairwise sum and the division (tests/_tolerance.py; was rtol=1e-6, atol=1e-12)
        mean_atol = 2.0**-41 + float64_atol(np.abs(sel).max(), pairwise_sum_terms(len(sel)) + 1)
        np.testing.assert_allclose(res.mean[lab], sel.mean(0), rtol=0, atol=mean_atol)
        # Chan's streamed float64 moments against numpy's two passes: a few roundings per image of the std's scale
        np.testing.assert_allclose(res.std[lab], sel.std(0), rtol=0, atol=_std_atol(sel.std(0), len(sel)))
    # overall = mean of the disease labels' maps ("any" excluded by default)
    np.testing.assert_allclose(res.overall, res.mean[:2].mean(0))
    assert res.overall_labels == ["a", "b"]


@pytest.mark.parametrize("seed", range(5))
def test_any_chunking_and_order_give_identical_mean(maps_and_subset, seed):
    maps, include = maps_and_subset
    whole = _accumulate(maps, include, [0, len(maps)])
    rng = np.random.default_rng(seed)
    cuts = [0, *sorted(rng.choice(np.arange(1, len(maps)), size=4, replace=False)), len(maps)]
    chunked = _accumulate(maps, include, cuts)
    np.testing.assert_array_equal(chunked.mean, whole.mean)  # bit-identical: int64 fixed-point sums, any order
    np.testing.assert_array_equal(chunked.count, whole.count)
    # the std's float64 moments are merged in another order: float64 rounding (was rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(chunked.std, whole.std, rtol=0, atol=_std_atol(whole.std, len(maps)))
    perm = rng.permutation(len(maps))
    shuffled = _accumulate(maps[perm], include[perm], [0, 7, 15, len(maps)])
    np.testing.assert_array_equal(shuffled.mean, whole.mean)


def test_merging_two_halves_equals_the_whole(maps_and_subset):
    maps, include = maps_and_subset
    whole = _accumulate(maps, include, [0, len(maps)])
    first = GlobalMapAccumulator(LABELS, maps.shape[2:]).update(maps[:9], include[:9])
    second = GlobalMapAccumulator(LABELS, maps.shape[2:]).update(maps[9:], include[9:])
    merged = first.merge(second).result()
    np.testing.assert_array_equal(merged.mean, whole.mean)
    np.testing.assert_array_equal(merged.count, whole.count)
    np.testing.assert_allclose(merged.std, whole.std, rtol=0, atol=_std_atol(whole.std, len(maps)))  # as above


def test_label_without_images_is_nan_and_left_out_of_overall():
    maps = np.ones((2, 3, 4, 4), np.float32)
    include = np.array([[True, False, True], [True, False, False]])
    res = GlobalMapAccumulator(LABELS, (4, 4)).update(maps, include).result()
    assert res.count.tolist() == [2, 0, 1]
    assert np.isnan(res.mean[1]).all()
    np.testing.assert_array_equal(res.overall, res.mean[0])
    np.testing.assert_array_equal(overall_map(res.mean, res.count, LABELS, ["b"]), np.full((4, 4), np.nan))


def test_bad_maps_are_refused():
    acc = GlobalMapAccumulator(LABELS, (4, 4))
    with pytest.raises(ValueError, match=r"maps must be \(k, 3, 4, 4\)"):
        acc.update(np.zeros((2, 2, 4, 4)))
    bad = np.zeros((1, 3, 4, 4))
    bad[0, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        acc.update(bad)
    with pytest.raises(ValueError, match="different labels"):
        acc.merge(GlobalMapAccumulator(["x"], (4, 4)))
