"""Models of published shapes for the benchmark scripts (random weights: speed does not depend on them)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResNet34Like", "real_size_model", "REAL_SIZE", "REAL_LABELS"]

#: The published UWF input: 384 × 512, red + green.
REAL_SIZE = (384, 512)
REAL_LABELS = [f"finding_{i}" for i in range(8)]


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
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
    """The ResNet34 layout (7×7 stem, BasicBlock × [3, 4, 6, 3], 64–512 channels, global average pool, linear head).

    Parameters
    ----------
    in_channels : int
        2 for the red + green UWF models.
    n_outputs : int
        8 sigmoid outputs in the published model.
    """

    def __init__(self, in_channels: int = 2, n_outputs: int = 8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        stages, cin = [], 64
        for cout, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stages.append(
                nn.Sequential(
                    *[_BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(blocks)]
                )
            )
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512, n_outputs)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(x.mean(dim=(2, 3)))


def real_size_model(device="cpu", seed: int = 0):
    """A :class:`~napari_global_xai.models.LoadedModel` of :class:`ResNet34Like` with a card of the published shape
    (channels ``[0, 1]``, 384 × 512, sigmoid, CAM layer ``layer4``), on ``device``."""
    from napari_global_xai.models import LoadedModel, ModelCard
    from napari_global_xai.models.device import resolve_device

    torch.manual_seed(seed)
    dev = resolve_device(device)
    module = ResNet34Like().to(dev).to(memory_format=torch.channels_last)
    card = ModelCard(
        name="resnet34-like (random weights)",
        labels=list(REAL_LABELS),
        weights="none",
        format="torchscript",
        input_channels=[0, 1],
        input_size=list(REAL_SIZE),
        mean=[0.45, 0.3],
        std=[0.25, 0.2],
        cam_layer="layer4",
    )
    return LoadedModel(module, card, dev)
