"""Resumable, chunked Zarr results store of an explain run (see :mod:`.writer` for what lies where).

:func:`open_results_store` creates or resumes the store; :func:`read_results_store` opens one lazily.
"""

from __future__ import annotations

from .options import DEFAULT_FORMAT, DEFAULT_MAP_DTYPE, FORMATS, MAP_DTYPES, STORE_NAME, check_store_options
from .reader import StoreContents, find_store, read_results_store

__all__ = [
    "FORMATS",
    "DEFAULT_FORMAT",
    "MAP_DTYPES",
    "DEFAULT_MAP_DTYPE",
    "STORE_NAME",
    "check_store_options",
    "open_results_store",
    "read_results_store",
    "find_store",
    "StoreContents",
]


def open_results_store(out_dir, shape, task, stack, *, map_dtype=DEFAULT_MAP_DTYPE, overwrite=False):
    """Create (or resume) the store in ``out_dir``; see :class:`.writer.StoreWriter`."""
    from .writer import StoreWriter

    return StoreWriter.open(out_dir, shape, task, stack, map_dtype=map_dtype, overwrite=overwrite)
