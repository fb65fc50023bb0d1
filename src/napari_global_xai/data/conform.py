"""Bring images as archives store them to what a model reads: channels, bit depth and size, one image at a time.

Used per file by :func:`~napari_global_xai.data.read_stack` (mixed folders) and per stack by
:func:`fit_stack_to_model` (a stack opened before the model was known, e.g. in napari). Everything stays lazy: one
image is converted when it is read.

Rules
-----
* **Channels**: RGBA loses its alpha channel; grey images become RGB (the grey value in all three channels) when the
  stack is colour or the model reads more than one channel.
* **Bit depth**: integer images are rescaled by full range (16-bit ``v`` -> 8-bit ``round(v / 257)``; 8-bit -> 16-bit
  ``v * 257``). The target is the model's: 8-bit for ``pixel_scale`` 255, 16-bit for 65535; a folder mixing bit
  depths without a model uses the widest.
* **Size**: bilinear resampling to the model's ``input_size`` (the aspect ratio is not kept when it differs).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .errors import StackError

__all__ = ["conform_image", "model_input_spec", "fit_stack_to_model", "describe_sizes", "model_frame"]

_FULL_RANGE_DTYPES = {255.0: np.dtype("u1"), 65535.0: np.dtype("u2")}


def cast(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``image`` as ``dtype``, rounding and clipping to the range of integer types."""
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(dtype)
        image = np.clip(np.rint(image), info.min, info.max)
    return image.astype(dtype, copy=False)


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resample of an ``(H, W, C)`` image to ``size``, keeping its dtype."""
    if image.shape[:2] == tuple(size):
        return image
    from scipy import ndimage

    work = image.astype(np.float64 if image.dtype == np.float64 else np.float32)
    zoom = (size[0] / image.shape[0], size[1] / image.shape[1], 1.0)
    out = ndimage.zoom(work, zoom, order=1, mode="nearest", grid_mode=True)
    return cast(out, image.dtype)


def rescaled(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Integer ``image`` rescaled by full range to integer ``dtype`` (else a plain cast)."""
    dtype = np.dtype(dtype)
    if image.dtype == dtype:
        return image
    if np.issubdtype(image.dtype, np.integer) and np.issubdtype(dtype, np.integer):
        scale = np.iinfo(dtype).max / np.iinfo(image.dtype).max
        return cast(np.clip(image.astype(np.float64) * scale, 0, None), dtype)
    return cast(image, dtype)


def with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W, C)`` image with RGBA's alpha dropped and grey replicated to ``channels`` (1 or 3).

    Raises
    ------
    StackError
        When a colour image would have to become grey.
    """
    if image.shape[2] == 4:
        image = image[..., :3]
    if image.shape[2] == channels:
        return image
    if image.shape[2] == 1:
        return np.repeat(image, channels, axis=2)
    raise StackError(f"cannot make a {image.shape[2]}-channel image {channels}-channel")


def conform_image(image: np.ndarray, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """One ``(H, W, C)`` image in the target ``shape`` ``(H, W, C)`` and ``dtype`` (rules in the module docstring)."""
    image = with_channels(image, int(shape[2]))
    return rescaled(resized(image, (int(shape[0]), int(shape[1]))), dtype)


def describe_sizes(sizes: Sequence[tuple[int, int]]) -> str:
    """``"40×48 (3), 36×36 (1)"``: image sizes and how many images have each, most common first."""
    from collections import Counter

    return ", ".join(f"{h}×{w} ({n})" for (h, w), n in Counter(map(tuple, sizes)).most_common())


def model_input_spec(card: Any) -> dict[str, Any]:
    """What a model card asks of the stack: ``{"resize": (H, W) or None, "channels": 3 or None, "dtype": ...}``.

    Parameters
    ----------
    card : ModelCard or any object with ``input_size``, ``input_channels`` and ``pixel_scale``

    Returns
    -------
    dict
        Keyword arguments for :func:`~napari_global_xai.data.read_stack` and :func:`fit_stack_to_model`:
        ``resize`` from ``input_size``; ``channels=3`` when the model reads more than one channel (so grey images
        are replicated); ``dtype`` uint8 / uint16 for ``pixel_scale`` 255 / 65535, else None (kept).
    """
    size = getattr(card, "input_size", None)
    channels = list(getattr(card, "input_channels", None) or [0])
    return {
        "resize": None if size is None else (int(size[0]), int(size[1])),
        "channels": 3 if max(channels) >= 1 else None,
        "dtype": _FULL_RANGE_DTYPES.get(float(getattr(card, "pixel_scale", 0.0))),
    }


def fit_stack_to_model(stack, card):
    """The stack as the model reads it: resized, channels and bit depth converted lazily, with a notice per change.

    Parameters
    ----------
    stack : AlignedStack
    card : ModelCard

    Returns
    -------
    AlignedStack
        ``stack`` itself when nothing needs changing; else a stack whose pixels convert each image on read.

    Warns
    -----
    InputNotice
        One line per change (resize, grey to RGB, bit depth).
    """
    from .labels import InputNotice
    from .stack import is_dask_array

    spec = model_input_spec(card)
    n, height, width, channels = stack.shape
    target_size = spec["resize"] or (height, width)
    target_channels = 3 if (spec["channels"] == 3 and channels == 1) else (3 if channels == 4 else channels)
    target_dtype = stack.dtype
    if spec["dtype"] is not None and np.issubdtype(stack.dtype, np.unsignedinteger):
        target_dtype = spec["dtype"]
    notes = []
    if tuple(target_size) != (height, width):
        notes.append(
            f"{n} image(s) resized from {height}×{width} to the model's input size {target_size[0]}×{target_size[1]}"
        )
    if target_channels != channels:
        notes.append(
            f"grey images replicated to RGB (the model reads channels {list(card.input_channels)})"
            if channels == 1
            else "alpha channel dropped"
        )
    if target_dtype != stack.dtype:
        notes.append(
            f"{stack.dtype.itemsize * 8}-bit pixels rescaled to {target_dtype.itemsize * 8}-bit (the "
            f"model's pixel_scale is {card.pixel_scale:g})"
        )
    if not notes:
        return stack
    for note in notes:
        warnings.warn(note, InputNotice, stacklevel=2)
    import dask.array as da

    pixels = stack.pixels
    if not is_dask_array(pixels):
        pixels = da.from_array(pixels, chunks=(1, height, width, channels), meta=np.empty((0, 0, 0, 0), stack.dtype))
    pixels = pixels.rechunk((1, height, width, channels))
    shape = (*target_size, target_channels)
    converted = pixels.map_blocks(
        lambda block: conform_image(block[0], shape, target_dtype)[None],
        chunks=((1,) * n, (shape[0],), (shape[1],), (shape[2],)),
        dtype=target_dtype,
        meta=np.empty((0, 0, 0, 0), target_dtype),
    )
    return replace(stack, pixels=converted)


def model_frame(stack, card):
    """The stack in the frame its model reads: the one place a pipeline decides it (from the card).

    Parameters
    ----------
    stack : AlignedStack or numpy.ndarray
        Any frame (a napari layer's stack arrives in the left-eye frame, a file's as stored). Arrays pass through:
        their caller chose the frame.
    card : ModelCard
        ``harmonise_laterality`` True: the left-eye frame (right eyes mirrored); False: each image as stored.

    Returns
    -------
    AlignedStack or numpy.ndarray
        Lazy; ``stack`` itself when it is already in that frame.
    """
    if not hasattr(stack, "in_frame"):
        return stack
    return stack.in_frame("left" if getattr(card, "harmonise_laterality", True) else "stored")
