"""Turn raw attributions into image-wise maps: channel reduction, then per-image normalisation.

Choices (methods.md §1.6, the paper is silent on them):

* channel reduction ``abs_sum`` (default): sum over channels of |attribution|; ``sum`` (signed), ``pos_sum``
  (positive evidence only) and ``l2`` are selectable. CAM-like methods (one non-negative channel) pass through.
* per-image normalisation ``mass`` (default for aggregation): each map sums to 1, so every image contributes the same
  total importance; ``max``: each map's maximum is 1 (the published code's default); ``none``.
"""

from __future__ import annotations

import torch

from ..config import NORMALISATIONS, REDUCTIONS

__all__ = ["REDUCTIONS", "NORMALISATIONS", "reduce_channels", "normalise_maps", "to_image_maps"]

_EPS = 1e-12


def reduce_channels(attr: torch.Tensor, mode: str = "abs_sum") -> torch.Tensor:
    """``(k, c, H, W)`` → ``(k, H, W)``."""
    if mode == "abs_sum":
        return attr.abs().sum(dim=1)
    if mode == "sum":
        return attr.sum(dim=1)
    if mode == "pos_sum":
        return attr.clamp_min(0).sum(dim=1)
    if mode == "l2":
        return attr.pow(2).sum(dim=1).sqrt()
    raise ValueError(f"unknown channel reduction {mode!r}; choose from {REDUCTIONS}")


def normalise_maps(maps: torch.Tensor, mode: str = "mass") -> torch.Tensor:
    """Per-image normalisation of ``(k, H, W)`` maps.

    ``mass`` divides by the sum of absolute values (a signed map keeps its sign and has unit total mass); ``max``
    divides by the largest absolute value; an all-zero map stays zero.
    """
    if mode == "none":
        return maps
    flat = maps.abs().flatten(1)
    if mode == "mass":
        scale = flat.sum(dim=1)
    elif mode == "max":
        scale = flat.amax(dim=1)
    else:
        raise ValueError(f"unknown normalisation {mode!r}; choose from {NORMALISATIONS}")
    return maps / torch.where(scale > _EPS, scale, torch.ones_like(scale)).view(-1, 1, 1)


def to_image_maps(attr: torch.Tensor, reduction: str = "abs_sum", normalisation: str = "mass") -> torch.Tensor:
    """Raw attributions ``(k, c, H, W)`` → normalised float32 image-wise maps ``(k, H, W)``."""
    return normalise_maps(reduce_channels(attr, reduction).float(), normalisation)
