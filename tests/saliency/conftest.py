"""Tiny models and stacks for fast explanation tests (32×48 images, a 3-layer CNN)."""

import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai.data import AlignedStack, LabelsTable
from napari_global_xai.models import LoadedModel, ModelCard

H, W = 32, 48
LABELS = ["left_blob", "right_blob", "any_blob"]
#: float32 roundings per map value and gradient pass that may differ between batchings of TinyNet (tests/_tolerance.py):
#: its 4 reductions (3 convs, the head after the spatial mean), each in the forward and the backward pass, with 2 ulp
#: of the map's scale each: 4 × 2 × 2 = 16; a map averaging k passes (IG's steps) carries k times that
PASS_TERMS = 16


class TinyNet(nn.Module):
    def __init__(self, n_labels=3, channels=2):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, n_labels)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def tiny_card(activation="sigmoid", labels=LABELS):
    return ModelCard(
        name="tiny",
        labels=list(labels),
        weights="unused.pt",
        format="torchscript",
        activation=activation,
        input_channels=[0, 1],
        input_size=[H, W],
        mean=[0.4, 0.3],
        std=[0.2, 0.15],
        cam_layer="features.4",
    )


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return LoadedModel(TinyNet(), tiny_card(), torch.device("cpu"))


def make_tiny_stack(n=6, seed=0, with_labels=True):
    """RGB uint8 images with a bright blob left and/or right; labels say which; alternating laterality."""
    rng = np.random.default_rng(seed)
    images = rng.integers(40, 90, size=(n, H, W, 3), dtype=np.uint8)
    truth = np.zeros((n, 3), np.uint8)
    for i in range(n):
        left, right = bool(i % 2 == 0), bool(i % 3 == 0)
        if left:
            images[i, 10:18, 6:14, :2] = 230
        if right:
            images[i, 10:18, 34:42, :2] = 230
        truth[i] = [left, right, left or right]
    ids = [f"img{i}" for i in range(n)]
    lat = np.array(["L", "R"] * (n // 2) + ["L"] * (n % 2))
    labels = (
        LabelsTable(image_ids=ids, names=list(LABELS), values=truth, laterality=lat, split=None)
        if with_labels
        else None
    )
    return AlignedStack(pixels=images, image_ids=ids, laterality=lat, labels=labels, sources=["<memory>"] * n)


@pytest.fixture
def tiny_stack():
    return make_tiny_stack()
