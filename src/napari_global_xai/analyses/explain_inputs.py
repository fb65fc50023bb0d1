"""Inputs of the analysis pipelines (:mod:`.sanity_pipeline`, :mod:`.compare_pipeline`, :mod:`.regions_pipeline`):
one label's maps of an explain run (:func:`label_maps`; the run's folder is read by
:func:`napari_global_xai.explain.result.open_explain`), per-image values and landmarks from a CSV, and the optional
output folder check.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["check_out_dir", "label_maps", "read_csv_column", "read_landmarks_csv"]


def label_maps(
    image_maps: np.ndarray, computed: np.ndarray, targets: list[str], label: str | None, use: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One label's image-wise maps (or, for ``label=None`` / ``"overall"``, each image's mean over its labels).

    Parameters
    ----------
    image_maps : numpy.ndarray, (n, L, H, W)
    computed : numpy.ndarray, (n, L) bool
        Which maps exist.
    targets : list of str
    label : str or None
    use : numpy.ndarray, (n, L) bool, optional
        Further restriction (e.g. the explain run's subset).

    Returns
    -------
    maps : numpy.ndarray, (m, H, W) float32
    indices : numpy.ndarray, (m,)
        Image index of each map.

    Raises
    ------
    ValueError
        Unknown label, or no map for it.
    """
    ok = np.asarray(computed, bool) & (np.asarray(use, bool) if use is not None else True)
    if label in (None, "overall", "all"):
        idx = np.nonzero(ok.any(axis=1))[0]
        maps = np.stack([np.asarray(image_maps[i])[ok[i]].mean(0) for i in idx]) if len(idx) else None
        name = "overall"
    else:
        if label not in targets:
            raise ValueError(f"label {label!r} is not among the explained labels {targets}")
        j = targets.index(label)
        idx = np.nonzero(ok[:, j])[0]
        maps = np.asarray(image_maps[idx, j]) if len(idx) else None
        name = label
    if maps is None:
        raise ValueError(f"no image-wise map was computed for {name!r}")
    return maps.astype(np.float32), idx


def read_csv_column(path, column: str, image_ids: list[str]) -> list[str]:
    """One column of a CSV (e.g. the labels table's metadata), matched to ``image_ids``, read with :mod:`csv`.

    The id column is the first of ``image, image_id, filename, file`` present (case-insensitive); a row id also
    matches an image id equal to its file-name stem. Images without a row get an empty value (no group).

    Raises
    ------
    ValueError
        Missing file, id column or ``column`` (the message lists the columns).
    """
    from ..data.labels import ID_COLUMNS

    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise ValueError(f"CSV not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: empty")
    header = [h.strip() for h in rows[0]]
    lowered = [h.lower() for h in header]
    id_col = next((lowered.index(c) for c in ID_COLUMNS if c in lowered), None)
    if id_col is None:
        raise ValueError(f"{path}: no image id column ({', '.join(ID_COLUMNS)}); columns: {header}")
    if column.lower() not in lowered:
        raise ValueError(f"{path}: no column {column!r}; columns: {header}")
    col = lowered.index(column.lower())
    by_id = {}
    for r in rows[1:]:
        r = r + [""] * (len(header) - len(r))
        rid = r[id_col].strip()
        by_id[rid] = r[col].strip()
        by_id.setdefault(Path(rid).stem, r[col].strip())
    if not any(i in by_id for i in image_ids):
        raise ValueError(f"{path}: no row matches the images (e.g. {image_ids[:3]})")
    return [by_id.get(i, "") for i in image_ids]


def read_landmarks_csv(path, image_ids: list[str], laterality, width: int) -> tuple[tuple, tuple]:
    """Mean disc and fovea positions in the left-eye frame from a per-image CSV (stored frame).

    Columns ``disc_row, disc_col, fovea_row, fovea_col`` (plus the image id column); right eyes' columns are
    mirrored (``width - 1 - col``) before averaging; rows with an empty cell are skipped.
    """
    cols = {c: read_csv_column(path, c, image_ids) for c in ("disc_row", "disc_col", "fovea_row", "fovea_col")}
    pts = []
    for i in range(len(image_ids)):
        try:
            v = [float(cols[c][i]) for c in ("disc_row", "disc_col", "fovea_row", "fovea_col")]
        except ValueError:
            continue
        if str(laterality[i]) == "R":
            v[1], v[3] = width - 1 - v[1], width - 1 - v[3]
        pts.append(v)
    if not pts:
        raise ValueError(f"{path}: no image has all of disc_row, disc_col, fovea_row, fovea_col")
    m = np.mean(pts, axis=0)
    return (float(m[0]), float(m[1])), (float(m[2]), float(m[3]))


def check_out_dir(out_dir) -> Path | None:
    """:func:`napari_global_xai.io_utils.check_output_folder` for an optional folder (None passes through)."""
    if out_dir is None:
        return None
    from ..io_utils import check_output_folder

    return check_output_folder(out_dir)
