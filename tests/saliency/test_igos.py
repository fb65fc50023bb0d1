"""I-GOS / iGOS++ (saliency/igos/) on a tiny hand-set CNN whose decision depends on a known region.

The model reads label 0 from bright pixels of channel 0 inside a top-left region and label 1 from channel 1 inside
a bottom-right region; every test image has a bright 6×6 square inside the label-0 region and a distractor square
of the same brightness outside it (bottom left), which the model ignores.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_global_xai.models.card import DEMO_CARD_PATH, LoadedModel, ModelCard
from napari_global_xai.saliency.base import get_method
from napari_global_xai.saliency.igos import (
    IGOS,
    IGOS_PP_VARIANT,
    IGOS_VARIANT,
    IGOSPlusPlus,
    PathProblem,
    armijo_line_search,
    bilateral_tv_norm,
    bilateral_weights,
    composite,
    mask_grid_shape,
    path_quadrature,
    score_scale,
    stalled_masks,
    tv_norm,
    upsample_masks,
)

from _tolerance import float32_atol, pairwise_sum_terms, pass_terms

H, W = 32, 48
SQUARE = 6
#: (top, bottom, left, right) as fractions of the image: label 0 region, label 1 region.
REGIONS = ((4 / 32, 14 / 32, 4 / 48, 18 / 48), (18 / 32, 28 / 32, 30 / 48, 44 / 48))
#: Fast settings for the 32×48 test images: an 8×12 mask grid.
FAST = {"mask_size": 8, "iterations": 8, "ig_iter": 5}
METHODS = ("igos", "igos++")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def region_masks(h: int, w: int) -> torch.Tensor:
    """``(2, h, w)`` 0/1 masks of the two label regions at any image size."""
    r = torch.zeros(2, h, w)
    for i, (t, b, left, right) in enumerate(REGIONS):
        r[i, round(t * h) : round(b * h), round(left * w) : round(right * w)] = 1
    return r


class PatchNet(nn.Module):
    """conv (identity, threshold 0.6) → ReLU → conv (3×3 box) → ReLU → mean over each label's region → logits.

    Label ``i`` = ``gain · mean_{region i}(box(relu(x_i − 0.6))) + bias``; with ``softmax`` the outputs are
    ``[label-0 logit, 0]`` (two classes).
    """

    def __init__(self, softmax: bool = False, gain: float = 40.0, bias: float = -3.0):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        with torch.no_grad():
            self.conv1.weight.zero_()
            self.conv2.weight.zero_()
            for c in range(2):
                self.conv1.weight[c, c, 1, 1] = 1.0
                self.conv2.weight[c, c] = 1 / 9
            self.conv1.bias.fill_(-0.6)
            self.conv2.bias.zero_()
        self.gain, self.bias, self.softmax = gain, bias, softmax

    def forward(self, x):
        f = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        r = region_masks(*f.shape[-2:]).to(f)
        logits = self.gain * (f * r).sum((2, 3)) / r.sum((1, 2)) + self.bias
        if self.softmax:
            return torch.stack([logits[:, 0], torch.zeros_like(logits[:, 0])], 1)
        return logits


def loaded(softmax: bool = False, gain: float = 40.0, bias: float = -3.0) -> LoadedModel:
    card = ModelCard(
        name="patch",
        labels=["a", "b"],
        weights="unused",
        format="torchscript",
        input_channels=[0, 1],
        input_size=None,
        mean=[0, 0],
        std=[1, 1],
        activation="softmax" if softmax else "sigmoid",
    )
    return LoadedModel(PatchNet(softmax, gain, bias), card, torch.device("cpu"))


def make_images(n: int, seed: int, h: int = H, w: int = W):
    """``n`` label-0-positive images; returns the images and the planted squares' (top, left)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, h, w, generator=g) * 0.4
    t, b, left, right = REGIONS[0]
    squares = []
    for i in range(n):
        top = int(torch.randint(round(t * h), round(b * h) - SQUARE + 1, (1,), generator=g))
        lft = int(torch.randint(round(left * w), round(right * w) - SQUARE + 1, (1,), generator=g))
        x[i, 0, top : top + SQUARE, lft : lft + SQUARE] = 1.0
        x[i, 0, h - 10 : h - 10 + SQUARE, 4 : 4 + SQUARE] = 1.0  # distractor outside the region
        squares.append((top, lft))
    return x, squares


def igos_atol(model, x, **params):
    """Tolerance between two float32 runs of I-GOS whose gradient passes round in another order (other batches).

    Masks are in [0, 1] (scale 1). Each iteration's direction comes from ``ig_iter`` gradient passes, each rounding
    pass_terms(net) times plus the region means' pairwise sums (tests/_tolerance.py); the iterations' errors add up
    in the mask. A line search that decided otherwise would move a mask by far more: the tolerance does not cover it.
    """
    settings = {**FAST, **params}
    per_pass = pass_terms(model.module) + pairwise_sum_terms(x.shape[-2] * x.shape[-1])
    return float32_atol(1.0, per_pass * settings["ig_iter"] * settings["iterations"])


def attribute(name, model, x, targets=None, probability=False, **params):
    method = get_method(name, model, probability=probability, **{**FAST, **params})
    if targets is None:
        targets = torch.zeros(len(x), dtype=torch.long)
    return method.attribute(x, targets), method


