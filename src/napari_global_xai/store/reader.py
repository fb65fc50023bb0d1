"""Open a results store lazily: dask arrays over its Zarr arrays, nothing loaded until indexed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .options import STORE_NAME

__all__ = ["StoreContents", "find_store", "lazy_maps", "read_results_store"]


def lazy_maps(array, scale: float):
    """``(n, L, H, W)`` float32 dask array of the stored image-wise maps, divided by their storage scale."""
    import dask.array as da

    lazy = da.from_zarr(array)
    return (lazy.astype(np.float32) / np.float32(scale)).astype(np.float32)


def find_store(path: str | Path) -> Path | None:
    """The store at ``path`` (a folder ending ``.zarr``) or inside it (an explain output folder); else None."""
    from .writer import stored_attrs

    path = Path(path)
    for candidate in (path, path / STORE_NAME):
        if candidate.is_dir() and (candidate / "zarr.json").is_file() and stored_attrs(candidate) is not None:
            return candidate
    return None


@dataclass
class StoreContents:
    """What a results store holds, lazily.

    Attributes
    ----------
    root : pathlib.Path
    image_maps : dask.array.Array, (n, L, H, W) float32
        Image-wise maps (0 where not computed), left-eye frame when ``frame == "left"``.
    global_maps : dask.array.Array, (L + 1, H, W) float32 or None
        Label-wise global maps then the overall map (None before a run finished or was cancelled).
    std : dask.array.Array, (L, H, W) float32 or None
    targets, image_ids, model_labels : list of str
    status : str
        ``complete``, ``CANCELLED`` (partial, resumable) or ``running`` (being written, or killed: resumable).
    frame, method : str
    count : list of int
        Maps per label in the global maps (empty before the end).
    attrs : dict
        All the package's attributes (settings, provenance, ...).
    """

    root: Path
    image_maps: object
    global_maps: object
    std: object
    targets: list[str]
    image_ids: list[str]
    model_labels: list[str]
    status: str
    frame: str
    method: str
    count: list[int] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)

    def flags(self) -> dict[str, np.ndarray]:
        """``computed`` and ``include`` ``(n, L)`` bool and ``probabilities`` from the completion records."""
        from ..chunks import chunk_bounds
        from .fingerprint import settings_hash
        from .records import read_records

        n, n_labels = len(self.image_ids), len(self.targets)
        out = {
            "computed": np.zeros((n, n_labels), bool),
            "include": np.zeros((n, n_labels), bool),
            "probabilities": np.zeros((n, len(self.model_labels)), np.float32),
        }
        n_chunks = len(chunk_bounds(n, int(self.attrs["chunk_size"])))
        for record in read_records(
            self.root, self.targets, settings_hash(self.attrs["settings"]), n_chunks, complete_only=False
        ).values():
            out["computed"][record.indices] = record.done
            out["include"][record.indices] = record.include
            out["probabilities"][record.indices] = record.probabilities
        return out


def read_results_store(path: str | Path) -> StoreContents:
    """Open the store at or inside ``path``.

    Raises
    ------
    InputError
        ``path`` holds no results store (one line naming it).
    """
    import dask.array as da
    import zarr

    from ..errors import InputError
    from .writer import ATTRS_KEY

    root = find_store(path)
    if root is None:
        raise InputError(
            f"{path}: no explain results store here (expected a folder {STORE_NAME} written by "
            "'global-xai explain --format zarr')"
        )
    group = zarr.open_group(str(root), mode="r")
    attrs = dict(group.attrs[ATTRS_KEY])
    maps = lazy_maps(group["maps/0"], float(attrs["map_scale"]))
    lazy = {name: da.from_zarr(group[f"{name}/0"]) if f"{name}/0" in group else None for name in ("global", "std")}
    return StoreContents(
        root,
        maps,
        lazy["global"],
        lazy["std"],
        list(attrs["targets"]),
        list(attrs["image_ids"]),
        list(attrs["model_labels"]),
        str(attrs.get("status", "")),
        str(attrs.get("frame", "left")),
        str(attrs.get("method", "")),
        list(attrs.get("count", [])),
        attrs,
    )
