"""Result files of an explain run: global maps (TIFF + PNG), per-image predictions (CSV), provenance (JSON).

Everything is written atomically; reading back uses :func:`read_global_maps`. The image-wise maps of a run go to
:func:`open_map_writer`'s writer: memory, one TIFF (:class:`MapWriter`) or the Zarr results store.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from .aggregate import GlobalMaps
from .io_utils import atomic_path, atomic_write_text, json_text, save_json

__all__ = ["write_global_maps", "read_global_maps", "write_explain_outputs", "open_map_writer", "MapWriter"]


def write_global_maps(global_maps: GlobalMaps, path: str | Path, provenance: dict | None = None) -> Path:
    """Label-wise maps then the overall map as pages of a float32 TIFF; names, counts and provenance in metadata."""
    import tifffile

    stack = np.concatenate([global_maps.mean, global_maps.overall[None]]).astype(np.float32)
    meta = {
        "labels": global_maps.labels + ["overall"],
        "count": global_maps.count.tolist(),
        "overall_labels": global_maps.overall_labels,
        "metadata": global_maps.metadata,
        "provenance": provenance or {},
    }
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, stack, photometric="minisblack", description=json_text(meta, indent=None), metadata=None)
    return Path(path)


def read_global_maps(path: str | Path) -> GlobalMaps:
    """Read a file written by :func:`write_global_maps` (std is not stored there: NaN).

    Raises
    ------
    InputError
        ``path`` is not a readable TIFF, or lacks the label metadata that :func:`write_global_maps` stores (e.g. an
        image stack, or maps saved by another program); the message names the file.
    FileNotFoundError
        ``path`` does not exist.
    """
    import tifffile

    from .errors import InputError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"global maps file {path} does not exist")
    hint = "give the global_maps.tif written by 'global-xai explain' (or the napari dock)"
    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            description = tif.pages[0].description
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for non-TIFF or corrupt files
        raise InputError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc}); {hint}") from exc
    try:
        meta = json.loads(description)
        names = list(meta["labels"])[:-1]
        counts = meta["count"]
    except (ValueError, TypeError, KeyError):
        raise InputError(f"{path}: not a global-maps file (no label names in its metadata); {hint}") from None
    if data.ndim != 3 or len(data) != len(names) + 1 or len(counts) != len(names):
        raise InputError(f"{path}: {len(names) + 1} map names in its metadata but pages of shape {data.shape}; {hint}")
    mean = data[:-1].astype(np.float64)
    return GlobalMaps(
        names,
        mean,
        np.full_like(mean, np.nan),
        np.asarray(counts, np.int64),
        data[-1].astype(np.float64),
        meta.get("overall_labels", names),
        meta.get("metadata", {}),
    )


def _predictions_csv(result, image_ids) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        ["image"]
        + [f"p_{n}" for n in result.model_labels]
        + [f"in_subset_{n}" for n in result.target_labels]
        + [f"computed_{n}" for n in result.target_labels]
    )
    for i, image_id in enumerate(image_ids):
        writer.writerow(
            [image_id]
            + [f"{p:.6f}" for p in result.probabilities[i]]
            + [int(v) for v in result.include[i]]
            + [int(v) for v in result.computed[i]]
        )
    return buf.getvalue()


def write_explain_outputs(
    result, out_dir: str | Path, anatomy: np.ndarray | None = None, image_ids=None
) -> dict[str, Path]:
    """Write global maps, std, predictions, summary and an overlay PNG into ``out_dir``.

    Returns
    -------
    dict
        Output name → path.
    """
    from .figures import save_global_map_overlays

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gm = result.global_maps
    paths = {"global_maps": write_global_maps(gm, out / "global_maps.tif", result.provenance)}
    import tifffile

    with atomic_path(out / "global_std.tif") as tmp:
        tifffile.imwrite(
            tmp, gm.std.astype(np.float32), photometric="minisblack", description=json.dumps({"labels": gm.labels})
        )
    paths["global_std"] = out / "global_std.tif"
    ids = image_ids if image_ids is not None else [str(i) for i in range(len(result.probabilities))]
    atomic_write_text(out / "predictions.csv", _predictions_csv(result, ids))
    paths["predictions"] = out / "predictions.csv"
    summary = {
        "status": result.provenance.get("status", "complete"),
        "targets": result.target_labels,
        "subset": result.subset,
        "cancelled": result.cancelled,
        "maps_per_label": dict(zip(gm.labels, gm.count.tolist())),
        "maps_computed": result.n_computed,
        "overall_labels": gm.overall_labels,
        "provenance": result.provenance,
    }
    save_json(out / "explain_summary.json", summary)
    paths["summary"] = out / "explain_summary.json"
    if anatomy is not None:
        maps = {f"{n} (n={c})": gm.mean[i] for i, (n, c) in enumerate(zip(gm.labels, gm.count)) if c > 0}
        maps["overall"] = gm.overall
        title = (
            f"{result.config.method} global maps, subset '{result.subset}', {result.config.normalisation}-normalised"
        )
        if result.cancelled:
            title = (
                f"CANCELLED, partial: {result.n_computed} of {result.provenance.get('n_maps_selected', '?')} "
                f"maps. {title}"
            )
        paths["overlay"] = save_global_map_overlays(anatomy, maps, out / "global_maps.png", title=title)
    return paths


def open_map_writer(out_dir, out_format, map_dtype, overwrite, shape, task, stack):
    """Where image-wise maps go: memory (no ``out_dir``), the Zarr results store, or one TIFF."""
    if out_dir is None:
        return MapWriter(None, shape)
    if out_format == "tiff":
        return MapWriter(out_dir, shape)
    from .store import open_results_store

    return open_results_store(out_dir, shape, task, stack, map_dtype=map_dtype, overwrite=overwrite)


class MapWriter:
    """Image-wise maps: in memory, or streamed into an uncompressed (memory-mappable) TIFF written atomically."""

    def __init__(self, out_dir, shape):
        self.shape = shape
        self.path = None
        if out_dir is None:
            self.array = np.zeros(shape, np.float32)
            return
        import tifffile

        self.path = Path(out_dir) / "image_maps.tif"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.array = tifffile.memmap(
            self.tmp, shape=shape, dtype=np.float32, photometric="minisblack", metadata={"axes": "QCYX"}
        )

    def completed(self):
        """No resume: every chunk is computed."""
        return {}

    def facts(self) -> dict:
        return {"format": "memory" if self.path is None else "tiff"}

    def write(self, result):
        self.array[result.indices] = result.maps

    def finish(self, global_maps=None, provenance=None):
        if self.path is None:
            return self.array
        import os

        import tifffile

        try:
            self.array.flush()
            del self.array
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return tifffile.memmap(self.path, mode="r")

    def abort(self):
        """Drop the hidden partial file (after a failure); an earlier complete ``image_maps.tif`` stays."""
        if self.path is None:
            return
        import contextlib
        import os

        self.__dict__.pop("array", None)  # close the memmap before removing its file
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)
