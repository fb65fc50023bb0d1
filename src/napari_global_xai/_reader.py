"""napari reader: multi-page TIFF, folders of PNG/JPEG/TIFF/DICOM images, DICOM files → one aligned stack layer;
an explain results store (``image_maps.zarr``, or the explain output folder holding it) → lazy map layers.

The layer shows the stack in the left-eye frame (right eyes mirrored, as the published UWF work does) lazily; its
metadata carries the :class:`~napari_global_xai.data.AlignedStack` and the labels table found beside it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["napari_get_reader", "read_aligned_stack", "read_results_store_layers"]


def napari_get_reader(path):
    """Return :func:`read_aligned_stack` if ``path`` looks like an aligned stack, else None.

    The data layer's lists decide (:data:`~napari_global_xai.data.image_files.IMAGE_EXTENSIONS` in a folder,
    :data:`~napari_global_xai.data.image_files.STACK_FILE_EXTENSIONS` for a single file), as for the CLI.
    """
    from .data.image_files import STACK_FILE_EXTENSIONS, _file_kind

    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir() and _results_store(p) is not None:
        return read_results_store_layers
    if p.is_dir():
        has_images = any(_file_kind(f) for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        return read_aligned_stack if has_images else None
    if p.suffix.lower() in STACK_FILE_EXTENSIONS:
        return read_aligned_stack
    return None


def read_aligned_stack(path):
    """Read ``path`` into layer data: ``[(data, kwargs, "image")]``.

    Images of mixed sizes are resampled to the most common size (a notice says so; the docks resize to the model's
    input size later). A labels CSV beside the stack that cannot be read (e.g. no id column) does not stop the
    stack from opening: a notice says why, and the dock's labels CSV field with its column dialog takes it.
    """
    import warnings

    from ._layers import stack_layer_data
    from .data import LabelsError, read_stack
    from .data.labels import InputNotice

    if isinstance(path, list):
        path = path[0]
    try:
        stack = read_stack(path, resize="common")
    except LabelsError as exc:
        warnings.warn(
            f"opened without labels: {exc}; choose the CSV in the Explain dock to map its columns",
            InputNotice,
            stacklevel=2,
        )
        stack = read_stack(path, labels=False, resize="common")
    return [stack_layer_data(stack, Path(path).stem)]


def _results_store(path: Path):
    from .store.reader import find_store

    return find_store(path)


def read_results_store_layers(path):
    """An explain results store → lazy (dask over Zarr) layers: global maps, std and the image-wise maps."""
    from ._layers import store_layer_data
    from .store import read_results_store

    if isinstance(path, list):
        path = path[0]
    return store_layer_data(read_results_store(path))
