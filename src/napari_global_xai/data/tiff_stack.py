"""Multi-page TIFF stacks: :func:`write_stack_tiff` writes one (atomically, page by page, with image ids and
metadata in the first page's description); :func:`read_tiff_metadata` reads that description back."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io_utils import atomic_path
from .errors import StackError
from .stack import is_dask_array

__all__ = ["write_stack_tiff", "read_tiff_metadata"]

#: Channel counts an image of a stack may have (RGBA loses alpha on read).
_ALLOWED_CHANNELS = (1, 3, 4)


def _description(tif: Any) -> dict[str, Any]:
    """The JSON metadata :func:`write_stack_tiff` stores in the first page (empty dict if none)."""
    shaped = tif.shaped_metadata
    return dict(shaped[0]) if shaped else {}


def read_tiff_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``image_ids`` and ``metadata`` stored by :func:`write_stack_tiff`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict
        ``{"image_ids": list of str or None, "metadata": dict or None}``.

    Raises
    ------
    StackError
        If the file is not a readable TIFF.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            stored = _description(tif)
    except Exception as exc:
        raise StackError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    return {"image_ids": stored.get("image_ids"), "metadata": stored.get("metadata")}


def _pages(pixels: Any, page_shape: tuple[int, ...], dtype: np.dtype) -> Iterator[np.ndarray]:
    """Pages of ``pixels`` one at a time (a dask array is computed page by page, never whole)."""
    for i in range(pixels.shape[0]):
        page = pixels[i]
        if is_dask_array(page):
            page = page.compute()
        yield np.ascontiguousarray(np.asarray(page, dtype=dtype).reshape(page_shape))


def write_stack_tiff(
    path: str | os.PathLike,
    pixels: Any,
    image_ids: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    compression: str | None = "zlib",
    compression_level: int | None = None,
) -> Path:
    """Write an image stack as a multi-page TIFF, atomically (the file appears whole or not at all).

    Parameters
    ----------
    path : str or path-like
        Target file; replaced if it exists.
    pixels : array-like, shape (n, H, W) or (n, H, W, C) with C in {1, 3, 4}
        numpy, memmap or dask array; written page by page.
    image_ids : sequence of str, optional
        Stored in the first page's description; :func:`read_stack` uses them as image ids.
    metadata : dict, optional
        JSON-serialisable; stored beside the ids (see :func:`read_tiff_metadata`).
    compression : str or None
        A tifffile compression (``"zlib"``, ``"jpeg"``, ...); None writes an uncompressed, memory-mappable file.
    compression_level : int, optional
        Codec level (zlib level, or JPEG quality).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    StackError
        On an empty stack, a bad shape or channel count, or ``image_ids`` of the wrong length.
    """
    import tifffile

    shape = tuple(int(s) for s in pixels.shape)
    if len(shape) == 3:
        shape += (1,)
    if len(shape) != 4 or shape[0] == 0 or shape[3] not in _ALLOWED_CHANNELS:
        raise StackError(
            f"{path}: pixels must be (n, H, W) or (n, H, W, C) with n >= 1 and C in "
            f"{_ALLOWED_CHANNELS}, got shape {tuple(pixels.shape)}"
        )
    n, height, width, channels = shape
    stored: dict[str, Any] = {"metadata": metadata}
    if image_ids is not None:
        if len(image_ids) != n:
            raise StackError(f"{path}: {len(image_ids)} image ids for {n} images")
        stored["image_ids"] = [str(image_id) for image_id in image_ids]
    page_shape = (height, width) if channels == 1 else (height, width, channels)
    dtype = np.dtype(pixels.dtype)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data=_pages(pixels, page_shape, dtype),
            shape=(n, *page_shape),
            dtype=dtype,
            photometric="minisblack" if channels == 1 else "rgb",
            extrasamples=("unassalpha",) if channels == 4 else None,
            compression=compression,
            metadata=stored,
            compressionargs={"level": compression_level} if compression_level is not None else None,
            bigtiff=n * height * width * channels * dtype.itemsize > 2**31,
        )
    return Path(path)
