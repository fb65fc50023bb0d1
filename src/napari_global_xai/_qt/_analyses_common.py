"""Helpers shared by the analyses docks (sanity, compare, regions): finding the Explain dock's map layers."""

from __future__ import annotations

import numpy as np

from .._layers import IMAGE_MAPS_KEY

__all__ = ["REGIONS_KEY", "image_maps_layers", "labels_of_layer", "maps_of_layer", "show_input_error"]

#: Labels-layer metadata key holding ``{id: region name}`` (set by the Regions dock, read by the Compare dock).
REGIONS_KEY = "napari_global_xai_regions"


def image_maps_layers(viewer) -> list:
    """Layers holding image-wise maps made by the Explain dock (data ``(L, n, H, W)``, labels in metadata)."""
    return [
        layer
        for layer in viewer.layers
        if IMAGE_MAPS_KEY in layer.metadata and layer.metadata[IMAGE_MAPS_KEY].get("frame", "left") == "left"
    ]


def labels_of_layer(layer) -> list[str]:
    return [] if layer is None else list(layer.metadata[IMAGE_MAPS_KEY]["labels"])


def maps_of_layer(layer, label: str | None) -> tuple[np.ndarray, np.ndarray]:
    """One label's computed image-wise maps ``(m, H, W)`` and their image indices (``None``: each image's mean)."""
    from ..analyses.explain_inputs import label_maps

    meta = layer.metadata[IMAGE_MAPS_KEY]
    data = np.moveaxis(np.asarray(layer.data), 0, 1)  # (n, L, H, W)
    return label_maps(data, np.asarray(meta["computed"]), list(meta["labels"]), label)


def show_input_error(panel, exc) -> None:
    """One line in the dock's status and a napari notification; the dock stays usable."""
    from napari.utils.notifications import show_error

    panel.status.setText(f"error: {exc}")
    show_error(str(exc))


def launch_from_inputs(dock, job):
    """Read the dock's ``inputs()`` and launch ``job`` with them on its run panel (``dock._on_result`` receives the
    result); an input error is shown in one line and the dock stays usable. Returns the worker, or None."""
    try:
        kwargs = dock.inputs()
    except Exception as exc:  # noqa: BLE001 - shown, the dock stays usable
        show_input_error(dock.run_panel, exc)
        return None
    return dock.run_panel.launch(job, dock._on_result, **kwargs)
