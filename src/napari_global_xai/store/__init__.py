"""Resumable, chunked Zarr results store of an explain run (see :mod:`.writer` for what lies inside).

:func:`open_results_store` creates or resumes the store; :mod:`.reader` reads its parts lazily for
:func:`napari_global_xai.explain.result.open_explain`, the one reader of an explain results folder.
"""

from __future__ import annotations

from .options import DEFAULT_FORMAT, DEFAULT_MAP_DTYPE, FORMATS, MAP_DTYPES, check_store_options

__all__ = [
    "FORMATS",
    "DEFAULT_FORMAT",
    "MAP_DTYPES",
    "DEFAULT_MAP_DTYPE",
    "check_store_options",
    "open_results_store",
]


def open_results_store(root, shape, task, stack, *, map_dtype=DEFAULT_MAP_DTYPE, overwrite=False):
    """Create (or resume) the store at ``root``; see :class:`.writer.StoreWriter`."""
    from .writer import StoreWriter

    return StoreWriter.open(root, shape, task, stack, map_dtype=map_dtype, overwrite=overwrite)