def inside_share(maps: torch.Tensor, squares, pad: int = 3) -> np.ndarray:
    """Share of each map's mass inside its planted square (± pad pixels), and that box's area share."""
    shares = []
    for m, (top, left) in zip(maps[:, 0], squares):
        box = torch.zeros_like(m)
        box[max(0, top - pad) : top + SQUARE + pad, max(0, left - pad) : left + SQUARE + pad] = 1
        shares.append(((m * box).sum() / m.sum()).item())
    return np.array(shares), (SQUARE + 2 * pad) ** 2 / (H * W)


def deletion_insertion_auc(model: LoadedModel, x, target: int, saliency, fill, steps: int = 10):
    """Independent reference: erase (deletion) / reveal (insertion) the most salient pixels in ``steps`` equal
    steps; sigmoid probability of ``target``; trapezoid area over the removed fraction."""
    order = torch.argsort(saliency.flatten(), descending=True, stable=True)
    n = order.numel()
    fractions = np.linspace(0, 1, steps + 1)
    deleted, inserted = [], []
    for f in fractions:
        removed = torch.zeros(n, dtype=torch.bool)
        removed[order[: round(f * n)]] = True
        removed = removed.view(1, *saliency.shape)
        deleted.append(torch.where(removed, fill, x))
        inserted.append(torch.where(removed, x, fill))
    with torch.no_grad():
        p = torch.sigmoid(model.module(torch.stack(deleted + inserted)))[:, target].numpy()
    return np.trapezoid(p[: steps + 1], fractions), np.trapezoid(p[steps + 1 :], fractions)


# ---------------------------------------------------------------------------------------------------------------------
# building blocks


def test_mask_grid_follows_aspect_ratio():
    assert mask_grid_shape((384, 512), 28) == (28, 37)
    assert mask_grid_shape((512, 384), 28) == (37, 28)
    assert mask_grid_shape((224, 224), 28) == (28, 28)
    assert mask_grid_shape((384, 512), (10, 20)) == (10, 20)
    with pytest.raises(ValueError):
        mask_grid_shape((384, 512), 1)


def test_upsampling_is_bilinear_align_corners():
    masks = torch.rand(3, 2, 1, 7, 9, generator=torch.Generator().manual_seed(0))
    ours = upsample_masks(masks, (30, 41))
    ref = F.interpolate(masks.view(6, 1, 7, 9), size=(30, 41), mode="bilinear", align_corners=True)
    ref = ref.view(3, 2, 1, 30, 41)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.equal(ours[..., 0, 0], masks[..., 0, 0]) and torch.allclose(ours[..., -1, -1], masks[..., -1, -1])


def test_path_scores_follow_the_composite_definition():
    # a linear "model" (mean pixel value) makes the path average checkable by hand, for all four iGOS++ terms
    g = torch.Generator().manual_seed(0)
    x, b = torch.rand(2, 2, 6, 8, generator=g), torch.rand(2, 2, 6, 8, generator=g)
    masks = torch.rand(2, 2, 1, 3, 4, generator=g)
    scale = torch.tensor([1.0, 2.0])

    def score_fn(z, targets):
        return z.mean(dim=(1, 2, 3)) + targets

    targets = torch.tensor([0, 1])
    problem = PathProblem(
        score_fn,
        x,
        b,
        targets,
        scale,
        IGOS_PP_VARIANT,
        (3, 4),
        ig_iter=4,
        l1=1,
        tv=1,
        tv_beta=2,
        noise_std=0.0,
        max_batch=5,
        seed=0,
    )
    scores, grads = problem.path_scores(masks, torch.arange(2), None, with_grad=True)
    u_d, u_i = upsample_masks(masks[:, 0], (6, 8)), upsample_masks(masks[:, 1], (6, 8))
    for term, (start, end, m) in enumerate([(x, b, u_d * u_i), (b, x, u_d * u_i), (x, b, u_d), (b, x, u_i)]):
        expected = sum(score_fn(composite(start, end, t / 4 * m), targets) for t in range(1, 5)) / 4 / scale
        assert torch.allclose(scores[:, term], expected, atol=1e-6)
    assert grads.shape == masks.shape and grads.abs().sum() > 0
    assert problem.backward_images == 2 * 4 * 4  # images × terms × steps, in model batches of ≤ 5


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_path_gradient_equals_autograd_of_the_composite(channels):
    # the custom path-image backward (one product per channel) against plain autograd through the composite
    g = torch.Generator().manual_seed(1)
    x, b = torch.rand(2, channels, 6, 8, generator=g), torch.rand(2, channels, 6, 8, generator=g)
    x, b = x.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last)
    masks = torch.rand(2, 2, 1, 3, 4, generator=g)
    weights = torch.rand(channels, 6, 8, generator=g)

    def score_fn(z, targets):  # non-linear, so the gradient depends on where along the path each image is
        return torch.tanh((z * weights).sum(dim=(1, 2, 3)) / 10) + 0.1 * z.pow(2).mean(dim=(1, 2, 3)) + targets

    targets, scale = torch.tensor([0, 1]), torch.tensor([1.0, 2.0])
    problem = PathProblem(
        score_fn,
        x,
        b,
        targets,
        scale,
        IGOS_PP_VARIANT,
        (3, 4),
        ig_iter=3,
        l1=1,
        tv=1,
        tv_beta=2,
        noise_std=0.0,
        max_batch=4,
        seed=0,
    )
    _, grads = problem.path_scores(masks, torch.arange(2), None, with_grad=True)
    leaf = masks.clone().requires_grad_(True)
    u_d, u_i = upsample_masks(leaf[:, 0], (6, 8)), upsample_masks(leaf[:, 1], (6, 8))
    total = 0
    for term, (start, end, m) in enumerate([(x, b, u_d * u_i), (b, x, u_d * u_i), (x, b, u_d), (b, x, u_i)]):
        s = sum(score_fn(composite(start, end, t / 3 * m), targets) for t in range(1, 4)) / 3 / scale
        total = total + (s * IGOS_PP_VARIANT.terms[term].sign * IGOS_PP_VARIANT.grad_weight).sum()
    (expected,) = torch.autograd.grad(total, leaf)
    assert torch.allclose(grads, expected, atol=1e-5, rtol=1e-4)


