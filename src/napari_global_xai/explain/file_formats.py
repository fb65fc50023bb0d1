"""How the files of an explain results folder are encoded, each by path (their names: :data:`.result.FILES`).

The global maps TIFF (label-wise maps then the overall map, names, counts and provenance in its metadata), the std
TIFF, the image-wise maps TIFF (streamed, memory-mappable) and the predictions CSV. Torch-free; every write is
atomic.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..aggregate import GlobalMaps
from ..io_utils import atomic_path, json_text, writing

__all__ = [
    "write_global_maps_tiff",
    "read_global_maps_tiff",
    "write_std_tiff",
    "read_std_tiff",
    "predictions_csv",
    "read_predictions_csv",
    "read_image_maps_tiff",
    "read_summary_json",
    "write_overlay",
    "TiffMapWriter",
]


def write_global_maps_tiff(global_maps: GlobalMaps, path: str | Path, provenance: dict | None = None) -> Path:
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


def read_global_maps_tiff(path: str | Path, hint: str) -> tuple[GlobalMaps, dict]:
    """``(global maps, provenance)`` of a file written by :func:`write_global_maps_tiff` (std NaN: not stored there).

    Raises
    ------
    InputError
        Not a readable TIFF, or no label metadata (e.g. an image stack); one line naming the file, ending in ``hint``.
    """
    import tifffile

    from ..errors import InputError

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
    maps = GlobalMaps(
        names,
        mean,
        np.full_like(mean, np.nan),
        np.asarray(counts, np.int64),
        data[-1].astype(np.float64),
        meta.get("overall_labels", names),
        meta.get("metadata", {}),
    )
    return maps, dict(meta.get("provenance") or {})


def write_std_tiff(std: np.ndarray, labels: list[str], path: str | Path) -> Path:
    """Per-pixel standard deviation of each label's maps, ``(L, H, W)`` float32, label names in the metadata."""
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, std.astype(np.float32), photometric="minisblack", description=json.dumps({"labels": list(labels)})
        )
    return Path(path)


def read_std_tiff(path: str | Path, n_labels: int) -> np.ndarray:
    """The ``(L, H, W)`` float32 maps of :func:`write_std_tiff`.

    Raises
    ------
    InputError
        Unreadable, or not ``n_labels`` pages (one line naming the file).
    """
    import tifffile

    from ..errors import InputError

    try:
        data = tifffile.imread(path)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for non-TIFF or corrupt files
        raise InputError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    data = data[None] if data.ndim == 2 else data
    if data.ndim != 3 or len(data) != n_labels:
        raise InputError(f"{path}: shape {data.shape} does not fit the {n_labels} explained labels")
    return data.astype(np.float32)


