"""napari sample data: the shipped planted-truth UWF stack, its labels and ground truth."""

from __future__ import annotations

import numpy as np

__all__ = ["make_sample_stack"]


def make_sample_stack():
    """Layers: the sample stack (left-eye frame), planted label regions, and per-image lesions + marker."""
    from ._layers import stack_layer_data
    from .samples import load_ground_truth, load_sample_stack

    stack = load_sample_stack()
    truth = load_ground_truth()
    regions = np.zeros(next(iter(truth["regions"].values())).shape, np.uint8)
    names = ["haemorrhage", "peripheral_lesion", "disc_swelling", "arcade_lesion"]
    for k, name in enumerate(names):
        regions[truth["regions"][name]] = k + 1
    lesions = truth["lesions"].copy()
    lesions[truth["artefacts"]] = len(names) + 1
    region_meta = {"values": {k + 1: n for k, n in enumerate(names)}}
    return [
        stack_layer_data(stack, "uwf_sample"),
        (regions, {"name": "planted regions", "opacity": 0.35, "metadata": region_meta, "visible": False}, "labels"),
        (
            lesions,
            {
                "name": "planted lesions + marker",
                "opacity": 0.6,
                "visible": False,
                "metadata": {"values": {**region_meta["values"], len(names) + 1: "corner marker"}},
            },
            "labels",
        ),
    ]
