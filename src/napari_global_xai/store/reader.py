"""Read a results store lazily: its attributes, dask arrays over its Zarr arrays, the flags of its records.

These are the store's parts of the one reader of an explain results folder,
:func:`napari_global_xai.explain.result.open_explain`; nothing is loaded until indexed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .options import ANATOMY_GROUP, ATTRS_KEY, FLAGS_GROUP, MAPS_GROUP

#: The per-image flags of a store (its ``flags`` group).
FLAG_NAMES = ("computed", "include", "probabilities", "completeness")

__all__ = [
    "stored_attrs",
    "check_layout",
    "lazy_maps",
    "lazy_image_maps",
    "MapBlocks",
    "lazy_planes",
    "lazy_anatomy",
    "display_window",
    "sample_images",
    "record_flags",
]


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


def check_layout(root: str | Path, attrs: dict) -> None:
    """Raise ``InputError`` (one line, with the way out) when the store at ``root`` is of another layout version
    than this version reads (:data:`~.options.STORE_LAYOUT`)."""
    from ..errors import InputError
    from .options import STORE_LAYOUT

    layout = attrs.get("layout_version")
    if layout != STORE_LAYOUT:
        raise InputError(
            f"{root} is a results store of layout {layout}, this version reads layout {STORE_LAYOUT} "
            "(written by another version of napari-global-xai); run 'global-xai explain ... --overwrite' to rewrite it"
        )


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


class MapBlocks:
    """The store's image-wise maps for reading whole blocks of images, as stored (float16 or float32, multiplied by
    ``scale``): :meth:`read` fetches a block's consecutive images as one Zarr slice each (Zarr decodes their chunks
    together), never through Zarr's orthogonal indexing, which took twice as long.

    For reductions over many images (the cohort explorer); the viewer keeps the dask form of :func:`lazy_maps`, whose
    one-image chunks suit a slider.
    """

    def __init__(self, root: str | Path, attrs: dict):
        import zarr

        self.array = zarr.open_group(str(root), mode="r")[f"{MAPS_GROUP}/0"]
        self.scale = float(attrs["map_scale"])
        self.shape = tuple(self.array.shape)

    def read(self, rows: np.ndarray, label_index: list[int]) -> np.ndarray:
        """``(len(rows), len(label_index), H, W)`` stored values of the images ``rows`` (sorted) and those labels."""
        first = label_index[0]
        consecutive = list(label_index) == list(range(first, first + len(label_index)))
        labels = slice(first, first + len(label_index)) if consecutive else list(label_index)
        runs = np.split(np.asarray(rows), np.nonzero(np.diff(rows) != 1)[0] + 1)
        parts = [
            self.array[int(r[0]) : int(r[-1]) + 1, labels]
            if consecutive
            else self.array.oindex[slice(int(r[0]), int(r[-1]) + 1), labels]
            for r in runs
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def lazy_planes(root: str | Path, name: str):
    """The float32 dask array of OME-Zarr image group ``name`` (global maps or std), or None when not written."""
    import dask.array as da
    import zarr

    group = zarr.open_group(str(root), mode="r")
    return da.from_zarr(group[f"{name}/0"]) if f"{name}/0" in group else None


def lazy_anatomy(root: str | Path):
    """The mean anatomy ``(H, W, C)`` float32 (dask over the store, in the maps' frame), or None when not written."""
    planes = lazy_planes(root, ANATOMY_GROUP)
    return None if planes is None else planes.transpose(1, 2, 0)


def display_window(data, percentile: float = 99.5) -> tuple[float, float]:
    """``(0, the percentile of the finite values)`` of ``data``, or ``(0, 1)`` when that is not above 0: the one
    display range of a set of maps (written with a store's maps, computed for a TIFF folder's)."""
    values = np.asarray(data, np.float32)
    finite = values[np.isfinite(values)]
    top = float(np.percentile(finite, percentile)) if finite.size else 0.0
    return 0.0, top if top > 0 else 1.0


def sample_images(maps, count: int = 16) -> np.ndarray:
    """Up to ``count`` evenly spaced images of ``(n, ...)`` maps (zarr, dask, numpy), every 4th pixel: what a
    display range is computed from, without reading every image."""
    idx = np.unique(np.linspace(0, maps.shape[0] - 1, num=min(count, maps.shape[0])).round().astype(int))
    return np.stack([np.asarray(maps[int(i)])[..., ::4, ::4] for i in idx])


def record_flags(root: str | Path, attrs: dict) -> dict[str, np.ndarray]:
    """``computed`` and ``include`` ``(n, L)`` bool, ``probabilities`` ``(n, M)`` and ``completeness`` ``(n, L)``
    float64 (NaN where a map has none): from the store's ``flags`` arrays when its run finished (complete or
    cancelled: four small reads whatever the number of chunks), else from the completion records (False / 0 / NaN for
    the chunks without a record; a run being written, or killed)."""
    import zarr

    group = zarr.open_group(str(root), mode="r")
    if attrs.get("status") != "running" and FLAGS_GROUP in group:
        return {name: np.asarray(group[f"{FLAGS_GROUP}/{name}"][...]) for name in FLAG_NAMES}
    from ..chunks import chunk_bounds
    from .fingerprint import settings_hash
    from .records import read_records

    targets = list(attrs["targets"])
    n, n_labels = len(attrs["image_ids"]), len(targets)
    out = {
        "computed": np.zeros((n, n_labels), bool),
        "include": np.zeros((n, n_labels), bool),
        "probabilities": np.zeros((n, len(attrs["model_labels"])), np.float32),
        "completeness": np.full((n, n_labels), np.nan),
    }
    n_chunks = len(chunk_bounds(n, int(attrs["chunk_size"])))
    for record in read_records(root, targets, settings_hash(attrs["settings"]), n_chunks, complete_only=False).values():
        out["computed"][record.indices] = record.done
        out["include"][record.indices] = record.include
        out["probabilities"][record.indices] = record.probabilities
        out["completeness"][record.indices] = record.completeness
    return out
