"""Smoothing before the group comparison (``CompareConfig.smooth_sigma``): a planted difference in pixel-noisy maps
that the per-pixel test misses, calibration under random splits, and what is smoothed, recorded and configurable."""

import json

import numpy as np
import pytest
from scipy import ndimage, stats

from napari_global_xai.analyses.compare import compare_groups, split_groups
from napari_global_xai.analyses.compare_normalise import smooth_maps, smoothing_sigma
from napari_global_xai.analyses.compare_pipeline import run_compare
from napari_global_xai.analyses.compare_result import FILES, CompareResult
from napari_global_xai.analysis_config import COMPARE_SMOOTH_FRACTION, CompareConfig

H, W = 96, 128  # default σ: COMPARE_SMOOTH_FRACTION of 96 px


def _pixel_noisy(rng, n=24, blobs=6, amp=2.0):
    """Signed maps like Integrated Gradients': a few pixels (0.5 %, edges in a real map) swing 15× more between
    images than the rest, and group A's images add evidence as blobs at random places inside a disc R."""
    yy, xx = np.mgrid[:H, :W]
    region = np.hypot(yy - 40, xx - 80) <= 12
    scale = np.where(rng.random((H, W)) < 0.005, 15.0, 1.0)
    maps = scale * rng.normal(size=(n, H, W))
    labels = np.array([1] * (n // 2) + [0] * (n - n // 2))
    rng.shuffle(labels)
    rows, cols = np.nonzero(region)
    for i in np.nonzero(labels == 1)[0]:
        for k in rng.integers(0, len(rows), blobs):
            maps[i] += amp * np.exp(-((yy - rows[k]) ** 2 + (xx - cols[k]) ** 2) / (2 * 3.0**2))
    return maps.astype(np.float32), labels, region


def test_smoothing_finds_a_planted_difference_that_the_per_pixel_test_misses_and_nothing_far_from_it():
    maps, labels, region = _pixel_noisy(np.random.default_rng(0))
    values = labels.astype(str)
    far = ndimage.distance_transform_edt(~region) > 12  # blobs reach 2 blob-σ beyond R, smoothing a few px more
    per_pixel = run_compare(maps, values, CompareConfig(n_permutations=200, max_permutations=200, smooth_sigma=0))
    smoothed = run_compare(maps, values, CompareConfig(n_permutations=200, max_permutations=200))
    # per pixel, the family-wise threshold is set by the noisiest pixels: nothing in R reaches it
    assert (per_pixel.significant_fwe[region] > 0).sum() == 0
    # smoothed, a quarter of R or more is found, all of it "A higher", and nothing far from R, FWE or FDR
    assert (smoothed.significant_fwe[region] == 1).sum() >= 0.25 * region.sum()
    assert (smoothed.significant_fwe == 2).sum() == 0 and (smoothed.significant_fwe[far] > 0).sum() == 0
    assert (smoothed.significant[far] > 0).sum() == 0
    assert smoothed.metadata["smooth_sigma"] == pytest.approx(COMPARE_SMOOTH_FRACTION * H)


def test_smoothed_comparison_is_calibrated_under_random_splits():
    """Random splits of the same maps: every pixel is null, so a split with any family-wise (or, BH under the
    complete null, any FDR) pixel is an error; at most alpha of the splits may show one (binomial bound, p < 0.005
    when calibrated)."""
    rng = np.random.default_rng(1)
    maps, labels, _ = _pixel_noisy(rng)
    n_splits, alpha = 60, 0.05
    bound = int(stats.binom.ppf(0.995, n_splits, alpha))
    fwe_errors = fdr_errors = 0
    for k in range(n_splits):
        config = CompareConfig(n_permutations=200, max_permutations=200, seed=k)
        r = run_compare(maps, rng.permutation(labels).astype(str), config)
        fwe_errors += bool((r.significant_fwe > 0).any())
        fdr_errors += bool((r.significant > 0).any())
    assert fwe_errors <= bound and fdr_errors <= bound, (fwe_errors, fdr_errors, bound)


def test_both_groups_get_the_same_gaussian_and_the_result_records_it(tmp_path):
    rng = np.random.default_rng(2)
    maps, labels, _ = _pixel_noisy(rng, n=10)
    before = maps.copy()
    split = split_groups(labels.astype(str))
    result = run_compare(maps, labels.astype(str), CompareConfig(n_permutations=50, smooth_sigma=2.5), out_dir=tmp_path)
    np.testing.assert_array_equal(maps, before)  # the caller's maps are not smoothed in place
    # the difference is that of the group means smoothed by one kernel (smoothing is linear)
    expected = ndimage.gaussian_filter(maps[split.assign == 1].mean(0) - maps[split.assign == 0].mean(0), 2.5)
    np.testing.assert_allclose(result.difference, expected, atol=1e-5)
    back = CompareResult.open(tmp_path)
    assert back.summary()["smooth_sigma"] == 2.5
    assert json.loads((tmp_path / FILES.summary).read_text())["smooth_sigma"] == 2.5
    # σ 0 is the per-pixel test on the maps as they are
    plain = run_compare(maps, labels.astype(str), CompareConfig(n_permutations=50, max_permutations=50, smooth_sigma=0))
    direct = compare_groups(maps, split, n_permutations=50)
    np.testing.assert_array_equal(plain.p, direct.p)
    assert smooth_maps(maps, 0.0) is maps and smoothing_sigma((3, 40, 90)) == pytest.approx(
        40 * COMPARE_SMOOTH_FRACTION
    )


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "3", True])
def test_smoothing_sigma_is_validated(bad):
    with pytest.raises(ValueError, match="smooth_sigma"):
        CompareConfig(smooth_sigma=bad)


def test_cli_smooth_option_defaults_to_the_config_and_makes_it():
    from napari_global_xai.cli import build_parser

    base = ["compare", "e", "--csv", "c.csv", "--column", "g", "--out", "o"]
    parser = build_parser()
    assert parser.parse_args(base).smooth_sigma == CompareConfig().smooth_sigma
    assert CompareConfig(smooth_sigma=parser.parse_args([*base, "--smooth", "0"]).smooth_sigma).smooth_sigma == 0.0
