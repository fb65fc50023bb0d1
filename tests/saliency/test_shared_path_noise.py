"""One path, all labels, for the noisy-sample methods (saliency/noise.py): SmoothGrad and gradient SHAP of several
labels of an image from one forward per noisy sample give, under one seed, the maps of one call per label and of
Captum's own NoiseTunnel(Saliency) / GradientShap with the same seeded draws, with the passes of one label."""

import captum.attr as ca
import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai.models import LoadedModel, ModelCard
from napari_global_xai.saliency import get_method

from _tolerance import float32_atol, pass_terms

N_OUT, H, W = 5, 24, 32
#: Targets of two images: all five labels, and two labels in another order (-1 = no map).
TARGETS = torch.tensor([[0, 1, 2, 3, 4], [4, 2, -1, -1, -1]])
#: smoothgrad: 5 samples in blocks of 2 (two blocks and a remainder of 1); gradient SHAP against the black fill.
CASES = [
    ("smoothgrad", {"nt_samples": 5, "nt_samples_batch_size": 2, "stdevs": 0.2, "seed": 7}),
    ("gradient_shap", {"n_samples": 4, "stdevs": 0.1, "baseline": "black", "seed": 11}),
]


class FiveNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(8, N_OUT)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


@pytest.fixture
def five():
    """``(LoadedModel of FiveNet, two normalised 24 × 32 images)``."""
    torch.manual_seed(0)
    card = ModelCard(
        name="five",
        labels=[f"l{i}" for i in range(N_OUT)],
        weights="unused.pt",
        input_size=[H, W],
        mean=[0.4, 0.3, 0.2],
        std=[0.2, 0.2, 0.1],
    )
    model = LoadedModel(FiveNet().eval(), card, torch.device("cpu"))
    rng = np.random.default_rng(5)
    return model, model.preprocess(rng.integers(0, 256, size=(2, H, W, 3), dtype=np.uint8))


def _samples(params):
    return params.get("nt_samples", params.get("n_samples"))


def _atol(model, reference, params):
    # another batch composition and order of the same sums: a forward and backward per sample a map averages
    return float32_atol(reference.abs().max(), pass_terms(model.module) * _samples(params))


@pytest.mark.parametrize("name,params", CASES)
def test_all_labels_equal_per_label_maps_and_report_passes(name, params, five):
    model, x = five
    method = get_method(name, model, **params)
    together = method.attribute_labels(x.clone().requires_grad_(True), TARGETS)
    passes = method.last_passes
    assert together.shape == (2, N_OUT, *x.shape[1:])
    for j in range(TARGETS.shape[1]):
        col = TARGETS[:, j]
        alone = method.attribute(x.clone().requires_grad_(True), col.clamp_min(0)).detach()
        wanted = col >= 0
        torch.testing.assert_close(together[wanted, j], alone[wanted], rtol=0, atol=_atol(model, alone, params))
        assert not together[~wanted, j].any()
    n = _samples(params)
    assert passes == {"forward": 0, "forward_backward": 2 * n, "backward": int((TARGETS >= 0).sum()) * n}


def _captum(name, module, x, target, params):
    """One label's map written directly against Captum, the global generators seeded here."""
    torch.manual_seed(params["seed"])
    np.random.seed(params["seed"])  # Captum draws GradientShap's baselines and path coefficients with numpy
    if name == "smoothgrad":
        return ca.NoiseTunnel(ca.Saliency(module)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=params["nt_samples"],
            nt_samples_batch_size=params["nt_samples_batch_size"],
            stdevs=params["stdevs"],
            target=target,
            abs=False,
        )
    black = ((torch.zeros(3) - torch.tensor([0.4, 0.3, 0.2])) / torch.tensor([0.2, 0.2, 0.1])).view(1, 3, 1, 1)
    return ca.GradientShap(module).attribute(
        x,
        baselines=black.expand(1, 3, H, W).contiguous(),
        target=target,
        n_samples=params["n_samples"],
        stdevs=params["stdevs"],
    )


@pytest.mark.parametrize("name,params", CASES)
def test_all_labels_equal_captum_with_the_same_draws(name, params, five):
    model, x = five
    together = get_method(name, model, **params).attribute_labels(x.clone(), TARGETS)
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        for j in range(TARGETS.shape[1]):
            col = TARGETS[:, j]
            direct = _captum(name, model.module, x.clone().requires_grad_(True), col.clamp_min(0), params).detach()
            wanted = col >= 0
            torch.testing.assert_close(together[wanted, j], direct[wanted], rtol=0, atol=_atol(model, direct, params))
    np.random.set_state(numpy_state)
    # the noise matters: another seed gives other maps
    other = get_method(name, model, **{**params, "seed": params["seed"] + 1}).attribute_labels(x.clone(), TARGETS)
    assert (other - together).abs().max() > 100 * _atol(model, together, params)


@pytest.mark.parametrize("name,params", CASES)
def test_all_labels_take_the_forward_passes_of_one_label(name, params, five):
    model, x = five
    forwards = []
    hook = model.module.register_forward_hook(lambda _m, inputs, _out: forwards.append(len(inputs[0])))
    try:
        method = get_method(name, model, **params)
        method.attribute_labels(x.clone(), TARGETS[:, :1])
        one, one_passes = list(forwards), method.last_passes
        forwards.clear()
        method.attribute_labels(x.clone(), TARGETS)
        every, every_passes = list(forwards), method.last_passes
    finally:
        hook.remove()
    assert every == one and sum(every) == 2 * _samples(params)
    assert every_passes["forward_backward"] == one_passes["forward_backward"] == sum(every)
    assert every_passes["backward"] == int((TARGETS >= 0).sum()) * _samples(params)


class LinearNet(nn.Module):
    """``out_j = Σ w_j ⊙ x``: its gradient is ``w_j`` everywhere, so gradient SHAP without noise is exactly
    ``(x − baseline) ⊙ w_j`` whatever the path coefficients drawn."""

    def __init__(self, weights):
        super().__init__()
        self.weights = nn.Parameter(weights, requires_grad=False)

    def forward(self, x):
        return torch.einsum("kchw,ochw->ko", x, self.weights)


def test_gradient_shap_blur_baseline_is_each_images_own_blur():
    """Every image of a call is explained against its own blurred copy (not the first image's), on the one-label
    Captum path and on the shared path alike."""
    from napari_global_xai.perturb.fills import make_fill

    torch.manual_seed(3)
    weights = torch.randn(2, 3, H, W)
    card = ModelCard(name="linear", labels=["a", "b"], weights="unused.pt", input_size=[H, W])
    model = LoadedModel(LinearNet(weights).eval(), card, torch.device("cpu"))
    x = torch.randn(3, 3, H, W) * torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1)  # three unlike images
    method = get_method("gradient_shap", model, n_samples=3, stdevs=0.0, baseline="blur", blur_sigma=2.0)
    expected = (x - make_fill("blur", x, sigma=2.0))[:, None] * weights[None]  # (k, labels, c, H, W)
    one = method.attribute(x.clone().requires_grad_(True), torch.tensor([1, 0, 1]))
    torch.testing.assert_close(one, expected[[0, 1, 2], [1, 0, 1]], rtol=1e-5, atol=1e-6)
    both = method.attribute_labels(x.clone().requires_grad_(True), torch.tensor([[0, 1]] * 3))
    torch.testing.assert_close(both, expected, rtol=1e-5, atol=1e-6)
