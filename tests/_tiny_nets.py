"""Small models the tests build themselves (shapes the project did not choose), kept in one place so that no test file
carries a copy of another's."""

from torch import nn


class TwoLabelNet(nn.Module):
    """Two 3 × 3 conv layers (3 → 4 → 6 channels, ReLU) and a linear head on their spatial mean: two outputs."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


def two_label_model(height: int, width: int, harmonise_laterality: bool = True):
    """A :class:`TwoLabelNet` (fresh weights from torch's current seed) as a user's TorchScript-format model with
    labels ``near`` and ``far`` at ``height`` × ``width``, on the CPU."""
    import torch

    from napari_global_xai.models import LoadedModel, ModelCard

    card = ModelCard(
        name="t",
        labels=["near", "far"],
        weights="unused.pt",
        format="torchscript",
        input_channels=[0, 1, 2],
        input_size=[height, width],
        harmonise_laterality=harmonise_laterality,
    )
    return LoadedModel(TwoLabelNet(), card, torch.device("cpu"))
