"""Which layers a dock offers, and the stack behind an image layer: what every dock that reads the viewer shares.

The plugin marks its own layers with metadata keys: :data:`GLOBAL_MAP_KEY` (a global map made by the Explain dock,
read by the PEPPR dock) here, ``IMAGE_MAPS_KEY`` and ``STACK_METADATA_KEY`` in :mod:`napari_global_xai._layers`
(Qt-free, as the reader and writer use them). A stack picker lists image stacks, never the plugin's maps.
"""

from __future__ import annotations

from dataclasses import replace

from .._layers import IMAGE_MAPS_KEY, MAP_KIND_KEY, STACK_METADATA_KEY

__all__ = ["GLOBAL_MAP_KEY", "stack_from_layer", "stack_layers"]

#: Image-layer metadata key of a global map (label, method, subset, stack layer, the GlobalMaps).
GLOBAL_MAP_KEY = "napari_global_xai_global_map"


def stack_from_layer(layer, labels_csv: str | None = None, **csv_options):
    """The :class:`AlignedStack` behind an image layer (from the reader's metadata, else built from the data).

    A labels CSV, when given, replaces the layer's labels (rows matched by image id or file name); ``csv_options``
    (``label_names``, ``id_column``, ``laterality_column``, ``label_map``) go to
    :func:`~napari_global_xai.data.read_labels_csv`.
    """
    from ..data import AlignedStack, read_labels_csv

    meta = layer.metadata.get(STACK_METADATA_KEY, {})
    stack = meta.get("stack")
    if stack is None:
        data = layer.data
        if data.ndim == 3 and not layer.rgb:
            data = data[..., None]
        if data.ndim != 4:
            raise ValueError(
                f"layer {layer.name!r} is not an image stack (shape {layer.data.shape}); open a multi-image stack"
            )
        stack = AlignedStack(pixels=data, image_ids=[f"{layer.name}_{i:04d}" for i in range(len(data))], frame="left")
    if labels_csv:
        table = read_labels_csv(labels_csv, image_ids=stack.image_ids, **csv_options)
        lat = table.laterality if table.laterality is not None else stack.laterality
        stack = replace(stack, labels=table, laterality=lat)
    return stack


def stack_layers(viewer) -> list:
    """Image layers that hold an image stack (not this plugin's maps)."""
    from napari.layers import Image

    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image)
        and layer.ndim >= 3  # the layer's dimensions: an RGB image (the mean anatomy) is 2-D, not a stack
        and IMAGE_MAPS_KEY not in layer.metadata
        and GLOBAL_MAP_KEY not in layer.metadata
        and MAP_KIND_KEY not in layer.metadata
    ]