def test_regularisers_match_hand_computation():
    m = torch.tensor([[[[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]]])  # (1, 1, 2, 3)
    # rows: |0-1|², |1-0|²... diffs rows = [0, 1, 0] → mean 1/3; cols = [-1, 1], [0, 0] → mean 2/4
    assert tv_norm(m).item() == pytest.approx(1 / 3 + 1 / 2)
    # a constant image gives bilateral weights 1, so BTV = ½ (TV(grid) + TV(upsampled)) ≥ 0, and 0 for M = 1
    x = torch.zeros(1, 2, 8, 12)
    weights = bilateral_weights(x, 0.01)
    assert torch.allclose(weights[0], torch.ones(1, 1, 7, 12))
    assert bilateral_tv_norm(torch.ones(1, 1, 2, 3), weights).item() == pytest.approx(0.0, abs=1e-12)
    assert bilateral_tv_norm(m, weights).item() > 0.5 * tv_norm(m).item()


def test_score_scale_auto_uses_the_image_score_change_with_a_floor():
    f_x, f_b = torch.tensor([3.0, 0.1, 0.9]), torch.tensor([-2.0, 0.0, 0.5])
    assert score_scale(f_x, f_b, "auto", probability=False).tolist() == pytest.approx([5.0, 0.4, 0.4])
    assert score_scale(f_x, f_b, "auto", probability=True).tolist() == pytest.approx([5.0, 0.1, 0.4])
    assert score_scale(f_x, f_b, 1.0, probability=True).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        score_scale(f_x, f_b, 0, probability=False)


def test_line_search_is_per_image_armijo():
    # loss(M) = Σ (M − target)², direction = its gradient 2 (M − target). Image 0 overshoots into the clip at
    # α = 8 and 1.6 and accepts 0.32; image 1 (zero gradient) accepts the first step and stays; image 2 gets an
    # ascent direction, never accepts, and keeps its mask.
    target = torch.tensor([[0.5, 0.5], [1.0, 1.0], [0.0, 0.0]])
    masks = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    direction = 2 * (masks - target)
    direction[2] = -direction[2]
    calls = []

    def loss_fn(m, idx):
        calls.append(len(idx))
        return ((m - target[idx]) ** 2).sum(1)

    base = loss_fn(masks, torch.arange(3))
    calls.clear()
    new, step, trials = armijo_line_search(masks, direction, base, loss_fn, alpha=8.0, decay=0.2, min_alpha=1e-3)
    assert step[0].item() == pytest.approx(0.32)
    assert new[0].tolist() == pytest.approx([0.68, 0.68])
    assert step[1].item() == 8.0 and torch.equal(new[1], masks[1])
    assert step[2].item() == 0.0 and torch.equal(new[2], masks[2])
    assert trials.tolist() == [3, 1, 6]  # image 2: 8, 1.6, 0.32, 0.064, 0.0128, 0.00256 (next < min_alpha)
    assert calls == [3, 2, 2, 1, 1, 1]  # one loss call per trial covers every image still searching


def test_failed_line_search_takes_the_last_step_as_the_official_code():
    # the setup above; with failed="last" image 2 also tries the first step below min_alpha (0.000512) and takes
    # it although rejected (khorrams/IGOS_pp line_search), images 0 and 1 are unchanged
    target = torch.tensor([[0.5, 0.5], [1.0, 1.0], [0.0, 0.0]])
    masks = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    direction = 2 * (masks - target)
    direction[2] = -direction[2]

    def loss_fn(m, idx):
        return ((m - target[idx]) ** 2).sum(1)

    base = loss_fn(masks, torch.arange(3))
    new, step, trials, new_loss = armijo_line_search(
        masks, direction, base, loss_fn, alpha=8.0, decay=0.2, min_alpha=1e-3, return_losses=True, failed="last"
    )
    assert trials.tolist() == [3, 1, 7]
    assert step[:2].tolist() == pytest.approx([0.32, 8.0]) and step[2].item() == pytest.approx(8 * 0.2**6)
    assert new[2].tolist() == pytest.approx((0.5 + 8 * 0.2**6 * 1.0) * np.ones(2))  # uphill: 0.5 + α · 2 · 0.5
    assert new_loss[2].item() == pytest.approx(loss_fn(new[2:], torch.tensor([2])).item())
    assert new_loss[2] > base[2]  # the official code applies a rejected step
    with pytest.raises(ValueError, match="failed"):
        armijo_line_search(masks, direction, base, loss_fn, failed="retry")


def test_fresh_noise_is_drawn_per_evaluation_from_the_seed():
    model = loaded()
    x, _ = make_images(2, seed=0)
    problem = PathProblem(
        lambda z, t: z.mean((1, 2, 3)), x, x * 0, torch.zeros(2).long(), torch.ones(2), IGOS_VARIANT, (4, 6), 3,
        1.0, 20.0, 2.0, 0.2, 8, 5, fresh_noise=True,
    )  # fmt: skip
    a, b, c = problem.fresh_draw(0, 1), problem.fresh_draw(0, 1), problem.fresh_draw(0, 2)
    assert a.shape == (3, H, W, 2) and torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(problem.begin_iteration(4), problem.fresh_draw(4, 0))
    assert a.std().item() == pytest.approx(0.2, rel=0.05)
    # the official preset: every line-search trial and the base loss get their own draw (one more forward batch
    # per iteration than the shared draw), and an image's map still does not depend on its batch neighbours
    targets = torch.tensor([0, 1])
    together, method = attribute("igos", model, x, targets, preset="official", max_batch=7)
    alone = torch.cat(
        [
            attribute("igos", model, x[i : i + 1], targets[i : i + 1], preset="official", max_batch=7)[0]
            for i in range(2)
        ]
    )
    # other batches: float32 rounding, derived (was atol=1e-5)
    assert torch.allclose(together, alone, atol=igos_atol(model, x), rtol=0)
    trials = method.last_stats["line_search_trials"]
    assert method.last_forward_images == (int(trials.sum()) + trials.numel()) * FAST["ig_iter"] + 2 * len(x)
    assert method.params["fresh_noise"] and method.params["failed_search"] == "last"


def test_rescale_recovery_keeps_the_stalled_masks_own_order():
    method = get_method("igos", loaded())
    g = torch.Generator().manual_seed(0)
    pattern = torch.rand(3, 1, 5, 7, generator=g)
    masks = torch.stack([1 - 0.004 * pattern[0], 1 - 1e-7 * pattern[1], 1 - 0.5 * pattern[2]])  # the last one moved
    flags, _ = stalled_masks(masks)
    assert flags.tolist() == [True, True, False]
    directions = torch.rand(3, 1, 1, 5, 7, generator=g) - 0.2
    out, how = method._recover(masks, flags, directions)
    assert how == ["rescale", "ig", ""]
    # row 0: its own order, stretched to a saliency maximum of 1; row 1 moved by rounding only: the IG map.
    # Row 0 is read back from 1 - 0.004·pattern in float32: half an ulp of 1 (eps/2) per stored value, divided by
    # 0.004·max(pattern) when stretched, a few roundings in all (4; was atol=1e-4, about the same)
    assert torch.allclose(
        1 - out[0], pattern[0] / pattern[0].max(), atol=float32_atol(1 / (0.004 * pattern[0].max()), 4)
    )
    g1 = directions[1, 0].clamp_min(0)
    assert torch.allclose(out[1], 1 - g1 / g1.max(), atol=1e-6) and torch.equal(out[2], masks[2])
    method.params["recovery"] = "ig"
    assert method._recover(masks, flags, directions)[1] == ["ig", "ig", ""]
    method.params["recovery"] = "none"
    out, how = method._recover(masks, flags, directions)
    assert how == ["", "", ""] and torch.equal(out, masks)


@pytest.mark.parametrize("name", METHODS)
def test_ig_blend_mixes_the_mask_with_the_summed_integrated_gradient(planted, name):
    # the blend acts after the optimisation: with one seed the masks and directions are the same for every weight,
    # and the map is 1 − U(1 − [(1 − w) s / max s + w g⁺ / max g⁺]), s = (1 − M)⁺, g = the summed score directions
    model, x, _ = planted
    plain, m0 = attribute(name, model, x, ig_blend=0.0)
    assert torch.allclose(plain, 1 - upsample_masks(m0.last_masks, (H, W)), atol=1e-6)
    s = (1 - m0.last_masks).clamp_min(0)
    g = m0.last_stats["score_direction_sum"].sum(dim=1).clamp_min(0)
    assert g.shape == s.shape and (g.flatten(1).max(1).values > 0).all()
    for w in (0.3, 1.0):
        maps, mw = attribute(name, model, x, ig_blend=w)
        assert torch.equal(mw.last_stats["score_direction_sum"], m0.last_stats["score_direction_sum"])
        own = s / s.flatten(1).max(1).values.view(-1, 1, 1, 1)
        signal = g / g.flatten(1).max(1).values.view(-1, 1, 1, 1)
        expected = (1 - w) * own + w * signal
        assert torch.allclose(1 - mw.last_masks, expected, atol=1e-6)
        assert torch.allclose(maps, upsample_masks(expected, (H, W)).clamp(0, 1), atol=1e-6)
    # a mask left at 1 with no positive direction has nothing to blend: its map stays 0, never NaN
    ones = torch.ones(1, 1, 4, 5)
    assert torch.equal(m0._blend(ones, -torch.rand(1, 1, 1, 4, 5), 0.5), ones)


# ---------------------------------------------------------------------------------------------------------------------
# behaviour on the planted-region model


@pytest.fixture(scope="module")
def planted():
    return loaded(), *make_images(3, seed=0)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("preset", ["official", "fast"])
def test_maps_concentrate_on_the_planted_square(planted, name, preset):
    model, x, squares = planted
    maps, _ = attribute(name, model, x, preset=preset)  # the official or the fast solver, FAST's short counts
    assert maps.shape == (3, 1, H, W)
    assert maps.min() >= 0 and maps.max() <= 1 and maps.max() > 0.2
    share, area = inside_share(maps, squares)
    assert (share > 3 * area).all(), (share, area)
    # the distractor square (same brightness, outside the model's region) gets little mass
    distractor = maps[:, 0, H - 13 : H - 1, 1:13].sum((1, 2)) / maps[:, 0].sum((1, 2))
    assert (distractor < torch.as_tensor(share) / 3).all(), (distractor, share)


@pytest.mark.parametrize("name", METHODS)
def test_deletion_and_insertion_beat_random_maps(planted, name):
    model, x, _ = planted
    maps, method = attribute(name, model, x)
    fill = method.baseline(x)
    g = torch.Generator().manual_seed(1)
    for i in range(len(x)):
        d, ins = deletion_insertion_auc(model, x[i], 0, maps[i, 0], fill[i])
        rand = [deletion_insertion_auc(model, x[i], 0, torch.rand(H, W, generator=g), fill[i]) for _ in range(3)]
        d_rand, ins_rand = np.mean(rand, axis=0)
        assert d < d_rand - 0.05, (i, d, d_rand)
        assert ins > ins_rand + 0.05, (i, ins, ins_rand)


def test_zero_baseline_also_finds_the_square(planted):
    model, x, squares = planted
    maps, _ = attribute("igos", model, x, baseline="zero")
    share, area = inside_share(maps, squares)
    assert (share > 3 * area).all()


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_map_different_seed_different_map(planted, name):
    model, x, _ = planted
    a, _ = attribute(name, model, x[:2], seed=3)
    b, _ = attribute(name, model, x[:2], seed=3)
    c, _ = attribute(name, model, x[:2], seed=4)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


@pytest.mark.parametrize("name", METHODS)
def test_batched_equals_one_at_a_time(planted, name):
    model, x, _ = planted
    targets = torch.tensor([0, 1, 0])  # mixed targets, and max_batch 7 splits images across model batches
    together, _ = attribute(name, model, x, targets, max_batch=7)
    alone = torch.cat([attribute(name, model, x[i : i + 1], targets[i : i + 1], max_batch=7)[0] for i in range(3)])
    assert torch.allclose(together, alone, atol=igos_atol(model, x), rtol=0)  # other batches: derived, was 1e-5


@pytest.mark.parametrize("name, terms", [("igos", 1), ("igos++", 4)])
def test_pass_counts_and_model_batches(planted, name, terms):
    model, x, _ = planted
    sizes = []
    hook = model.module.register_forward_hook(lambda _m, inp, _o: sizes.append(len(inp[0])))
    try:
        _, method = attribute(name, model, x, max_batch=7, early_stop=0.05)
    finally:
        hook.remove()
    k, n_steps, iters = len(x), FAST["ig_iter"], FAST["iterations"]
    assert max(sizes) <= 7
    # early stopping ends some images before `iterations`: they leave the model batches
    run = method.last_stats["iterations_run"]
    assert run.shape == (k,) and (run >= 3).all() and (run <= iters).all()
    assert method.last_backward_images == int(run.sum()) * terms * n_steps
    trials = method.last_stats["line_search_trials"]
    assert trials.shape == (k, iters)
    ran = torch.arange(iters).view(1, -1) < run.view(-1, 1)
    assert (trials[ran] >= 1).all() and (trials[~ran] == 0).all()
    assert method.last_forward_images == int(trials.sum()) * terms * n_steps + 2 * k
    assert sum(sizes) == method.last_forward_images + method.last_backward_images
    assert method.passes_per_map() > iters * terms * n_steps
    # without early stopping every image runs every iteration
    _, full = attribute(name, model, x, max_batch=7, early_stop=0.0)
    assert full.last_backward_images == iters * terms * n_steps * k
    assert (full.last_stats["iterations_run"] == iters).all()


def test_warm_start_saves_line_search_trials(planted):
    model, x, squares = planted
    _, cold = attribute("igos", model, x, warm_start=False, early_stop=0.0)
    maps, warm = attribute("igos", model, x, warm_start=True, early_stop=0.0)
    assert warm.last_forward_images < 0.6 * cold.last_forward_images
    assert warm.last_backward_images == cold.last_backward_images
    share, area = inside_share(maps, squares)
    assert (share > 3 * area).all()


@pytest.mark.parametrize("name", METHODS)
def test_non_square_inputs_keep_their_size(name):
    model = loaded()
    x, _ = make_images(2, seed=2, h=40, w=24)  # portrait: grid 10 × 6 from mask_size 6
    maps, method = attribute(name, model, x, mask_size=6, iterations=3)
    assert maps.shape == (2, 1, 40, 24)
    assert maps.min() >= 0 and maps.max() <= 1
    assert method.last_backward_images == 3 * len(method.variant.terms) * FAST["ig_iter"] * 2


def test_auto_score_scale_makes_the_map_invariant_to_logit_scale(planted):
    _, x, _ = planted
    base, scaled = loaded(), loaded(gain=40.0 * 4, bias=-3.0 * 4)
    a, _ = attribute("igos", base, x[:2])
    b, _ = attribute("igos", scaled, x[:2])
    # four times the logits, divided out again by the auto scale: the same steps up to float32 rounding (derived,
    # was atol=1e-4)
    assert torch.allclose(a, b, atol=igos_atol(base, x), rtol=0)
    # the official fixed scale is not invariant: four times larger logits give a different map
    c, _ = attribute("igos", base, x[:2], score_scale=1.0)
    d, _ = attribute("igos", scaled, x[:2], score_scale=1.0)
    assert (c - d).abs().max() > 1e-2


@pytest.mark.parametrize("probability", [False, True])
def test_probability_scores_work(planted, probability):
    model, x, squares = planted
    maps, method = attribute("igos", model, x, probability=probability)
    share, area = inside_share(maps, squares)
    assert (share > 3 * area).all()
    assert method.last_stats["score_scale"].min() >= (0.1 if probability else 0.4)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("probability", [False, True])
def test_softmax_card(name, probability):
    model = loaded(softmax=True)
    x, squares = make_images(2, seed=3)
    maps, _ = attribute(name, model, x, probability=probability)
    assert maps.shape == (2, 1, H, W) and maps.min() >= 0 and maps.max() <= 1
    share, area = inside_share(maps, squares)
    # measured over noise seeds 0-4: I-GOS 0.55-0.59, iGOS++ 0.18-0.33 (area 0.094): iGOS++'s two masks on a
    # two-class softmax enrich the square about 3×, one noise draw leaves one image at 2×
    assert (share > area).all() and share.mean() > 2 * area, share


def test_registry_and_parameters():
    model = loaded()
    assert isinstance(get_method("igos", model), IGOS)
    assert isinstance(get_method("igos++", model), IGOSPlusPlus)
    assert "bilateral_sigma" in IGOSPlusPlus.defaults and "bilateral_sigma" not in IGOS.defaults
    with pytest.raises(ValueError, match="igos: unknown parameter.*bilateral_sigma"):
        get_method("igos", model, bilateral_sigma=0.1)
    # inference-mode inputs (as a runner might pass) are fine
    with torch.inference_mode():
        x = make_images(1, seed=0)[0]
    maps, _ = attribute("igos", model, x, iterations=1, ig_iter=2)
    assert maps.shape == (1, 1, H, W)


@pytest.mark.slow
def test_demo_model_deletion_beats_random():
    if not DEMO_CARD_PATH.exists():
        pytest.skip(f"demo model card {DEMO_CARD_PATH} not trained yet")
    from napari_global_xai.data.synthetic import generate_stack
    from napari_global_xai.models import load_model

    model = load_model(DEMO_CARD_PATH, device="cpu")
    stack = generate_stack(2, seed=5, split="eval")
    images = stack.aligned("left").get(slice(None))[..., :2]
    x = model.preprocess(images)
    with torch.no_grad():
        probs = model.scores(x, probability=True)
    # per image: the model's most confident label among those the ground truth marks positive, else its top one
    columns = [list(stack.label_names).index(name) for name in model.card.labels]
    labels = torch.as_tensor(stack.labels[:, columns].astype(bool))
    targets = torch.where(labels.any(1), torch.where(labels, probs, -1.0).argmax(1), probs.argmax(1))
    method = get_method("igos", model, iterations=3, ig_iter=4, max_batch=8)
    maps = method.attribute(x, targets)
    fill = method.baseline(x)
    g = torch.Generator().manual_seed(0)
    h, w = x.shape[-2:]
    for i in range(len(x)):
        t = int(targets[i])
        d, _ = deletion_insertion_auc(model, x[i], t, maps[i, 0], fill[i], steps=8)
        d_rand = np.mean(
            [
                deletion_insertion_auc(model, x[i], t, torch.rand(h, w, generator=g), fill[i], steps=8)[0]
                for _ in range(2)
            ]
        )
        assert d < d_rand, (i, t, d, d_rand)


# ---------------------------------------------------------------------------------------------------------------------
# stalled optimisations: detection, warning, recovery


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("probability", [False, True])
def test_stalled_optimisation_is_flagged_warned_and_recovered(name, probability):
    # A weakly predicted label: logit −4 + 0.1 · (region feature), sigmoid ≈ 0.018, and the blurred baseline (the
    # square blurred below the model's 0.6 threshold) scores almost like the image. The score gradient is then far
    # below the L1 term's slope just off M = 1, every line-search trial is rejected and the mask stays at 1.
    model = loaded(gain=0.1, bias=-4.0)
    x, _ = make_images(2, seed=0)
    with pytest.warns(RuntimeWarning) as record:
        plain, stuck = attribute(name, model, x, probability=probability, recovery="none", ig_blend=0.0)
    messages = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
    for i in range(2):
        assert any(f"image {i} (label 'a', class index 0)" in m and "stalled" in m for m in messages), messages
    assert stuck.last_flags.tolist() == [True, True] and not stuck.last_recovered.any()
    assert plain.max() < 0.01  # the unrecovered map is (nearly) constant

    with pytest.warns(RuntimeWarning, match="integrated-gradient signal"):
        maps, method = attribute(name, model, x, probability=probability)
    assert method.last_flags.tolist() == [True, True] and method.last_recovered.tolist() == [True, True]
    fill = method.baseline(x)
    g = torch.Generator().manual_seed(2)
    for i in range(2):
        m = maps[i, 0]
        assert m.max() > 0.5 and m.std() > 0.05  # not constant (the grid peak is 1, between pixels)
        d, ins = deletion_insertion_auc(model, x[i], 0, m, fill[i])
        rand = np.array(
            [deletion_insertion_auc(model, x[i], 0, torch.rand(H, W, generator=g), fill[i]) for _ in range(5)]
        )
        assert d < rand[:, 0].min() and ins > rand[:, 1].max(), (i, d, ins, rand)


def test_stall_detection_rules():
    ones = torch.ones(3, 1, 4, 5)
    masks = ones.clone()
    masks[0, 0, 0, 0] = 0.995  # moved less than move_tol: did not move
    masks[1, 0, :, :] = 0.3  # 20 of 20 cells tie at the top saliency 0.7
    masks[1, 0, 0, 0] = 0.9
    masks[2, 0, :2, :] = torch.linspace(0.2, 0.8, 10).view(2, 5)  # a real mask: distinct top cells
    flags, reasons = stalled_masks(masks, move_tol=0.01, tie_fraction=0.9)
    assert flags.tolist() == [True, True, False]
    assert "did not move" in reasons[0] and "19 of 20 cells tie" in reasons[1] and reasons[2] == ""
    # many cells left exactly at 1 (saliency 0) do not flag a mask whose top cells are distinct
    assert not stalled_masks(masks[2:], tie_fraction=0.1)[0].any()


def test_good_optimisations_are_not_flagged(planted):
    model, x, _ = planted
    for name in METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            _, method = attribute(name, model, x)
        assert not method.last_flags.any()


# ---------------------------------------------------------------------------------------------------------------------
# fewer passes: quadrature, presets, early stop


def test_path_quadrature_rules():
    t, w = path_quadrature(4, "uniform")
    assert t.tolist() == [0.25, 0.5, 0.75, 1.0] and w.tolist() == [0.25] * 4
    t, w = path_quadrature(3, "gausslegendre")
    assert w.sum() == pytest.approx(1.0) and (t > 0).all() and (t < 1).all()
    # exact for polynomials of degree 2n − 1 = 5 on [0, 1]
    assert (w * t**5).sum() == pytest.approx(1 / 6) and (w * t**4).sum() == pytest.approx(1 / 5)
    with pytest.raises(ValueError):
        path_quadrature(3, "simpson")


def test_stratified_nodes_are_the_shifted_grid_and_unbiased_over_shifts():
    t, w = path_quadrature(4, "stratified", shift=0.0)
    assert t.tolist() == path_quadrature(4, "uniform")[0].tolist() and w.tolist() == [0.25] * 4
    t, _ = path_quadrature(4, "stratified", shift=0.5)
    assert t.tolist() == [0.125, 0.375, 0.625, 0.875]  # the midpoint rule
    # averaged over evenly spread shifts, the 3-point sum of exp(t) tends to the integral e − 1 (the fixed right
    # Riemann sum does not: its bias is O(1/n))
    shifts = (np.arange(2000) + 0.5) / 2000
    mean = np.mean([(w * np.exp(t)).sum() for t, w in (path_quadrature(3, "stratified", u) for u in shifts)])
    t, w = path_quadrature(3, "uniform")
    assert abs(mean - (np.e - 1)) < 1e-6 < abs((w * np.exp(t)).sum() - (np.e - 1))


def test_stratified_nodes_are_drawn_per_iteration_from_the_seed():
    x, b = torch.rand(1, 3, 6, 8), torch.rand(1, 3, 6, 8)

    def nodes(seed, iteration):
        problem = PathProblem(
            lambda z, t: z.sum(dim=(1, 2, 3)),
            x,
            b,
            torch.zeros(1, dtype=torch.long),
            torch.ones(1),
            IGOS_VARIANT,
            (3, 4),
            3,
            0,
            0,
            2,
            0.0,
            16,
            seed,
            quadrature="stratified",
        )
        problem.begin_iteration(iteration)
        return problem.path_t.tolist()

    first = nodes(0, 0)
    assert first == nodes(0, 0) and first != nodes(0, 1) and first != nodes(1, 0)
    step = np.diff(first)
    np.testing.assert_allclose(step, 1 / 3, atol=1e-6)
    assert 0 < first[0] <= 1 / 3 and first[-1] <= 1


def test_antithetic_noise_pairs_consecutive_path_steps():
    x, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)

    def noise(antithetic, n_steps):
        problem = PathProblem(
            lambda z, t: z.sum(dim=(1, 2, 3)),
            x,
            b,
            torch.zeros(2, dtype=torch.long),
            torch.ones(2),
            IGOS_PP_VARIANT,
            (3, 4),
            n_steps,
            0,
            0,
            2,
            0.2,
            16,
            5,
            antithetic=antithetic,
        )
        return problem.noise(0)

    eps = noise(True, 4)  # 4 terms × 4 steps
    assert eps.shape == (16, 16, 16, 3)
    torch.testing.assert_close(eps[1::2], -eps[0::2])
    assert eps[0::2].std().item() == pytest.approx(0.2, rel=0.1)
    assert not torch.equal(eps[0], eps[2])
    odd = noise(True, 3)  # 12 rows: pairs run on across the terms
    torch.testing.assert_close(odd[1::2], -odd[0::2])
    independent = noise(False, 4)
    assert (independent[1::2] + independent[0::2]).abs().mean().item() > 0.1


