"""The choices of how an explain run stores its image-wise maps, defined once (the CLI and the docks read them)."""

from __future__ import annotations

__all__ = ["FORMATS", "DEFAULT_FORMAT", "MAP_DTYPES", "DEFAULT_MAP_DTYPE", "STORE_NAME", "check_store_options"]

#: Output formats of the image-wise maps: the resumable, compressed Zarr store, or one float32 TIFF (small stacks).
FORMATS = ("zarr", "tiff")
DEFAULT_FORMAT = "zarr"
#: Precision of the image-wise maps in the Zarr store (global maps are always computed from float32 maps).
MAP_DTYPES = ("float16", "float32")
DEFAULT_MAP_DTYPE = "float16"
#: Folder of the Zarr store inside an explain output folder.
STORE_NAME = "image_maps.zarr"


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
