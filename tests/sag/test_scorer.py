"""SAG's patch scores are the perturbation layer's: equal to PEPPR's per-image insertion / deletion engine and to a
blend written out here, for the same (image, kept pixels, fill)."""

import numpy as np
import pytest
import torch

from ._spot import H, W, blur_terms, confidence_atol, spot_model

#: Roundings of each fill (tests/_tolerance.py): the keep/fill blend 2, plus the fill's own: black's -mean/std 1, the
#: blur's two separable passes (σ = BLUR_SIGMA_FRACTION × 40 px), imputation's 10 per Jacobi step over its 200 steps
#: (worst case: each step averages, never amplifies, the earlier steps' errors)
_SIGMA = 14.7 / 224 * min(H, W)
FILL_TERMS = {"zero": 2, "black": 3, "blur": 2 + blur_terms(_SIGMA), "impute": 2 + 10 * 200}

GRID = (4, 4)


def _image(seed=3):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    image[5:20, 4:30] = 230
    return image


def _union(patches, hw=(H, W), grid=GRID):
    from napari_global_xai.sag import patch_masks

    masks = patch_masks(hw, grid)
    return masks[sorted(patches)].any(axis=0) if patches else np.zeros(hw, bool)


@pytest.mark.parametrize("fill", ["zero", "black", "blur"])
def test_sag_scores_equal_peppr_insertion_and_deletion(fill):
    """Showing patches R = PEPPR restoring exactly U(R) first; hiding R = PEPPR erasing U(R) first."""
    from napari_global_xai.peppr.curve_functions import deletion_insertion
    from napari_global_xai.sag.scorer import SagScorer

    model = spot_model()
    image = _image()
    shown = frozenset({0, 5, 6, 11})
    hidden = frozenset(range(16)) - shown
    u = _union(shown)
    frac = float(u.sum()) / u.size
    curves = deletion_insertion(
        model, image[None], u[None].astype(np.float32), [0], fractions=[0.0, frac, 1.0], fill=fill
    )
    scorer = SagScorer(model, model.preprocess(image[None]), 0, GRID, fill=fill)
    empty, kept, rest, full = scorer.score([frozenset(), shown, hidden, frozenset(range(16))])
    # PEPPR's engine and SAG's scorer fill and batch in their own ways: float32 rounding, derived (was atol=1e-6)
    atol = confidence_atol(model, model.preprocess(image[None]), FILL_TERMS[fill])
    np.testing.assert_allclose(curves.insertion[0], [empty, kept, full], rtol=0, atol=atol)
    np.testing.assert_allclose(curves.deletion[0], [full, rest, empty], rtol=0, atol=atol)
    assert scorer.n_forwards == 4 and scorer.score([shown, shown]) == [kept, kept] and scorer.n_forwards == 4


@pytest.mark.parametrize("fill", ["zero", "black", "blur", "impute"])
def test_sag_scores_equal_the_blend_written_out(fill):
    """``softmax(model(x ⊙ keep + fill ⊙ (1 − keep)))`` of the label, the fill from perturb's one definition
    (blur: σ = BLUR_SIGMA_FRACTION of the shorter side; impute: noise-free)."""
    from napari_global_xai.config import BLUR_SIGMA_FRACTION
    from napari_global_xai.perturb import gaussian_blur, impute_linear
    from napari_global_xai.sag.scorer import SagScorer

    model = spot_model()
    x = model.preprocess(_image()[None])
    sets = [frozenset({2, 3}), frozenset({0, 1, 4, 8, 9}), frozenset()]
    keep = torch.from_numpy(np.stack([_union(s) for s in sets])[:, None].astype(np.float32))
    mean, std = torch.tensor(model.card.mean).view(1, -1, 1, 1), torch.tensor(model.card.std).view(1, -1, 1, 1)
    if fill == "impute":
        inputs = torch.cat([impute_linear(x, k[0] < 0.5, noise=0.0) for k in keep])
    else:
        filler = {
            "zero": torch.zeros_like(x),
            "black": (-mean / std).expand_as(x),
            "blur": gaussian_blur(x, BLUR_SIGMA_FRACTION * min(H, W)),
        }[fill]
        inputs = x * keep + filler * (1 - keep)
    with torch.no_grad():
        expected = torch.softmax(model.module(inputs).double(), dim=1)[:, 1].numpy()
    scorer = SagScorer(model, x, 1, GRID, fill=fill)
    # the blend written out here against the scorer's batches: float32 rounding, derived (was atol=1e-6)
    np.testing.assert_allclose(scorer.score(sets), expected, rtol=0, atol=confidence_atol(model, x, FILL_TERMS[fill]))


def test_images_of_a_group_share_model_calls():
    """A group's scorers score in shared forwards; each image counts its own forwards and the calls it was in."""
    from napari_global_xai.sag.scorer import SagScorer, score_together

    model = spot_model()
    images = np.stack([_image(1), _image(2), _image(3)])
    x = model.preprocess(images)
    group = SagScorer.group(model, x, [0, 1, 0], GRID, "zero", batch_size=6)
    sets = [frozenset({p}) for p in range(3)]
    together = score_together([(s, sets) for s in group])
    alone = [
        SagScorer(model, x[i : i + 1], label, GRID, fill="zero", batch_size=6) for i, label in enumerate([0, 1, 0])
    ]
    # shared calls of 6 against one call per image: float32 rounding, derived (was atol=1e-6)
    atol = confidence_atol(model, x, FILL_TERMS["zero"])
    np.testing.assert_allclose(together, [s.score(sets) for s in alone], rtol=0, atol=atol)
    assert [s.n_forwards for s in group] == [3, 3, 3] == [s.n_forwards for s in alone]
    assert group[0].group_scorer.scorer.n_batches == 2  # 9 sets in calls of 6; alone: one call per image
    assert [s.n_batches for s in alone] == [1, 1, 1]
    assert all(1 <= s.n_batches <= 2 for s in group)
    assert score_together([(group[1], sets[:1])]) == [together[1][:1]] and group[1].n_forwards == 3  # cached
