"""Registered model architectures, so state dicts can be loaded with ``weights_only=True``.

A user's own architecture is registered with :func:`register_architecture` before loading its state dict.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["DemoNet", "register_architecture", "build_architecture", "ARCHITECTURES"]

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str):
    """Decorator: make ``factory(**kwargs) -> nn.Module`` loadable by name from a model card."""

    def deco(factory):
        ARCHITECTURES[name] = factory
        return factory

    return deco


def build_architecture(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered architecture.

    Raises
    ------
    KeyError
        With the list of known names, when ``name`` is not registered.
    """
    try:
        factory = ARCHITECTURES[name]
    except KeyError:
        raise KeyError(
            f"unknown architecture {name!r}; registered: {sorted(ARCHITECTURES)}. "
            "Register yours with napari_global_xai.models.register_architecture."
        ) from None
    return factory(**kwargs)


def _conv_bn(cin, cout, stride=1, kernel=3):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class ResidualBlock(nn.Module):
    """Basic ResNet block (two 3×3 convs) with a strided 1×1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class DemoNet(nn.Module):
    """Compact ResNet-style multi-label classifier for 2-channel (red, green) UWF images.

    Two overlapping stride-2 3×3 convs (no patchify grid), then three residual stages (stride 2 each) to a
    stride-16 feature map, and a head on the concatenated global average and global max (max pooling lets a few
    small lesions decide a label). Output: one logit per label (sigmoid multi-label).

    Parameters
    ----------
    in_channels : int
    n_labels : int
    widths : tuple of int
        Channels of the stem and of the three stages.
    """

    def __init__(self, in_channels: int = 2, n_labels: int = 5, widths=(16, 32, 48, 96)):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(_conv_bn(in_channels, w0, 2), _conv_bn(w0, w0, 2))
        self.stage1 = ResidualBlock(w0, w1, 2)
        self.stage2 = ResidualBlock(w1, w2, 2)
        self.stage3 = nn.Sequential(ResidualBlock(w2, w3, 1), ResidualBlock(w3, w3, 1))
        self.head = nn.Linear(2 * w3, n_labels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


@register_architecture("demo_net")
def _demo_net(**kwargs) -> nn.Module:
    return DemoNet(**kwargs)
