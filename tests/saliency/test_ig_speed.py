"""One path, all labels (saliency/ig.py): several labels of an image from one forward per path image give the maps
of the per-label computation; the adaptive IG rule beats a uniform rule at equal passes where the output saturates;
completeness and passes are reported per map."""

import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai.config import ExplainConfig
from napari_global_xai.models import LoadedModel
from napari_global_xai.saliency import ImageMapEngine, get_method

from .conftest import PASS_TERMS, H, TinyNet, W, tiny_card
from _tolerance import float32_atol, mass_normalised_terms, pass_terms

#: Targets of three images: all three labels, one label, two labels in another order (-1 = no map).
TARGETS = torch.tensor([[0, 1, 2], [2, -1, -1], [1, 0, -1]])


def _images(model, stack):
    return model.preprocess(stack.to_left_eye().get(slice(0, 3)))


def tiny_model_inputs(stack):
    """The first three images of ``stack``, normalised with the tiny card."""
    return LoadedModel(TinyNet(), tiny_card(), torch.device("cpu")).preprocess(stack.to_left_eye().get(slice(0, 3)))


@pytest.mark.parametrize(
    "name,params",
    [
        ("ig", {"n_steps": 8}),
        ("ig", {"n_steps": 6, "integration": "riemann_trapezoid", "baseline": "blur", "blur_sigma": 2.0}),
        ("saliency", {}),
        ("input_x_gradient", {}),
    ],
)
def test_all_labels_at_once_equal_per_label_maps(name, params, tiny_model, tiny_stack):
    """attribute_labels (one forward per path image, one backward per label) equals one Captum call per label."""
    method = get_method(name, tiny_model, **params)
    method.plan_batches(4)  # IG: 4 path images per forward, so the steps of an image span several forwards
    x = _images(tiny_model, tiny_stack)
    together = method.attribute_labels(x, TARGETS)
    passes_made, completeness = method.last_passes, method.last_completeness
    assert together.shape == (3, 3, *x.shape[1:])
    passes = params.get("n_steps", 1)
    for j in range(TARGETS.shape[1]):
        col = TARGETS[:, j]
        alone = method.attribute(x.clone().requires_grad_(True), col.clamp_min(0)).detach()
        wanted = col >= 0
        # other batches and an other order of the same sums: PASS_TERMS per pass, times the passes a map averages
        atol = float32_atol(alone.abs().max(), PASS_TERMS * passes)
        torch.testing.assert_close(together[wanted, j], alone[wanted], rtol=0, atol=atol)
        assert not together[~wanted, j].any()
    if name == "ig":  # forward-only passes (f(x), f(b)) are counted apart from forward+backward passes
        assert passes_made == {"forward": 6, "forward_backward": 3 * passes, "backward": 6 * passes}
        assert np.isfinite(completeness[TARGETS >= 0]).all()
        assert np.isnan(completeness[TARGETS < 0]).all()


@pytest.mark.parametrize("method,params", [("ig", {"n_steps": 8}), ("saliency", {})])
def test_engine_groups_an_images_labels_into_one_call(method, params, tiny_model, tiny_stack):
    """The engine's maps for several labels per image equal its maps computed one label at a time, and each map's
    completeness error is reported (IG) or left NaN (saliency)."""
    images = tiny_stack.to_left_eye().get(slice(0, 4))
    pairs = np.array([[1, 1, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]], bool)
    engine = ImageMapEngine(tiny_model, ExplainConfig(method=method, params=params), [0, 1, 2])
    calls = []
    original = engine.method.attribute_labels
    engine.method.attribute_labels = lambda x, t: calls.append(tuple(t.shape)) or original(x, t)
    completeness = np.full(pairs.shape, np.nan)
    together = engine.compute(images, pairs, completeness=completeness)
    assert all(m == 3 for _, m in calls)  # every call carries an image's labels together
    alone = np.zeros_like(together)
    for j in range(3):  # one label per image: the per-label (Captum) computation
        only = np.zeros_like(pairs)
        only[:, j] = pairs[:, j]
        alone[:, j] = engine.compute(images, only)[:, j]
    atol = float32_atol(np.abs(alone).max(), mass_normalised_terms(PASS_TERMS * params.get("n_steps", 1), H * W))
    np.testing.assert_allclose(together, alone, rtol=0, atol=atol)
    if method == "ig":
        assert np.isfinite(completeness[pairs]).all() and (completeness[pairs] < 0.1).all()
    assert np.isnan(completeness[~pairs]).all()


class SaturatingNet(nn.Module):
    """A smooth small CNN (tanh activations) whose label scores pass through ``scale · tanh(gain_l · (h_l(x) −
    h_l(0)))``, each label's gain set so that on the path from zero to ``image`` its output changes within the first
    quarter of the path, in a step about 0.05 wide, and is flat after (saturation)."""

    def __init__(self, image, steepness=100.0, scale=4.0, n_labels=3):
        super().__init__()
        c = image.shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(c, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Tanh()
        )
        self.head = nn.Linear(8, n_labels)
        with torch.no_grad():
            change = (self.h(image[None]) - self.h(torch.zeros_like(image[None])))[0]
        self.register_buffer("gain", steepness / change.abs())
        self.scale = scale

    def h(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))

    def forward(self, x):
        return self.scale * torch.tanh(self.gain * (self.h(x) - self.h(torch.zeros_like(x))))


def _relative_l2(a, ref):
    return float((a - ref).norm() / ref.norm())


def test_adaptive_rule_beats_uniform_rules_at_equal_passes_where_the_output_saturates(tiny_stack):
    torch.manual_seed(0)
    image = tiny_model_inputs(tiny_stack)[0]
    model = LoadedModel(SaturatingNet(image), tiny_card(), torch.device("cpu"))
    x, targets = image.expand(3, *image.shape).clone(), torch.tensor([0, 1, 2])  # one image, its three labels
    with torch.no_grad():
        scores = model.module(torch.linspace(0, 1, 41).view(-1, 1, 1, 1) * image)
    change = (scores - scores[0]).abs() / (scores[-1] - scores[0]).abs()
    assert (change[10] > 0.9).all()  # saturation: 90 % of the change within the first quarter of the path

    def ig(n, rule):
        method = get_method("ig", model, n_steps=n, integration=rule)
        method.plan_batches(8)
        return method.attribute(x.clone().requires_grad_(True), targets).detach(), method

    reference, _ = ig(512, "gausslegendre")
    n = 10
    adaptive, method = ig(n, "adaptive")
    assert method.last_passes == {"forward": 0, "forward_backward": 3 * n, "backward": 3 * n}
    distances = {"adaptive": _relative_l2(adaptive, reference)}
    for rule in ("riemann_middle", "riemann_trapezoid", "riemann_right"):
        distances[rule] = _relative_l2(ig(n, rule)[0], reference)
    assert distances["adaptive"] < 0.5 * min(v for k, v in distances.items() if k != "adaptive"), distances
    # completeness: the adaptive map's sum is the score change up to its quadrature error, and it is reported
    with torch.no_grad():
        change = (model.module(x) - model.module(torch.zeros_like(x))).gather(1, targets[:, None])[:, 0]
    error = (adaptive.flatten(1).sum(1) - change).abs() / change.abs()
    atol = float32_atol(1.0, 2 * pass_terms(model.module) * n)
    np.testing.assert_allclose(method.last_completeness.numpy(), error.numpy(), rtol=1e-4, atol=atol)
