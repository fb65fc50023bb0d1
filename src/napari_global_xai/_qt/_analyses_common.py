"""Helpers shared by the analyses docks (sanity, compare, regions): finding the Explain dock's map layers, and their
maps handed to a job lazily (:class:`LayerMaps`: the main thread reads no map, the worker one label at a time)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from .._layers import IMAGE_MAPS_KEY

__all__ = [
    "REGIONS_KEY",
    "LayerMaps",
    "image_maps_layers",
    "labels_of_layer",
    "maps_of_layer",
    "show_input_error",
]

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


@dataclass(frozen=True)
class LayerMaps:
    """The image-wise maps of an Explain maps layer as a job takes them: lazy, the stored values.

    Made on the main thread by :func:`maps_of_layer` without reading a map; the job reads what it needs in its worker
    thread (:meth:`read`: one label's maps; :meth:`by_label`: every label's, one at a time). The values are the
    stored ones (the layer's metadata keeps them), not the layer's data, which napari shows × the run's scale factor
    (:data:`napari_global_xai._layers.MAP_SCALE_KEY`).

    Attributes
    ----------
    maps : dask.array.Array, (n, L, H, W)
        Stored maps in the layer's frame (0 where not computed).
    computed : numpy.ndarray, (n, L) bool
    labels : list of str
    """

    maps: object = field(repr=False)
    computed: np.ndarray = field(repr=False)
    labels: list[str]

    def indices(self, label: str | None) -> np.ndarray:
        """Image indices of :meth:`read`'s maps, from the flags alone (the same errors as :meth:`read`)."""
        from ..analyses.explain_inputs import label_maps

        # label_maps over a zero-size stand-in of the maps: its choice of images and its errors, no pixel read
        empty = np.broadcast_to(np.float32(0), (*self.computed.shape, 0, 0))
        return label_maps(empty, self.computed, self.labels, label)[1]

    def read(self, label: str | None) -> tuple[np.ndarray, np.ndarray]:
        """One label's computed maps ``(m, H, W)`` float32 and their image indices (``None``: each image's mean over its
        labels, read image by image); only that label's maps are materialised. Call it in the job, not on the main
        thread."""
        from ..analyses.explain_inputs import label_maps

        return label_maps(self.maps, self.computed, self.labels, label)

    def by_label(self) -> Mapping[str, np.ndarray]:
        """Every label with a computed map → its maps ``(m, H, W)``, read when looked up, one label held at a time."""
        return _LabelMaps(self)


class _LabelMaps(Mapping):
    """:meth:`LayerMaps.by_label`: a mapping that reads a label's maps when looked up and keeps only the last one (a
    second look-up of the same label, e.g. a shape check then the loop, reads it once)."""

    def __init__(self, source: LayerMaps):
        self._source = source
        self._labels = [name for j, name in enumerate(source.labels) if source.computed[:, j].any()]
        self._last: tuple[str, np.ndarray] | None = None

    def __getitem__(self, label: str) -> np.ndarray:
        if label not in self._labels:
            raise KeyError(label)
        if self._last is None or self._last[0] != label:
            self._last = None  # the previous label's maps go before the next are read
            self._last = (label, self._source.read(label)[0])
        return self._last[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)


def maps_of_layer(layer) -> LayerMaps:
    """The image-wise maps of an Explain maps layer, lazy (nothing is read here: cheap on the main thread)."""
    meta = layer.metadata[IMAGE_MAPS_KEY]
    return LayerMaps(meta["maps"], np.asarray(meta["computed"], bool), list(meta["labels"]))


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
