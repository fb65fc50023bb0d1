"""napari sample data: the shipped planted-truth UWF stack, its labels and ground truth.

The stack is the layer the docks work on, so it is the one selected once the sample is open (napari selects the
last layer added, here a labels layer that must stay above the stack to be seen).
"""

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
    _select_when_added("uwf_sample")
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


def _select_when_added(name: str) -> None:
    """Select layer ``name`` of the current viewer on the next event-loop turn (after napari added the sample's
    layers and selected the last); nothing without a viewer (the function called as a library)."""
    try:
        import napari
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication
    except ImportError:
        return
    viewer = napari.current_viewer()
    if viewer is None or QApplication.instance() is None:
        return

    def select():
        if name in viewer.layers:
            viewer.layers.selection.active = viewer.layers[name]

    QTimer.singleShot(0, select)