def test_gauss_legendre_integrated_gradient_is_closer_to_the_integral_with_fewer_points():
    # the integrated gradient of a smooth non-linear score along the path, against a 4000-step Riemann reference
    g = torch.Generator().manual_seed(3)
    x, b = torch.rand(2, 3, 6, 8, generator=g), torch.rand(2, 3, 6, 8, generator=g)
    masks = torch.rand(2, 1, 1, 3, 4, generator=g)
    weights = torch.randn(3, 6, 8, generator=g)

    def score_fn(z, targets):
        return torch.tanh((z * weights).sum(dim=(1, 2, 3)) / 3)

    def integral(n, rule):
        problem = PathProblem(
            score_fn,
            x,
            b,
            torch.zeros(2, dtype=torch.long),
            torch.ones(2),
            IGOS_VARIANT,
            (3, 4),
            n,
            0,
            0,
            2,
            0.0,
            4000,
            0,
            quadrature=rule,
        )
        return problem.path_scores(masks, torch.arange(2), None, with_grad=True)

    _, ref_g = integral(4000, "uniform")  # right Riemann sum: error O(1/4000)
    errors = {}
    for n, rule in [(20, "uniform"), (15, "uniform"), (6, "gausslegendre")]:
        _, grad = integral(n, rule)
        errors[(n, rule)] = ((grad - ref_g).norm() / ref_g.norm()).item()
    assert errors[(6, "gausslegendre")] < errors[(20, "uniform")] / 5, errors


