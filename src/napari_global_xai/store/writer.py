"""Write an explain run into its Zarr results store, chunk by chunk, resumably.

Layout of the store (a Zarr v3 group; ``image_maps.zarr`` in an explain results folder, named by
:data:`napari_global_xai.explain.result.FILES`; the group names are in :mod:`.options`)::

    zarr.json                 attributes["napari_global_xai"]: settings (the fingerprint), status, targets,
                              image ids, model labels, frame, chunk size, number of chunks, map dtype and scale,
                              and at the end the counts and provenance
    maps/                     OME-Zarr image (axes image, c, y, x): dataset 0 = (n, L, H, W) image-wise maps,
                              one image per Zarr chunk, zstd-compressed, float16 (default) or float32,
                              stored multiplied by ``map_scale`` (the power of two nearest H·W under mass
                              normalisation, else 1)
    global/                   OME-Zarr image (c, y, x) float32: the label-wise global maps, then the overall map
    std/                      OME-Zarr image (c, y, x) float32: per-pixel standard deviation of each label's maps
    anatomy/                  OME-Zarr image (c, y, x) float32: the mean anatomy in the maps' frame (written with
                              the results folder, :func:`write_anatomy`)
    OME/METADATA.ome.xml      the collection's image list (bioformats2raw layout, :mod:`.ome`): the root opens in
                              OME-Zarr viewers (napari-ome-zarr) as anatomy, image-wise maps, std and global maps
    flags/                    per image (rows in image order, written with each chunk's maps): ``computed`` and
                              ``include`` (n, L) bool, ``probabilities`` (n, M) float32, ``completeness`` (n, L)
                              float64 (each map's completeness error, NaN where none), so a reader of a finished
                              store never opens the records (:func:`.reader.record_flags`)
    records/chunk-000012.npz  completion record of each finished chunk (:mod:`.records`)

Each image's ``omero`` window is its display range, computed when it is written (global maps: the 99.5th
percentile of all of them, one shared scale; image-wise maps: of a sample of images), so a viewer never scans the
maps to find one; the attributes' ``display`` holds the same ranges in map units (``{group: [low, high]}``).

The store is created in a hidden folder beside it and renamed into place, so it exists whole or not at all. Zarr
writes every chunk file atomically (a temporary ``*.partial`` renamed into place) and a chunk's completion record
is written only after its maps, so a kill at any moment loses at most the chunks in flight; the next run removes
leftover temporary files and computes the chunks without a record.

Notes
-----
Scaling before float16: a mass-normalised map averages 1/(H·W) per pixel, below float16's normal range for images
larger than about 128×128 (where float16 keeps only a few significant bits); scaled by about H·W (a power of two,
exact in float32) its values sit near 1, where float16 keeps 11 significant bits. Readers divide by ``map_scale``.
The data are flushed by the operating system (they survive a killed process); the records are also fsync'ed, the
Zarr chunks are not (after a power cut, delete the records of the chunks written last to have them recomputed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np

from ..io_utils import json_ready
from .fingerprint import differences, run_settings, settings_hash
from .ome import IMAGE_AXES, MAP_AXES, create_image_group, write_collection_index
from .options import ANATOMY_GROUP, ATTRS_KEY, FLAGS_GROUP, GLOBAL_GROUP, MAPS_GROUP, STD_GROUP, STORE_LAYOUT
from .reader import display_window, lazy_maps, sample_images, stored_attrs
from .records import RECORDS_DIR, compact_accumulator, read_records, remove_leftovers, write_record

__all__ = ["StoreWriter", "map_scale", "write_anatomy"]

#: Order of a store's images in OME-Zarr viewers (first at the bottom).
COLLECTION = (ANATOMY_GROUP, MAPS_GROUP, STD_GROUP, GLOBAL_GROUP)

#: Status of a store being written (or killed while written); at the end "complete" or "CANCELLED".
RUNNING = "running"


def map_scale(normalisation: str, shape_hw) -> float:
    """Factor the image-wise maps are stored multiplied by: the power of two nearest H·W under mass normalisation
    (a power of two, so float32 maps come back bit-exact), else 1 (see the module notes)."""
    import math

    return float(2.0 ** round(math.log2(shape_hw[0] * shape_hw[1]))) if normalisation == "mass" else 1.0


class StoreWriter:
    """Writes ChunkResults into the store; created by :meth:`open`. Used by ``run_explain`` as its map writer."""

    def __init__(self, root: Path, settings: dict, task, resumed: bool):
        import zarr

        self.root = root
        self.settings = settings
        self.hash = settings_hash(settings)
        self.task = task
        self.resumed = resumed
        self.group = zarr.open_group(str(root), mode="r+")
        self.maps = self.group[f"{MAPS_GROUP}/0"]
        self.attrs = dict(self.group.attrs[ATTRS_KEY])
        self.scale = float(self.attrs["map_scale"])
        self.n_reused = 0
        self.n_computed = 0

    @classmethod
    def open(cls, root, shape, task, stack, *, map_dtype: str, overwrite: bool = False) -> StoreWriter:
        """Create the store at ``root``, or resume the one of the same settings, or refuse (or replace) one of other
        settings.

        Raises
        ------
        OutputFolderError
            The folder holds a store of other settings (the message names each difference) or a folder of that
            name that is no store of this package, and ``overwrite`` is False.
        """
        from ..errors import OutputFolderError

        root = Path(root)
        settings = run_settings(task, stack, map_dtype)
        for stale in root.parent.glob(f".{root.name}.*.tmp"):  # a build killed before its rename
            shutil.rmtree(stale, ignore_errors=True)
        resumed = False
        if root.exists():
            attrs = stored_attrs(root)
            diffs = (
                ["not a results store of global-xai explain"]
                if attrs is None
                else differences(attrs["settings"], settings)
            )
            if diffs and not overwrite:
                what = (
                    "is not a results store of 'global-xai explain'"
                    if attrs is None
                    else (f"holds results of other settings ({'; '.join(diffs)})")
                )
                raise OutputFolderError(
                    f"{root} {what}; give another output folder, or --overwrite (overwrite=True) to replace it"
                )
            if overwrite:
                shutil.rmtree(root) if root.is_dir() else root.unlink()
            else:
                resumed = True
        if not root.exists():
            _create(root, shape, settings, task, stack, map_dtype)
        remove_leftovers(root)
        writer = cls(root, settings, task, resumed)
        writer._set_status(RUNNING)
        return writer

    def completed(self) -> dict:
        """Chunks finished by an earlier run of the same settings: ``{chunk: ChunkResult without maps}``."""
        records = read_records(self.root, self.task.targets, self.hash, self.task.n_chunks)
        self.n_reused = len(records)
        if self.resumed:
            from ..data.labels import InputNotice

            warnings.warn(
                f"resuming {self.root}: {len(records)} of {self.task.n_chunks} chunks finished earlier "
                f"are reused, {self.task.n_chunks - len(records)} to compute",
                InputNotice,
                stacklevel=3,
            )
        return records

    def facts(self) -> dict:
        """Provenance facts of the store."""
        return {
            "format": "zarr",
            "store": str(self.root),
            "map_dtype": self.settings["map_dtype"],
            "map_scale": self.scale,
            "n_chunks": self.task.n_chunks,
            "n_chunks_reused": self.n_reused,
            "n_chunks_computed": self.n_computed,
        }

    def write(self, result) -> None:
        """The chunk's maps (durable first), then its completion record."""
        start, stop = int(result.indices[0]), int(result.indices[-1]) + 1
        scaled = np.asarray(result.maps, np.float32) * np.float32(self.scale)
        self.maps[start:stop] = scaled.astype(self.maps.dtype)
        for name, values in (("computed", result.done), ("include", result.include)):
            self.group[f"{FLAGS_GROUP}/{name}"][start:stop] = np.asarray(values, bool)
        self.group[f"{FLAGS_GROUP}/probabilities"][start:stop] = np.asarray(result.probabilities, np.float32)
        if result.completeness is not None:
            self.group[f"{FLAGS_GROUP}/completeness"][start:stop] = np.asarray(result.completeness, np.float64)
        result.accumulator = compact_accumulator(result.accumulator)  # merge what a resume would read
        write_record(self.root, result, self.hash)
        self.n_computed += 1

    def finish(self, global_maps, provenance: dict):
        """Global maps and std as OME-Zarr images, counts, status and provenance; returns the lazy maps."""
        labels = list(global_maps.labels)
        h, w = global_maps.mean.shape[1:]
        planes = np.concatenate([global_maps.mean, global_maps.overall[None]]).astype(np.float32)
        for name, data, names in (
            (GLOBAL_GROUP, planes, labels + ["overall"]),
            (STD_GROUP, global_maps.std.astype(np.float32), labels),
        ):
            if name in self.group:
                del self.group[name]
            shown = [n == "overall" for n in names] if name == GLOBAL_GROUP else [False] * len(names)
            has_maps = np.append(global_maps.count > 0, True)[: len(data)]  # the planes of labels with maps
            window = display_window(data[has_maps] if has_maps.any() else data)
            array = create_image_group(
                self.group, name, data.shape, "float32", (1, h, w), MAP_AXES, names, window, shown
            )
            array[...] = data
            self.attrs.setdefault("display", {})[name] = window
        window = display_window(sample_images(self.maps))
        _set_window(self.group[MAPS_GROUP], window)
        self.attrs["display"][MAPS_GROUP] = [v / self.scale for v in window]
        write_collection_index(self.group, self.root, COLLECTION)
        self.attrs.update(
            {
                "count": global_maps.count.tolist(),
                "overall_labels": list(global_maps.overall_labels),
                "global_maps_metadata": dict(global_maps.metadata),
                "provenance": provenance,
            }
        )
        self._set_status(provenance.get("status", "complete"))
        return lazy_maps(self.maps, self.scale)

    def abort(self) -> None:
        """A crash: the store stays as it is (resumable; its status says the run did not finish), unless this run
        created it and no chunk ever finished: then it is removed (nothing to resume, no output left behind)."""
        if not self.resumed and not any((self.root / RECORDS_DIR).glob("chunk-*.npz")):
            shutil.rmtree(self.root, ignore_errors=True)
            return
        with contextlib.suppress(Exception):
            self._set_status(RUNNING)

    def _set_status(self, status: str) -> None:
        self.attrs["status"] = status
        self.group.attrs[ATTRS_KEY] = json_ready(self.attrs)


