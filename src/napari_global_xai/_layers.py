"""Shared helpers that turn core objects into napari layer data tuples (no Qt, no torch)."""

from __future__ import annotations

import numpy as np

__all__ = ["left_frame_dask", "stack_layer_data", "STACK_METADATA_KEY"]

#: Key under which an image layer's metadata carries the AlignedStack it shows.
STACK_METADATA_KEY = "napari_global_xai"


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
            "labels": None if labels is None else {
                "names": list(labels.names), "values": np.asarray(labels.values).tolist(),
                "split": None if labels.split is None else [str(v) for v in labels.split]},
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
