"""A model built here for the SAG tests: softmax over three outputs, position-aware (so the frame matters)."""

import math

import torch
from torch import nn

from _tolerance import float32_atol, pairwise_sum_terms

H, W = 40, 56  # a shape the project never uses
LABELS = ["spot", "other", "rest"]


class LeftSpotNet(nn.Module):
    """Softmax over three outputs; output 0 rises with intensity in the left third, falls with it on the right."""

    def __init__(self):
        super().__init__()
        cols = torch.linspace(1.0, -1.0, W)
        weight = torch.zeros(3, 3, H, W)
        weight[0] = cols.clamp(min=-0.3).view(1, 1, W).expand(3, H, W)
        weight[1] = 0.2
        self.weight = nn.Parameter(weight / (H * W) * 40)

    def forward(self, x):
        return (x.unsqueeze(1) * self.weight).sum(dim=(2, 3, 4))


def spot_model(harmonise: bool = True):
    """The :class:`LeftSpotNet` as a loaded model with its own card (no file)."""
    from napari_global_xai.models.card import LoadedModel, ModelCard

    card = ModelCard(
        name="left spot",
        labels=LABELS,
        weights="inline.pt",
        activation="softmax",
        input_channels=[0, 1, 2],
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        harmonise_laterality=harmonise,
    )
    torch.manual_seed(0)
    return LoadedModel(LeftSpotNet(), card, torch.device("cpu"))


def blur_terms(sigma: float) -> int:
    """Roundings of a blur fill: two separable passes of 2r + 1 taps, r = ceil(3σ) (perturb's gaussian_blur)."""
    return 2 * (2 * math.ceil(3 * sigma) + 1)


def confidence_atol(model, x: torch.Tensor, fill_terms: int) -> float:
    """Tolerance between two float32 computations of LeftSpotNet's softmax confidences on filled copies of ``x``.

    Each logit is one sum of 3·H·W products (tests/_tolerance.py: pairwise_sum_terms, plus 1 for the product), after
    the fill's own ``fill_terms`` (the keep/fill blend and the fill), relative to the sum of the terms' magnitudes
    Σ|w·x| (the logit itself cancels); a filled pixel is no larger than max(|x|, 2) (black is -mean/std = -2); a
    softmax output moves by at most half the largest logit change.
    """
    size = max(float(x.abs().max()), 2.0)
    with torch.no_grad():
        magnitude = float(model.module.weight.abs().sum(dim=(1, 2, 3)).max()) * size
    return float32_atol(magnitude / 2, pairwise_sum_terms(3 * H * W) + 1 + fill_terms)