def _create(root: Path, shape, settings: dict, task, stack, map_dtype: str) -> None:
    """Build an empty store in a hidden folder beside ``root`` and rename it into place."""
    import zarr

    n, n_labels, h, w = shape
    tmp = root.with_name(f".{root.name}.{uuid.uuid4().hex[:8]}.tmp")
    scale = map_scale(task.config.normalisation, (h, w))
    attrs = {
        "kind": "explain results",
        "layout_version": STORE_LAYOUT,
        "settings": settings,
        "status": RUNNING,
        "targets": list(task.targets),
        "model_labels": list(task.model.labels),
        "image_ids": list(stack.image_ids),
        "frame": task.stack.frame,
        "chunk_size": int(task.config.chunk_size),
        "n_chunks": task.n_chunks,
        "map_dtype": map_dtype,
        "map_scale": scale,
        "method": task.config.method,
        "subset": task.subset,
        "laterality": None if stack.laterality is None else [str(v) for v in stack.laterality],
    }
    try:
        group = zarr.open_group(str(tmp), mode="w-", zarr_format=3, attributes={ATTRS_KEY: json_ready(attrs)})
        array = create_image_group(
            group,
            MAPS_GROUP,
            shape,
            map_dtype,
            (1, n_labels, h, w),
            IMAGE_AXES,
            list(task.targets),
            window=(0.0, 4.0 if scale > 1 else 1.0),
            active=[False] * n_labels,
        )
        array.attrs["map_scale"] = scale
        flags = group.create_group(FLAGS_GROUP)
        rows = min(n, 4096)
        for name, dtype, width, fill in (
            ("computed", bool, n_labels, 0),
            ("include", bool, n_labels, 0),
            ("probabilities", "float32", len(task.model.labels), 0),
            ("completeness", "float64", n_labels, np.nan),
        ):
            flags.create_array(name, shape=(n, width), dtype=dtype, chunks=(rows, width), fill_value=fill)
        write_collection_index(group, tmp, COLLECTION)
        (tmp / RECORDS_DIR).mkdir()
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _set_window(image_group, window) -> None:
    """Set the display range of every channel of an OME-Zarr image group (its ``omero`` block)."""
    ome = dict(image_group.attrs["ome"])
    lo, hi = (float(v) for v in window)
    for channel in ome["omero"]["channels"]:
        channel["window"] = {"min": lo, "max": hi, "start": lo, "end": hi}
    image_group.attrs["ome"] = ome


def write_anatomy(root, anatomy: np.ndarray) -> None:
    """Write the mean anatomy ``(H, W, C)`` as the store's OME-Zarr image ``anatomy`` (``(C, H, W)`` float32; a
    display range of 0–255 for 8-bit images) and add it to the collection's image list."""
    import zarr

    group = zarr.open_group(str(root), mode="r+")
    data = np.moveaxis(np.asarray(anatomy, np.float32), -1, 0)
    names = ["R", "G", "B"] if data.shape[0] == 3 else [f"c{i}" for i in range(data.shape[0])]
    top = float(np.nanmax(data)) if data.size else 1.0
    window = (0.0, 255.0) if top <= 255 else (float(np.nanmin(data)), top)
    if ANATOMY_GROUP in group:
        del group[ANATOMY_GROUP]
    array = create_image_group(group, ANATOMY_GROUP, data.shape, "float32", data.shape, MAP_AXES, names, window)
    array[...] = data
    write_collection_index(group, root, COLLECTION)
    attrs = dict(group.attrs[ATTRS_KEY])
    attrs["display"] = {**attrs.get("display", {}), ANATOMY_GROUP: window}
    group.attrs[ATTRS_KEY] = json_ready(attrs)
