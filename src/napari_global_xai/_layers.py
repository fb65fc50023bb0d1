"""Shared helpers that turn core objects into napari layer data tuples (no Qt, no torch)."""

from __future__ import annotations

import numpy as np

__all__ = ["left_frame_dask", "stack_layer_data", "store_layer_data", "STACK_METADATA_KEY", "IMAGE_MAPS_KEY"]

#: Key under which an image layer's metadata carries the AlignedStack it shows.
STACK_METADATA_KEY = "napari_global_xai"
#: Key under which a layer of image-wise maps ``(L, n, H, W)`` carries its labels, method and computed flags.
IMAGE_MAPS_KEY = "napari_global_xai_image_maps"


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


def store_layer_data(contents) -> list:
    """Layers of an explain results store, all lazy (dask over Zarr): global maps, std, image-wise maps.

    Parameters
    ----------
    contents : napari_global_xai.store.StoreContents

    Returns
    -------
    list of ``(data, kwargs, "image")``
        One layer per global map (labels, then overall: only overall visible), the std maps as one layer with a
        label axis, and the image-wise maps as one ``(L, n, H, W)`` layer (label × image sliders) carrying the same
        metadata as the Explain dock's, so the Compare and Regions docks can take it.
    """
    method, status = contents.method, contents.status
    suffix = "" if status == "complete" else f" ({status})"
    layers = []
    if contents.global_maps is not None:
        names = list(contents.targets) + ["overall"]
        for i, name in enumerate(names):
            layers.append(
                (
                    contents.global_maps[i],
                    {
                        "name": f"global · {method} · {name}{suffix}",
                        "colormap": "inferno",
                        "blending": "additive",
                        "visible": name == "overall",
                        "metadata": {"description": f"global map of {name!r} by {method}"},
                    },
                    "image",
                )
            )
    if contents.std is not None:
        layers.append(
            (
                contents.std,
                {
                    "name": f"global std · {method}{suffix}",
                    "colormap": "magma",
                    "visible": False,
                    "metadata": {"labels": list(contents.targets)},
                },
                "image",
            )
        )
    flags = contents.flags()
    meta = {
        "labels": list(contents.targets),
        "method": method,
        "subset": contents.attrs.get("subset", ""),
        "computed": flags["computed"],
        "frame": contents.frame,
        "image_ids": list(contents.image_ids),
    }
    maps = contents.image_maps.transpose(1, 0, 2, 3)
    layers.append(
        (
            maps,
            {
                "name": f"image-wise · {method}{suffix}",
                "colormap": "inferno",
                "blending": "additive",
                "visible": False,
                "metadata": {IMAGE_MAPS_KEY: meta},
            },
            "image",
        )
    )
    return layers
