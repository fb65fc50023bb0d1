"""Shared helpers that turn core objects into napari layer data tuples (no Qt, no torch)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "left_frame_dask",
    "stack_layer_data",
    "explain_layer_data",
    "map_layer_name",
    "MAP_LAYER_KINDS",
    "STACK_METADATA_KEY",
    "IMAGE_MAPS_KEY",
]

#: Key under which an image layer's metadata carries the AlignedStack it shows.
STACK_METADATA_KEY = "napari_global_xai"
#: Key under which a layer of image-wise maps ``(L, n, H, W)`` carries its labels, method and computed flags.
IMAGE_MAPS_KEY = "napari_global_xai_image_maps"
#: Kinds of map layers named by :func:`map_layer_name`.
MAP_LAYER_KINDS = ("global", "std", "image-wise")


def left_frame_dask(stack):
    """Lazy (dask) view of the stack's pixels in the left-eye frame: right eyes mirrored, one image per chunk."""
    import dask.array as da

    pixels = stack.pixels
    arr = pixels if isinstance(pixels, da.Array) else da.from_array(pixels, chunks=(1, *pixels.shape[1:]))
    arr = arr.rechunk((1, *arr.shape[1:]))
    right = np.asarray(stack.laterality) == "R"

    def flip(block, block_info=None):
        i = block_info[0]["chunk-location"][0]
        return block[:, :, ::-1] if right[i] else block

    return arr.map_blocks(flip, dtype=arr.dtype)


def stack_layer_data(stack, name: str):
    """``(data, kwargs, "image")`` for an aligned stack, shown in the left-eye frame with its labels in metadata."""
    left = stack.to_left_eye()
    data = left_frame_dask(stack)
    labels = stack.labels
    meta = {
        STACK_METADATA_KEY: {
            "stack": left,
            "image_ids": list(stack.image_ids),
            "laterality": [str(v) for v in stack.laterality],
            "frame": "left",
            "labels": None
            if labels is None
            else {
                "names": list(labels.names),
                "values": np.asarray(labels.values).tolist(),
                "split": None if labels.split is None else [str(v) for v in labels.split],
            },
            "sources": list(stack.sources[:1000]),
        }
    }
    rgb = stack.shape[-1] in (3, 4)
    kwargs = {"name": name, "metadata": meta, "rgb": rgb}
    if not rgb and stack.shape[-1] == 1:
        data = data[..., 0]
    elif not rgb:
        kwargs["channel_axis"] = 3
        kwargs["name"] = [f"{name} [c{i}]" for i in range(stack.shape[-1])]
    return data, kwargs, "image"


def map_layer_name(kind: str, method: str, label: str | None = None, note: str = "") -> str:
    """The one name of a map layer, wherever the maps come from (the Explain dock, a results folder opened in napari).

    Parameters
    ----------
    kind : {"global", "std", "image-wise"}
        A global map (of ``label``: a target label or ``"overall"``), the std maps (one layer, a label axis) or the
        image-wise maps (one ``(L, n, H, W)`` layer).
    method : str
    label : str, optional
        Required for ``kind="global"``.
    note : str
        Shown in parentheses (e.g. ``"CANCELLED"``, ``"stored orientation"``).

    Returns
    -------
    str
        ``"overall · gradcam"``, ``"std · gradcam"``, ``"image-wise · gradcam (stored orientation)"``.
    """
    if kind not in MAP_LAYER_KINDS:
        raise ValueError(f"unknown map layer kind {kind!r}; choose from {', '.join(MAP_LAYER_KINDS)}")
    if kind == "global" and not label:
        raise ValueError("a global map layer's name needs its label")
    name = f"{label if kind == 'global' else kind} · {method}"
    return f"{name} ({note})" if note else name


def explain_layer_data(run) -> list:
    """Layers of an explain results folder, lazy where the folder is (dask over the store, memmap of a TIFF).

    Parameters
    ----------
    run : napari_global_xai.explain.result.ExplainFolder
        What :func:`~napari_global_xai.explain.result.open_explain` read.

    Returns
    -------
    list of ``(data, kwargs, "image")``
        One layer per global map (labels, then overall: only overall visible), the std maps as one layer with a
        label axis, and the image-wise maps as one ``(L, n, H, W)`` layer (label × image sliders) carrying the same
        metadata as the Explain dock's, so the Compare and Regions docks can take it; names by
        :func:`map_layer_name`, with the run's status when it did not complete.
    """
    method = run.method
    note = "" if run.status == "complete" else run.status
    layers = []
    if run.global_planes is not None:
        for i, name in enumerate([*run.targets, "overall"]):
            kwargs = {
                "name": map_layer_name("global", method, name, note),
                "colormap": "inferno",
                "blending": "additive",
                "visible": name == "overall",
                "metadata": {"description": f"global map of {name!r} by {method}"},
            }
            layers.append((run.global_planes[i], kwargs, "image"))
    if run.std_planes is not None:
        kwargs = {
            "name": map_layer_name("std", method, note=note),
            "colormap": "magma",
            "visible": False,
            "metadata": {"labels": list(run.targets)},
        }
        layers.append((run.std_planes, kwargs, "image"))
    if run.out_format == "global maps":
        return layers
    meta = {
        "labels": list(run.targets),
        "method": method,
        "subset": run.subset,
        "computed": run.computed,
        "frame": run.frame,
        "image_ids": list(run.image_ids),
    }
    kwargs = {
        "name": map_layer_name("image-wise", method, note=note),
        "colormap": "inferno",
        "blending": "additive",
        "visible": False,
        "metadata": {IMAGE_MAPS_KEY: meta},
    }
    layers.append((run.image_maps.transpose(1, 0, 2, 3), kwargs, "image"))
    return layers
