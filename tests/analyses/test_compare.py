"""Group difference maps: planted region difference, null splits, p-values against a brute-force loop."""

import numpy as np
import pytest

from napari_global_xai.analyses.compare import (
    TIE_EPS,
    benjamini_hochberg,
    compare_groups,
    group_permutations,
    significance_by_region,
    split_groups,
)
from napari_global_xai.batching import Cancelled
from napari_global_xai.control import RunControl

H, W = 30, 41  # shapes the project does not use


def _regions():
    reg = np.zeros((H, W), np.int64)
    reg[4:12, 5:16] = 1  # region A: shared evidence
    reg[18:27, 24:37] = 2  # region B: only group 2's evidence
    return reg


def _stack(rng, n, assign, effect=0.6, noise=0.3):
    reg = _regions()
    maps = rng.normal(0, noise, size=(n, H, W))
    maps[:, reg == 1] += 1.0
    maps = maps.reshape(n, -1)
    maps[np.ix_(np.nonzero(assign == 0)[0], np.nonzero((reg == 2).ravel())[0])] += effect
    return maps.reshape(n, H, W), reg


def test_planted_subgroup_region_holds_the_significant_pixels():
    rng = np.random.default_rng(5)
    n = 40
    values = np.array(["site_x"] * 22 + ["site_y"] * 18, dtype=object)
    rng.shuffle(values)
    split = split_groups(values, groups=("site_x", "site_y"), column="site")
    maps, reg = _stack(rng, n, split.assign)
    result = compare_groups(maps, split, n_permutations=1000, seed=3)
    rows = {r["region"]: r for r in significance_by_region(result, reg, {1: "A", 2: "B"})}
    n_sig = int((result.significant > 0).sum())
    assert n_sig >= 0.5 * (reg == 2).sum()  # power: most of region B found
    assert rows["B"]["share_of_significant"] >= 0.8
    assert rows["B"]["n_b_gt_a"] == rows["B"]["n_significant"]  # group 2 (B) has more evidence there
    # the difference map is the difference of the group means
    np.testing.assert_allclose(
        result.difference, maps[split.assign == 1].mean(0) - maps[split.assign == 0].mean(0), atol=1e-5
    )
    assert result.n_permutations == 1000 and not result.cancelled
    fwe = result.significant_fwe > 0
    assert fwe.sum() <= n_sig and (reg[fwe] == 2).mean() >= 0.8


def test_null_split_gives_no_significant_pixel_in_95_percent_of_seeds():
    clean = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        n = 30
        maps = rng.normal(0, 0.3, size=(n, H, W))
        maps[:, _regions() == 1] += 1.0
        values = rng.integers(0, 2, size=n)
        values[:2], values[2:4] = 0, 1
        split = split_groups(values.astype(str), column="random")
        result = compare_groups(maps, split, n_permutations=1000, seed=seed)
        clean += int((result.significant > 0).sum() == 0)
    assert clean >= 19


def _brute_force(maps, labels, perms, tie_rule):
    x = maps.reshape(len(maps), -1).astype(np.float64)
    obs = abs(x[labels == 1].mean(0) - x[labels == 0].mean(0))
    thr = obs - tie_rule
    count = np.zeros(x.shape[1])
    maxes = []
    for perm in perms:
        d = abs(x[perm == 1].mean(0) - x[perm == 0].mean(0))
        count += d >= thr
        maxes.append(d.max())
    maxes = np.array(maxes)
    p = (1 + count) / (1 + len(perms))
    p_fwe = np.array([(1 + (maxes >= t).sum()) / (1 + len(perms)) for t in thr])
    return p, p_fwe


def test_p_values_equal_a_brute_force_loop():
    rng = np.random.default_rng(11)
    maps = rng.gamma(2.0, 1.0, size=(11, 3, 4))
    maps[:7, 1, 2] += 2.0
    values = ["a"] * 7 + ["b"] * 4
    split = split_groups(values, groups=("a", "b"))
    result = compare_groups(
        maps, split, n_permutations=300, seed=9, dtype="float64", permutations_per_batch=64, max_elements=50
    )
    perms = group_permutations(split.assign.astype(np.int64), 300, seed=9)
    x = maps.reshape(11, -1)
    tie = TIE_EPS * np.finfo(np.float64).eps * np.abs(x - x.mean(0)).max(0)  # per pixel
    p, p_fwe = _brute_force(maps, split.assign, perms, tie)
    np.testing.assert_array_equal(result.p.ravel(), p)
    np.testing.assert_array_equal(result.p_fwe.ravel(), p_fwe)
    # float32 on the same permutations: the same p-values up to rounding near ties
    r32 = compare_groups(maps, split, n_permutations=300, seed=9)
    assert np.abs(r32.p - result.p).max() <= 2 / 301


def test_benjamini_hochberg_matches_its_definition():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216, np.nan])
    sig, q = benjamini_hochberg(p, 0.05)
    m = 10
    k = max(i for i in range(1, m + 1) if np.sort(p[:m])[i - 1] <= 0.05 * i / m)
    assert sig[:m].sum() == k and not sig[-1] and np.isnan(q[-1])
    expected_q = [min(1, min(p[j] * m / (j + 1) for j in range(i, m))) for i in range(m)]
    np.testing.assert_allclose(q[:m], expected_q)


def test_group_splits():
    # numeric column with many values: median split, missing values left out
    ages = ["61", "45", "", "70", "52", "NA", "66", "40"]
    s = split_groups(ages, column="age")
    assert s.assign.tolist() == [1, 0, -1, 1, 0, -1, 1, 0]
    s = split_groups(ages, threshold=60, column="age")
    assert s.names == ("age > 60", "age ≤ 60")
    # label status (0/1): A = positives
    s = split_groups(["0", "1", "1", "0", "1"], column="haemorrhage")
    assert s.assign.tolist() == [0, 1, 1, 0, 1]
    # a level against the rest
    s = split_groups(["x", "y", "z", "x", "z", "y"], groups=("x", "rest"), column="site")
    assert s.assign.tolist() == [1, 0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="3 levels"):
        split_groups(["x", "y", "z", "x"], column="site")
    with pytest.raises(ValueError, match="no image has the value 'w'"):
        split_groups(["x", "y", "x", "y"], groups=("w", "x"), column="site")
    with pytest.raises(ValueError, match="each needs ≥ 2"):
        split_groups(["x", "y", "y", "y"], column="site")


def test_cancel_keeps_finished_permutations():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(12, 5, 6))
    split = split_groups(["a", "b"] * 6)
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 2  # two batches run

    r = compare_groups(maps, split, n_permutations=1000, permutations_per_batch=100, control=RunControl(cancel=cancel))
    assert r.cancelled and r.n_permutations == 200
    assert r.p.min() >= 1 / 201
    with pytest.raises(Cancelled):
        compare_groups(maps, split, n_permutations=1000, control=RunControl(cancel=lambda: True))


def test_inputs_are_not_modified():
    rng = np.random.default_rng(4)
    maps = rng.random((8, 6, 7)).astype(np.float32)
    before = maps.copy()
    r = compare_groups(maps, split_groups(["a", "b"] * 4), n_permutations=100)
    np.testing.assert_array_equal(maps, before)
    assert r.tested.all()
