"""A model built here for the SAG tests: softmax over three outputs, position-aware (so the frame matters)."""

import torch
from torch import nn

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
