"""napari reader: multi-page TIFF, folders of PNG/JPEG/TIFF/DICOM images, DICOM files → one aligned stack layer.

The layer shows the stack in the left-eye frame (right eyes mirrored, as the published UWF work does) lazily; its
metadata carries the :class:`~napari_global_xai.data.AlignedStack` and the labels table found beside it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["napari_get_reader", "read_aligned_stack"]

_FILE_SUFFIXES = {".tif", ".tiff", ".dcm", ".dicom"}
_FOLDER_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm"}


def napari_get_reader(path):
    """Return :func:`read_aligned_stack` if ``path`` looks like an aligned stack, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir():
        has_images = any(f.suffix.lower() in _FOLDER_SUFFIXES for f in p.iterdir() if f.is_file())
        return read_aligned_stack if has_images else None
    if p.suffix.lower() in _FILE_SUFFIXES:
        return read_aligned_stack
    return None


def read_aligned_stack(path):
    """Read ``path`` into layer data: ``[(data, kwargs, "image")]``."""
    from ._layers import stack_layer_data
    from .data import read_stack

    if isinstance(path, list):
        path = path[0]
    stack = read_stack(path)
    return [stack_layer_data(stack, Path(path).stem)]
