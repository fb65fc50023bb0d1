"""Read a results store lazily: its attributes, dask arrays over its Zarr arrays, the flags of its records.

These are the store's parts of the one reader of an explain results folder,
:func:`napari_global_xai.explain.result.open_explain`; nothing is loaded until indexed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .options import ATTRS_KEY, MAPS_GROUP

__all__ = ["stored_attrs", "lazy_maps", "lazy_image_maps", "lazy_planes", "record_flags"]


def stored_attrs(root: str | Path) -> dict | None:
    """The package's attributes of a store, or None when ``root`` is not a readable store of this package."""
    root = Path(root)
    if not (root.is_dir() and (root / "zarr.json").is_file()):
        return None
    import zarr

    try:
        group = zarr.open_group(str(root), mode="r")
        attrs = dict(group.attrs).get(ATTRS_KEY)
    except Exception:  # noqa: BLE001 - zarr raises many types for folders that are not stores
        return None
    return dict(attrs) if isinstance(attrs, dict) and "settings" in attrs else None


def lazy_maps(array, scale: float):
    """``(n, L, H, W)`` float32 dask array of the stored image-wise maps, divided by their storage scale."""
    import dask.array as da

    lazy = da.from_zarr(array)
    return (lazy.astype(np.float32) / np.float32(scale)).astype(np.float32)


def lazy_image_maps(root: str | Path, attrs: dict):
    """The store's image-wise maps, ``(n, L, H, W)`` float32 dask (0 where not computed)."""
    import zarr

    group = zarr.open_group(str(root), mode="r")
    return lazy_maps(group[f"{MAPS_GROUP}/0"], float(attrs["map_scale"]))


def lazy_planes(root: str | Path, name: str):
    """The float32 dask array of OME-Zarr image group ``name`` (global maps or std), or None when not written."""
    import dask.array as da
    import zarr

    group = zarr.open_group(str(root), mode="r")
    return da.from_zarr(group[f"{name}/0"]) if f"{name}/0" in group else None


def record_flags(root: str | Path, attrs: dict) -> dict[str, np.ndarray]:
    """``computed`` and ``include`` ``(n, L)`` bool and ``probabilities`` ``(n, M)`` from the completion records
    (False / 0 for the chunks without a record)."""
    from ..chunks import chunk_bounds
    from .fingerprint import settings_hash
    from .records import read_records

    targets = list(attrs["targets"])
    n, n_labels = len(attrs["image_ids"]), len(targets)
    out = {
        "computed": np.zeros((n, n_labels), bool),
        "include": np.zeros((n, n_labels), bool),
        "probabilities": np.zeros((n, len(attrs["model_labels"])), np.float32),
    }
    n_chunks = len(chunk_bounds(n, int(attrs["chunk_size"])))
    for record in read_records(root, targets, settings_hash(attrs["settings"]), n_chunks, complete_only=False).values():
        out["computed"][record.indices] = record.done
        out["include"][record.indices] = record.include
        out["probabilities"][record.indices] = record.probabilities
    return out
