"""A model of the published UWF shape at full size: ResNet34 body, red+green input, 384×512, 8 sigmoid outputs.

Random weights (the numbers checked are identities that hold for any weights), 4 images, through the public API
(:func:`napari_global_xai.explain.pipeline.run_explain`). IG with 8 steps is checked against its own definition
computed here (Gauss-Legendre sum of input gradients) and against completeness; Grad-CAM against a hand-made
Grad-CAM from hooks on ``layer4``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai.config import ExplainConfig
from napari_global_xai.data import AlignedStack
from napari_global_xai.explain.pipeline import run_explain
from napari_global_xai.models import LoadedModel, ModelCard

from _tolerance import float32_atol, mass_normalised_terms, pass_terms

H, W = 384, 512
LABELS = [f"finding_{i}" for i in range(8)]


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (
            None
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet34Like(nn.Module):
    """ResNet34 layout (BasicBlock × [3, 4, 6, 3], 64–512 channels), 2 input channels, 8 logits."""

    def __init__(self, in_channels=2, n_outputs=8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        layers, cin = [], 64
        for cout, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layers.append(
                nn.Sequential(*[Basic(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(blocks)])
            )
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, n_outputs)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(34)
    net = ResNet34Like()
    with torch.no_grad():  # BN statistics of a trained-looking net, so activations neither vanish nor explode
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.fill_(2.0)
                m.running_mean.uniform_(-0.1, 0.1)
    card = ModelCard(
        name="resnet34-like",
        labels=LABELS,
        weights="unused.pt",
        format="torchscript",
        input_channels=[0, 1],
        input_size=[H, W],
        mean=[0.45, 0.3],
        std=[0.25, 0.2],
        cam_layer="layer4",
    )
    model = LoadedModel(net, card, torch.device("cpu"))
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:H, 0:W]
    images = np.empty((4, H, W, 3), np.uint8)
    for i in range(4):  # fundus-like: a bright disc on a smooth background, plus noise
        cy, cx = rng.uniform(100, 280), rng.uniform(120, 390)
        disc = 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 40.0**2))
        base = 60 + 40 * np.sin(xx / 70 + i) + rng.normal(0, 8, (H, W))
        for c, gain in enumerate((1.0, 0.7, 0.3)):
            images[i, ..., c] = np.clip(gain * (base + disc), 0, 255)
    ids = [f"uwf{i}" for i in range(4)]
    stack = AlignedStack(
        pixels=images, image_ids=ids, laterality=np.array(["L"] * 4), labels=None, sources=["<memory>"] * 4
    )
    # explain the output whose evidence (logit minus bias) is highest in every image, so that Grad-CAM (a ReLU of
    # that evidence map, for a global-average-pooled linear head) is not all zero for a random net
    with torch.no_grad():
        evidence = model.scores(model.preprocess(images)) - net.fc.bias
    target = int(evidence.min(dim=0).values.argmax())
    return model, stack, target


@pytest.mark.slow
def test_ig8_equals_its_definition_and_is_complete(setup):
    model, stack, target = setup
    config = ExplainConfig(
        method="ig",
        params={"n_steps": 8},
        targets=[LABELS[target]],
        subset="all",
        reduction="sum",
        normalisation="none",
    )
    # one of the four images: its completeness and the definition need no more (IG at this size is the slowest
    # real-size map, 8 gradient passes of a ResNet34 at 384 x 512; the engine's batching is tested at small sizes)
    stack = stack.subset(np.arange(1))
    result = run_explain(stack, model, config)
    maps = np.asarray(result.image_maps)[:, 0]
    assert maps.shape == (1, H, W) and result.n_computed == 1

    x = model.preprocess(stack.pixels)
    with torch.no_grad():
        delta = (model.scores(x)[:, target] - model.scores(torch.zeros_like(x))[:, target]).numpy()
    # completeness: the attributions of an image add up to f(x) - f(baseline) (zero baseline), up to the 8-node
    # quadrature error of the path integral
    totals = maps.reshape(1, -1).sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(totals, delta, rtol=0.05, atol=0.02 * np.abs(delta).max())

    # the definition, for image 0: (x - b) · Σ_k w_k ∇f(b + α_k (x - b)) on Gauss-Legendre nodes mapped to [0, 1]
    nodes, weights = np.polynomial.legendre.leggauss(8)
    x0 = x[:1]
    grad_sum = torch.zeros_like(x0)
    for alpha, weight in zip((nodes + 1) / 2, weights / 2):
        xi = (alpha * x0).detach().requires_grad_(True)
        grad_sum += weight * torch.autograd.grad(model.scores(xi)[0, target], xi)[0]
    reference = (x0 * grad_sum).sum(dim=1)[0].numpy()
    # the engine's batched steps against one step at a time: float32 rounding of 8 gradient passes through the
    # ResNet (pass_terms each, tests/_tolerance.py; was rtol=1e-3, atol=1e-4 × max|map|)
    atol = float32_atol(np.abs(reference).max(), pass_terms(model.module) * 8)
    np.testing.assert_allclose(maps[0], reference, rtol=0, atol=atol)


@pytest.mark.slow
def test_gradcam_equals_hand_made_gradcam_on_layer4(setup):
    model, stack, target = setup
    result = run_explain(stack, model, ExplainConfig(method="gradcam", targets=[LABELS[target]], subset="all"))
    maps = np.asarray(result.image_maps)[:, 0]
    assert maps.shape == (4, H, W) and (maps >= 0).all()

    store = {}
    layer = model.module.layer4
    handle = layer.register_forward_hook(lambda m, i, out: store.__setitem__("a", out))
    try:
        x = model.preprocess(stack.pixels).requires_grad_(True)
        score = model.scores(x)[:, target].sum()
        (grads,) = torch.autograd.grad(score, store["a"])
    finally:
        handle.remove()
    acts = store["a"].detach()
    assert acts.shape == (4, 512, H // 32, W // 32)
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1, keepdim=True))
    up = torch.nn.functional.interpolate(cam, size=(H, W), mode="bilinear", align_corners=False).clamp_min(0)[:, 0]
    mass = up.flatten(1).sum(dim=1)
    assert (mass > 0).all(), "the random model gives an all-zero Grad-CAM: pick another seed"
    reference = (up / mass.view(-1, 1, 1)).numpy()

    np.testing.assert_allclose(maps.reshape(4, -1).sum(axis=1), 1.0, rtol=1e-4)  # mass-normalised
    # the engine's Grad-CAM against this one: float32 rounding of a gradient pass (pass_terms), the CAM's weighted sum
    # of 512 channel maps (4 per channel) and the mass normalisation over H·W (tests/_tolerance.py; was rtol=1e-4,
    # atol=1e-5 × max)
    terms = mass_normalised_terms(pass_terms(model.module) + 4 * acts.shape[1], H * W)
    atol = float32_atol(reference.max(), terms)
    np.testing.assert_allclose(maps, reference, rtol=0, atol=atol)
    # the global map of the label is the mean of the 4 image-wise maps (its fixed-point mean adds at most 2**-40)
    np.testing.assert_allclose(result.global_maps.mean[0], reference.mean(axis=0), rtol=0, atol=atol + 2.0**-40)