def predictions_csv(
    image_ids,
    model_labels,
    targets,
    probabilities: np.ndarray,
    include: np.ndarray,
    computed: np.ndarray,
    completeness: np.ndarray | None = None,
) -> str:
    """One row per image: its id, the model's scores ``p_<label>``, ``in_subset_<target>``, ``computed_<target>``
    and, with ``completeness`` (``(n, T)``, NaN where none), ``completeness_<target>`` (empty where none)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    groups = ["in_subset_", "computed_"] + ([] if completeness is None else ["completeness_"])
    writer.writerow(["image"] + [f"p_{n}" for n in model_labels] + [f"{g}{n}" for g in groups for n in targets])
    for i, image_id in enumerate(image_ids):
        errors = [] if completeness is None else [f"{v:.9g}" if np.isfinite(v) else "" for v in completeness[i]]
        writer.writerow(
            [image_id]
            + [f"{p:.6f}" for p in probabilities[i]]
            + [int(v) for v in include[i]]
            + [int(v) for v in computed[i]]
            + errors
        )
    return buf.getvalue()


def read_predictions_csv(path: str | Path, targets) -> dict[str, object]:
    """``image_ids`` and ``model_labels`` (the ``p_`` columns) as lists, ``probabilities`` ``(n, M)`` float32,
    ``include`` and ``computed`` ``(n, T)`` bool and ``completeness`` ``(n, T)`` float64 (NaN where empty; None
    without those columns) of a file written from :func:`predictions_csv`.

    Raises
    ------
    InputError
        Unreadable, a column is missing or a value is not a number (one line naming the file).
    """
    from ..errors import InputError

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    model_labels = [c[2:] for c in header if c.startswith("p_")]
    n, n_targets = len(rows), len(targets)
    try:
        ids = [r["image"] for r in rows]
        probabilities = np.array([[float(r[f"p_{m}"]) for m in model_labels] for r in rows], np.float32)
        include = np.array([[r[f"in_subset_{t}"] == "1" for t in targets] for r in rows], bool)
        computed = np.array([[r[f"computed_{t}"] == "1" for t in targets] for r in rows], bool)
        completeness = (
            np.array([[float(r[f"completeness_{t}"] or "nan") for t in targets] for r in rows], np.float64)
            if any(c.startswith("completeness_") for c in header)
            else None
        )
    except KeyError as exc:
        raise InputError(f"{path}: column {exc} is missing") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a number ({exc})") from None
    return {
        "image_ids": ids,
        "model_labels": model_labels,
        "probabilities": probabilities.reshape(n, len(model_labels)),
        "include": include.reshape(n, n_targets),
        "computed": computed.reshape(n, n_targets),
        "completeness": None if completeness is None else completeness.reshape(n, n_targets),
    }


def read_image_maps_tiff(path: str | Path, shape: tuple[int, int], fits: str):
    """``(n, L, H, W)`` image-wise maps of an image maps TIFF, memory-mapped when it can be.

    Raises
    ------
    InputError
        Unreadable, or its first two axes are not ``shape`` (one line naming the file and ``fits``, what sets it).
    """
    import tifffile

    from ..errors import InputError

    try:
        maps = tifffile.memmap(path, mode="r")
    except ValueError:  # compressed or otherwise not memory-mappable
        maps = tifffile.imread(path)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for corrupt files
        raise InputError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    if maps.ndim != 4 or maps.shape[:2] != tuple(shape):
        raise InputError(f"{path}: shape {maps.shape} does not fit {shape[0]} images × {shape[1]} {fits}")
    return maps


def read_summary_json(path: str | Path) -> dict:
    """An explain summary with ``targets`` (list) and ``provenance`` (dict) checked.

    Raises
    ------
    InputError
        Unreadable JSON or no ``targets`` (one line naming the file).
    """
    from ..errors import InputError

    try:
        summary = json.loads(Path(path).read_text())
        summary["targets"] = list(summary["targets"])
        summary["provenance"] = dict(summary.get("provenance") or {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: unreadable explain summary ({exc})") from None
    return summary


def write_overlay(result, anatomy: np.ndarray, path: str | Path) -> Path:
    """The global maps of an :class:`~.result.ExplainResult` over the mean anatomy, one PNG (title says a cancel)."""
    from ..figures import save_global_map_overlays

    gm = result.global_maps
    maps = {f"{n} (n={c})": gm.mean[i] for i, (n, c) in enumerate(zip(gm.labels, gm.count)) if c > 0}
    maps["overall"] = gm.overall
    config = result.config
    title = f"{config.method} global maps, subset '{result.subset}', {config.normalisation}-normalised"
    if result.cancelled:
        selected = result.provenance.get("n_maps_selected", "?")
        title = f"CANCELLED, partial: {result.n_computed} of {selected} maps. {title}"
    return save_global_map_overlays(anatomy, maps, path, title=title, normalisation=config.normalisation)


class TiffMapWriter:
    """The maps of a run without a store: in memory (no folder), or image-wise maps streamed into an uncompressed
    (memory-mappable) TIFF written atomically, with the global maps and std TIFFs written at the end.

    Parameters
    ----------
    shape : tuple
        ``(n, L, H, W)``.
    paths : dict, optional
        ``image_maps``, ``global_maps`` and ``std`` paths; None keeps the maps in memory and writes nothing.
    """

    def __init__(self, shape, paths: dict[str, Path] | None = None):
        self.shape = shape
        self.paths = paths
        if paths is None:
            self.array = np.zeros(shape, np.float32)
            return
        import tifffile

        self.path = Path(paths["image_maps"])
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        try:
            with writing(self.path, any_os_error=True):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.array = tifffile.memmap(
                    self.tmp, shape=shape, dtype=np.float32, photometric="minisblack", metadata={"axes": "QCYX"}
                )
        except BaseException:
            self.abort()  # no hidden partial file after a failed start either
            raise

    def completed(self):
        """No resume: every chunk is computed."""
        return {}

    def facts(self) -> dict:
        return {"format": "memory" if self.paths is None else "tiff"}

    def write(self, result):
        self.array[result.indices] = result.maps

    def finish(self, global_maps, provenance: dict):
        """The image-wise maps renamed into place, then the global maps and std; returns the image-wise maps."""
        if self.paths is None:
            return self.array
        import os

        import tifffile

        try:
            with writing(self.path, any_os_error=True):
                self.array.flush()
                del self.array
                os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        write_global_maps_tiff(global_maps, self.paths["global_maps"], provenance)
        write_std_tiff(global_maps.std, global_maps.labels, self.paths["std"])
        return tifffile.memmap(self.path, mode="r")

    def abort(self):
        """Drop the hidden partial file (after a failure); an earlier complete image-wise maps TIFF stays."""
        if self.paths is None:
            return
        import contextlib
        import os

        self.__dict__.pop("array", None)  # close the memmap before removing its file
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)