def test_presets_and_explicit_parameters():
    model = loaded()
    official = get_method("igos", model, preset="official")
    assert (official.params["iterations"], official.params["ig_iter"]) == (20, 15)  # main.py's swapped flags
    assert official.params["quadrature"] == "uniform" and not official.params["warm_start"]
    assert official.params["early_stop"] == 0
    fast = get_method("igos", model)
    assert fast.params["preset"] == "fast" and (fast.params["iterations"], fast.params["ig_iter"]) == (25, 4)
    assert fast.params["warm_start"] and fast.params["quadrature"] == "uniform" and fast.params["early_stop"] == 0
    # at most a third of the official forward+backward passes
    assert 25 * 4 <= 20 * 15 / 3
    assert not fast.params["antithetic"] and not official.params["antithetic"]
    # the official code's noise (a draw per evaluation) and failed searches (the last tiny step is taken)
    assert official.params["fresh_noise"] and official.params["failed_search"] == "last"
    assert not fast.params["fresh_noise"] and fast.params["failed_search"] == "last"
    assert fast.params["recovery"] == official.params["recovery"] == "rescale"
    # fast: σ 0.14 and the map blended with the summed integrated gradient; official: the map 1 − U(M), σ 0.2
    assert (fast.params["noise"], fast.params["ig_blend"]) == (0.14, 0.7)
    assert (official.params["noise"], official.params["ig_blend"]) == (0.2, 0.0)
    # iGOS++ keeps the counts it was measured with (16 × 6), its official preset is the same as I-GOS's
    pp_fast = get_method("igos++", model)
    assert (pp_fast.params["iterations"], pp_fast.params["ig_iter"]) == (16, 6) and pp_fast.params["warm_start"]
    assert not pp_fast.params["fresh_noise"] and pp_fast.params["failed_search"] == "keep"
    assert (pp_fast.params["noise"], pp_fast.params["ig_blend"]) == (0.14, 0.7)
    pp_official = get_method("igos++", model, preset="official").params
    assert (pp_official["iterations"], pp_official["ig_iter"], pp_official["warm_start"]) == (20, 15, False)
    # an explicit value wins over the preset's
    assert get_method("igos", model, preset="official", iterations=3).params["iterations"] == 3
    with pytest.raises(ValueError, match="preset"):
        get_method("igos", model, preset="quick")
    with pytest.raises(ValueError, match="recovery"):
        get_method("igos", model, recovery="retry")


