"""Checks of how an explain run stores its image-wise maps (the choices live in :mod:`napari_global_xai.config`),
and the names inside a store (the store's own name in its results folder is
:data:`napari_global_xai.explain.result.FILES`)."""

from __future__ import annotations

__all__ = [
    "FORMATS",
    "DEFAULT_FORMAT",
    "MAP_DTYPES",
    "DEFAULT_MAP_DTYPE",
    "ATTRS_KEY",
    "MAPS_GROUP",
    "GLOBAL_GROUP",
    "STD_GROUP",
    "ANATOMY_GROUP",
    "FLAGS_GROUP",
    "STORE_LAYOUT",
    "check_store_options",
]

from ..config import DEFAULT_FORMAT, DEFAULT_MAP_DTYPE, FORMATS, MAP_DTYPES

#: Key of the package's attributes in the store's root ``zarr.json``.
ATTRS_KEY = "napari_global_xai"
#: OME-Zarr image groups of a store: image-wise maps, global maps (labels then overall), std, the mean anatomy (see
#: :mod:`.writer`).
MAPS_GROUP, GLOBAL_GROUP, STD_GROUP, ANATOMY_GROUP = "maps", "global", "std", "anatomy"
#: Group of a store's per-image flags (computed, include, probabilities, completeness), written with each chunk's
#: maps.
FLAGS_GROUP = "flags"
#: Version of what a store holds; part of the settings fingerprint, so a store of another layout is refused (with
#: ``--overwrite`` to replace it), never resumed into. 2: per-map completeness errors in the records and flags;
#: 3: the records' accumulator arrays Blosc-compressed (:mod:`.records`).
STORE_LAYOUT = 3


def check_store_options(out_format: str | None, map_dtype: str | None) -> tuple[str, str]:
    """``(format, dtype)`` with defaults filled in.

    Raises
    ------
    UsageError
        An unknown format or dtype (one line naming the choices).
    """
    from ..errors import UsageError

    out_format = DEFAULT_FORMAT if out_format is None else out_format
    map_dtype = DEFAULT_MAP_DTYPE if map_dtype is None else map_dtype
    if out_format not in FORMATS:
        raise UsageError(f"unknown output format {out_format!r}; choose from {', '.join(FORMATS)}")
    if map_dtype not in MAP_DTYPES:
        raise UsageError(f"unknown map dtype {map_dtype!r}; choose from {', '.join(MAP_DTYPES)}")
    return out_format, map_dtype
