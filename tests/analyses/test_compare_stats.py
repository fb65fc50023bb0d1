"""Group comparison statistics: per-pixel ties against an exact enumeration, the p-floor refinement, what is
compared (raw attributions vs shares) and the normalisation artefact, the total-evidence test, the result folder."""

import itertools
import json
import math

import numpy as np
import pytest

from napari_global_xai.analyses.compare import REFINE_BELOW, all_splits, compare_groups, split_groups
from napari_global_xai.analyses.compare_normalise import (
    MEANINGS,
    detect_normalisation,
    prepare_maps,
    total_evidence,
)
from napari_global_xai.analyses.compare_pipeline import run_compare
from napari_global_xai.analyses.compare_result import FILES, CompareResult, fdr_min_pixels
from napari_global_xai.analysis_config import COMPARE_NORMALISATIONS, CompareConfig
from napari_global_xai.errors import InputError


def _exact_p(units: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Exact two-sided permutation p per pixel, in integer arithmetic (``units``: (n, P) int64)."""
    n, n_a = len(labels), int(labels.sum())
    n_b = n - n_a
    total = units.sum(0)

    def stat(is_a):  # n_a·n_b·(mean A − mean B) = n_b·sum A − n_a·sum B, exact in integers
        s_a = units[is_a].sum(0)
        return np.abs(n_b * s_a - n_a * (total - s_a))

    observed = stat(labels == 1)
    count = np.zeros(units.shape[1], np.int64)
    for idx in itertools.combinations(range(n), n_a):
        is_a = np.zeros(n, bool)
        is_a[list(idx)] = True
        count += stat(is_a) >= observed
    return count / math.comb(n, n_a)


def test_ties_are_per_pixel_and_the_exhaustive_test_equals_an_exact_enumeration():
    rng = np.random.default_rng(3)
    n = 10  # 5 vs 5: 252 distinct splits, fewer than the permutations asked for, so every split is enumerated
    labels = np.array([1, 0] * 5)
    units = rng.integers(0, 6, size=(n, 4, 5)).astype(np.int64)  # many exact ties
    units[labels == 1, 0, 0] += 20  # a strong effect ...
    units[:, 1, 1] = units[:, 0, 0]  # ... also on a faint pixel
    units[:, 3, 4] = 7  # a constant pixel: untested
    units[0, 2, 2] = 9  # one image differs
    scale = np.ones((4, 5))
    scale[1, 1] = 2.0**-40  # faint: 2^-40 of the bright pixels, exactly representable in float32
    scale[2, 3] = 2.0**-30
    maps = (units * scale).astype(np.float32)
    split = split_groups(labels.astype(str), groups=("1", "0"))
    assert all_splits(labels, 1000).shape == (252, n)
    for dtype in ("float32", "float64"):
        r = compare_groups(maps, split, n_permutations=1000, dtype=dtype)
        assert r.exact and r.n_permutations == 252 and r.p_floor == pytest.approx(1 / 252)
        expected = _exact_p(units.reshape(n, -1), labels).reshape(4, 5)
        expected[3, 4] = 1.0
        np.testing.assert_array_equal(r.p, expected)
    assert r.p[1, 1] == r.p[0, 0] == 2 / 252  # the faint pixel keeps its small p (a global tolerance gave 1)
    assert not r.tested[3, 4]


def test_the_p_floor_is_lowered_where_it_binds_and_the_fdr_limit_is_reported():
    rng = np.random.default_rng(8)
    n, h, w = 40, 40, 50
    maps = rng.normal(0, 1, size=(n, h, w)).astype(np.float32)
    labels = np.array([1] * 20 + [0] * 20)
    maps[labels == 1, 0, :3] += 3.0  # three pixels with a strong effect among 2,000
    split = split_groups(labels.astype(str), groups=("1", "0"))
    flat = compare_groups(maps, split, n_permutations=200, seed=1)
    s = flat.summary()
    assert s["p_floor"] == pytest.approx(1 / 201) and s["fdr_min_pixels"] == fdr_min_pixels(2000, 1 / 201, 0.05)
    assert s["fdr_min_pixels"] == 200 and s["n_significant_fdr"] == 0  # blind by construction
    refined = compare_groups(maps, split, n_permutations=200, seed=1, max_permutations=20_000)
    s = refined.summary()
    assert s["max_permutations"] == 20_000 and s["fdr_min_pixels"] == 2 and s["n_refined"] < 200
    assert s["n_significant_fdr"] == 3 and set(np.argwhere(refined.significant == 1)[:, 1]) == {0, 1, 2}
    # unrefined pixels keep their first-stage p; refined ones are at most the first stage's bar
    low = flat.p < (REFINE_BELOW + 1) / 201
    np.testing.assert_array_equal(refined.p[~low], flat.p[~low])
    np.testing.assert_array_equal(refined.significant_fwe, flat.significant_fwe)


def _planted(rng, n=40, h=30, w=40):
    """Raw maps: every image spreads evidence over the field; group A adds evidence in a region R."""
    region = np.zeros((h, w), bool)
    region[5:14, 6:18] = True
    maps = rng.gamma(16.0, 1 / 16, size=(n, h, w))
    labels = np.array([1] * (n // 2) + [0] * (n - n // 2))
    rng.shuffle(labels)
    rows, cols = np.nonzero(region)
    maps[np.ix_(labels == 1, rows)[0], rows, cols] += 10.0
    return maps, labels, region


def test_raw_comparison_shows_no_other_group_higher_pixels_outside_the_planted_region():
    """The artefact of a shared normalisation: shares manufacture "B higher" outside R; raw maps do not (pixel by
    pixel: no smoothing, whose spread of R's edge is tested in test_compare_smoothing.py)."""
    rng = np.random.default_rng(2)
    maps, labels, region = _planted(rng)
    values = labels.astype(str)
    config = CompareConfig(n_permutations=500, max_permutations=500, smooth_sigma=0)
    raw = run_compare(maps, values, config, column="g")
    shares = run_compare(
        maps, values, CompareConfig(n_permutations=500, normalisation="shares", smooth_sigma=0), column="g"
    )
    assert raw.metadata["normalisation"] == "raw" and raw.metadata["meaning"] == MEANINGS["raw"]
    assert (shares.significant[~region] == 2).sum() > 1000  # the artefact, shown by shares (FDR)
    assert (raw.significant_fwe[region] == 1).sum() >= 0.9 * region.sum()
    assert (raw.significant_fwe[~region] > 0).sum() == 0  # the family-wise map lies inside R
    # "other group higher" outside R: no more than random splits give (20 splits of the same sizes)
    null = []
    for k in range(20):
        r = run_compare(
            maps, rng.permutation(values), CompareConfig(n_permutations=200, seed=k, smooth_sigma=0), column="g"
        )
        null.append(int((r.significant[~region] > 0).sum()))
    assert (raw.significant[~region] == 2).sum() <= max(null)
    assert raw.metadata["total_evidence"]["ratio"] > 1 and raw.metadata["total_evidence"]["p"] < 0.01


def test_maps_normalised_per_image_are_refused_for_raw_in_one_line_and_shares_are_scale_free():
    rng = np.random.default_rng(5)
    raw = rng.gamma(2.0, 1.0, size=(8, 6, 7))
    mass = raw / raw.sum((1, 2), keepdims=True)
    peak = raw / raw.max((1, 2), keepdims=True)
    assert detect_normalisation(raw) is None
    assert detect_normalisation(mass.astype(np.float16) * 64) == "mass"  # float16 storage and a scale
    assert detect_normalisation(peak) == "max"
    assert detect_normalisation(np.zeros((3, 4, 4))) is None
    for maps, stored in ((mass, None), (raw, "mass")):
        with pytest.raises(InputError, match="--normalisation none") as err:
            prepare_maps(maps, "raw", stored)
        assert "\n" not in str(err.value)
    np.testing.assert_allclose(prepare_maps(raw, "shares"), prepare_maps(mass, "shares"), rtol=1e-6)
    assert set(MEANINGS) == set(COMPARE_NORMALISATIONS)
    with pytest.raises(ValueError, match="normalisation"):
        CompareConfig(normalisation="clr")
    split = split_groups(["a", "b"] * 4)
    assert "not tested" in total_evidence(mass, split, "shares", 100)["note"]


def test_result_folder_round_trip_and_report_section(tmp_path):
    from napari_global_xai.analyses.compare_report import RULES

    rng = np.random.default_rng(1)
    maps, labels, region = _planted(rng, n=16, h=12, w=20)
    regions = region.astype(np.int64) + 1
    result = run_compare(
        maps,
        labels.astype(str),
        CompareConfig(n_permutations=300),
        column="g",
        regions=regions,
        region_names={1: "rest", 2: "planted"},
        out_dir=tmp_path,
    )
    names = {getattr(FILES, f) for f in FILES.__dataclass_fields__}
    assert {p.name for p in tmp_path.iterdir()} == names
    back = CompareResult.open(tmp_path)
    np.testing.assert_allclose(back.p, result.p, rtol=1e-6)
    np.testing.assert_array_equal(back.significant, result.significant)
    np.testing.assert_array_equal(back.split.assign, result.split.assign)
    assert back.summary()["p_floor"] == result.summary()["p_floor"]
    assert back.metadata["normalisation"] == "raw" and back.by_region == json.loads(json.dumps(result.by_region))
    (rule,) = [r for r in RULES if r.pattern == FILES.summary]
    section, used = rule.renderer(tmp_path / FILES.summary, tmp_path, tmp_path)
    facts = dict(section.facts)
    assert facts["compared"].startswith("raw") and "less attribution" in facts["a lower pixel"]
    assert "p-floor" in facts and "FDR" in facts["p-floor"] and section.figures
    assert used == {tmp_path / name for name in names}
