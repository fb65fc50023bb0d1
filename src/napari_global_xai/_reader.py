"""napari reader: multi-page TIFF, folders of PNG/JPEG/TIFF/DICOM images, DICOM files → one aligned stack layer;
an explain results folder (or its store, ``image_maps.zarr``) → map layers, read by
:func:`~napari_global_xai.explain.result.open_explain` (lazy: dask over the store): the mean anatomy under the
image-wise maps, std and global maps, with named sliders (``label``, ``image``) and display ranges read from the
store, so a store of 10,000 images opens as fast as one of 20 (nothing is scanned). The store's root also opens
with napari-ome-zarr (a bioformats2raw-layout collection, :mod:`napari_global_xai.store.ome`); napari's builtin
zarr reader opens only a store's first group and refuses the root ("No arrays found in zarr group").

The layer shows the stack in the left-eye frame (right eyes mirrored, as the published UWF work does) lazily; its
metadata carries the :class:`~napari_global_xai.data.AlignedStack` and the labels table found beside it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["napari_get_reader", "read_aligned_stack", "read_explain_layers"]


def napari_get_reader(path):
    """Return :func:`read_explain_layers` for an explain results folder (or its store), :func:`read_aligned_stack` if
    ``path`` looks like an aligned stack, else None.

    For a stack, the data layer's lists decide (:data:`~napari_global_xai.data.image_files.IMAGE_EXTENSIONS` in a
    folder, :data:`~napari_global_xai.data.image_files.STACK_FILE_EXTENSIONS` for a single file), as for the CLI.
    """
    from .data.image_files import STACK_FILE_EXTENSIONS, _file_kind
    from .explain.result import is_explain_folder

    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if is_explain_folder(p):
        return read_explain_layers
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


def read_explain_layers(path):
    """An explain results folder (or its store) → layers, lazy where the folder is (:func:`.explain_layer_data`)."""
    from ._layers import explain_layer_data
    from .explain.result import open_explain

    if isinstance(path, list):
        path = path[0]
    return explain_layer_data(open_explain(path))