def test_stalled_maps_are_counted_and_left_out_of_global_maps_unless_asked():
    """The engine reads the method's flags: stalled maps are reported per label and kept out of the global maps;
    with ``include_stalled`` their recovery maps enter them (the mean of the image-wise maps, independently)."""
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.data import AlignedStack
    from napari_global_xai.explain.pipeline import run_explain

    model = loaded(gain=0.1, bias=-4.0)  # label 'a' stalls (see the test above)
    x, _ = make_images(2, seed=0)
    stack = AlignedStack(pixels=(x.permute(0, 2, 3, 1).numpy() * 255).astype(np.float32), image_ids=["p", "q"])
    config = ExplainConfig(method="igos", params=FAST, targets=["a"], subset="all")
    with pytest.warns(RuntimeWarning, match="stalled"):
        left_out = run_explain(stack, model, config)
    assert left_out.stalled[:, 0].tolist() == [True, True] and left_out.n_stalled == {"a": 2}
    assert left_out.global_maps.count.tolist() == [0]
    assert left_out.provenance["n_stalled_maps"] == {"a": 2}

    with pytest.warns(RuntimeWarning, match="stalled"):
        kept = run_explain(stack, model, ExplainConfig(**{**config.__dict__, "include_stalled": True}))
    assert kept.global_maps.count.tolist() == [2]
    np.testing.assert_allclose(kept.global_maps.get("a"), kept.image_maps[:, 0].mean(0), rtol=1e-5, atol=1e-9)
