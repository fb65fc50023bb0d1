"""perturb rankings, blend and the one blur default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_global_xai.config import BLUR_SIGMA_FRACTION
from napari_global_xai.perturb import (
    apply_fill,
    fraction_counts,
    gaussian_blur,
    make_fill,
    pixel_ranking,
    rank_positions,
    removed_mask,
)


def test_blur_default_is_the_config_fraction_of_the_shorter_side():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 2, 30, 50)).astype(np.float32))
    expected = gaussian_blur(x, BLUR_SIGMA_FRACTION * 30)
    torch.testing.assert_close(make_fill("blur", x), expected)
    removed = torch.zeros(30, 50, dtype=torch.bool)
    removed[:10] = True
    y = apply_fill(x, removed, "blur")
    torch.testing.assert_close(y[..., :10, :], expected[..., :10, :])
    torch.testing.assert_close(y[..., 10:, :], x[..., 10:, :])


def test_igos_uses_the_same_blur_fraction():
    from napari_global_xai.saliency.igos import methods

    assert methods.BLUR_SIGMA_FRACTION == BLUR_SIGMA_FRACTION == pytest.approx(14.7 / 224)


@pytest.mark.parametrize("p", [0.0, 0.013, 0.5, 0.999, 1.0])
def test_erase_and_restore_masks_are_complementary_top_k(p):
    g = np.random.default_rng(3).random((7, 9))
    ranking = pixel_ranking(g)
    k = int(np.floor(p * 63 + 0.5))
    erase, restore = removed_mask(ranking, (7, 9), "erase", p), removed_mask(ranking, (7, 9), "restore", p)
    assert erase.sum() == k and np.array_equal(erase, ~restore)
    if 0 < k < 63:
        assert g[erase].min() > g[~erase].max()  # the k largest values are the erased ones
    assert fraction_counts([p], 63)[0] == k


def test_rank_positions_inverts_and_validates():
    r = np.random.default_rng(0).permutation(12)
    pos = rank_positions(r, 12)
    assert np.array_equal(r[pos], np.arange(12))
    with pytest.raises(ValueError, match="permutation"):
        rank_positions(np.zeros(12, np.int64), 12)
