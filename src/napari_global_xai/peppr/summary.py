"""PEPPR read-outs: summary scores per map and label, the report table, label specificity, the split note, and
the printable summary of a run (:func:`summary_text`).

Definitions are the proposals of methods.md §1.7 [I] (normalised trapezoid areas, gap, differences to the random
order, restoration point). Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .curves import Curves, curve_area, restoration_point
from .result import PepprResult

__all__ = [
    "summarise",
    "collect_maps",
    "headlines",
    "split_note",
    "map_summary",
    "table_rows",
    "specificity_matrix",
    "summary_text",
]


def _area_block(curves: Curves, label: str) -> dict[str, float]:
    e = float(curve_area(curves.fractions, curves.curve("erase", label)))
    r = float(curve_area(curves.fractions, curves.curve("restore", label)))
    return {"A_erase": e, "A_restore": r, "gap": r - e}


def summarise(
    curves: Curves, reference: Curves | Sequence[Curves] | None = None, tolerance: float = 0.01
) -> dict[str, dict[str, float]]:
    """PEPPR summary scores per label and ``"macro"``.

    Parameters
    ----------
    curves : Curves
    reference : Curves or sequence of Curves, optional
        The baseline (random-order curves, one per seed); their areas are averaged over seeds.
    tolerance : float
        δ for ``p_star``.

    Returns
    -------
    dict
        ``{label: {...}}`` with ``A_erase`` (lower = more faithful), ``A_restore`` (higher), ``gap`` =
        A_restore − A_erase, ``full`` (metric of the unmodified images = erase at p = 0), ``filled`` (erase at
        p = 1), ``p_star`` (interpolated), ``p_star_grid``; the reference's ``random_A_erase``,
        ``random_A_erase_sd``, ``random_A_restore``, ``random_A_restore_sd``, ``random_gap``, ``random_gap_sd`` and the
        differences ``d_erase`` = A_erase − random (negative = better), ``d_restore`` = A_restore − random
        (positive = better), ``d_gap`` (NaN without a reference: every block has the same keys).

    Notes
    -----
    Summary definitions are proposals of methods.md §1.7 [I]: areas are normalised trapezoid areas
    (:func:`curve_area`); ``p_star`` = smallest restored fraction with metric ≥ full − δ, linearly interpolated
    between the grid fractions around the first crossing (``p_star_grid`` is the first grid fraction reaching it).
    The full-image metric is the erase curve at p = 0 (the unmodified images) when the grid starts at 0, else the
    restore curve at its largest fraction. The reference's standard deviation is the sample sd over seeds (0 for
    one seed).
    """
    refs = [] if reference is None else ([reference] if isinstance(reference, Curves) else list(reference))
    out = {}
    for label in list(curves.labels) + ["macro"]:
        block = _area_block(curves, label)
        restore = curves.curve("restore", label)
        full = curves.curve("erase", label)[0] if curves.fractions[0] == 0 else restore[-1]
        block.update(
            full=float(full),
            filled=float(curves.curve("erase", label)[-1]),
            p_star=restoration_point(curves.fractions, restore, full, tolerance, True),
            p_star_grid=restoration_point(curves.fractions, restore, full, tolerance, False),
        )
        ref_blocks = [_area_block(ref, label) for ref in refs]
        for key in ("A_erase", "A_restore", "gap"):
            vals = np.array([b[key] for b in ref_blocks])
            block[f"random_{key}"] = float(vals.mean()) if len(vals) else float("nan")
            block[f"random_{key}_sd"] = (
                float(vals.std(ddof=1)) if len(vals) > 1 else (0.0 if len(vals) else float("nan"))
            )
        block["d_erase"] = block["A_erase"] - block["random_A_erase"]
        block["d_restore"] = block["A_restore"] - block["random_A_restore"]
        block["d_gap"] = block["gap"] - block["random_gap"]
        out[label] = block
    return out


def collect_maps(global_maps, shape) -> dict[str, np.ndarray]:
    """Name -> (H, W) map from a GlobalMaps (its labels, then "overall") or a dict; all-NaN maps are dropped."""
    if isinstance(global_maps, dict):
        items = list(global_maps.items())
    else:
        items = [(name, global_maps.mean[i]) for i, name in enumerate(global_maps.labels)]
        items.append(("overall", global_maps.overall))
    maps = {}
    for name, m in items:
        m = np.asarray(m, np.float64)
        if m.shape != tuple(shape):
            raise ValueError(f"map {name!r} has shape {m.shape}, the images are {tuple(shape)}")
        if np.isfinite(m).any():
            maps[str(name)] = m
    if not maps:
        raise ValueError("no usable global map (every map is empty or NaN)")
    return maps


def headlines(map_names, label_names, maps_for) -> dict[str, list[str]]:
    """Per map, the labels (and ``"macro"``) it is judged on: ``"labelwise"`` (a label map on its own label, any
    other map on every label) or ``"overall"`` (old name ``"all"``: every map on every label and the macro mean)."""
    if maps_for in ("overall", "all"):
        return {m: list(label_names) + ["macro"] for m in map_names}
    if maps_for != "labelwise":
        raise ValueError(f"maps_for must be 'labelwise' or 'overall', got {maps_for!r}")
    return {m: [m] if m in label_names else list(label_names) + ["macro"] for m in map_names}


def split_note(map_split, eval_split) -> dict:
    note = {"map_split": map_split, "eval_split": eval_split}
    if map_split is None or eval_split is None:
        note["note"] = (
            "split provenance not fully given: make sure the global maps were not built on the evaluated "
            "images (circularity, methods.md §1.6 item 5)"
        )
    elif str(map_split) == str(eval_split):
        note["note"] = (
            f"maps built and evaluated on the same split ({map_split!r}): faithfulness may be "
            "overestimated (circularity); report a disjoint-split run as well"
        )
    else:
        note["note"] = f"maps built on {map_split!r}, evaluated on {eval_split!r} (disjoint as given)"
    return note


def map_summary(curves: Curves, reverse: Curves | None, random: list[Curves], tolerance: float) -> dict:
    """:func:`summarise` against the random curves, with the reverse order's areas added (NaN without it)."""
    summary = summarise(curves, random or None, tolerance)
    for label, block in summary.items():
        rev = _area_block(reverse, label) if reverse is not None else {"A_erase": np.nan, "A_restore": np.nan}
        block["reverse_A_erase"], block["reverse_A_restore"] = rev["A_erase"], rev["A_restore"]
    return summary


def table_rows(summary, headline) -> list[dict]:
    return [
        {"map": name, "label": label, **summary[name][label]} for name, labels in headline.items() for label in labels
    ]


def specificity_matrix(summary, map_names, label_names) -> dict:
    """Label map a × label b area matrices and their gains over the random order (same for every map)."""
    label_maps = [m for m in map_names if m in label_names]

    def grab(key):
        return np.array([[summary[m][b][key] for b in label_names] for m in label_maps]).reshape(
            len(label_maps), len(label_names)
        )

    erase, restore = grab("A_erase"), grab("A_restore")
    return {
        "maps": label_maps,
        "labels": list(label_names),
        "erase": erase,
        "restore": restore,
        "erase_gain": grab("random_A_erase") - erase,
        "restore_gain": restore - grab("random_A_restore"),
    }


def _num(value, spec=".3f") -> str:
    return "  n/a" if value is None or not np.isfinite(value) else format(value, spec)


def summary_text(result: PepprResult) -> str:
    """A printable summary: counts, the split note and one line per (map, headline label) of ``result.table``."""
    lines = [
        f"PEPPR on {result.n_images} images ({result.metric}, {result.fill} fill, {len(result.fractions)} "
        f"fractions, {len(result.random)} random seeds): {result.n_forwards} forwards, {result.n_skipped} "
        f"skipped, {result.seconds:.1f} s"
        + (
            f"; CANCELLED: partial result on {result.n_images} of {result.n_requested} images"
            if result.cancelled
            else ""
        ),
        f"split: {result.split_note.get('note', '')}",
        f"{'map':>18s} {'label':>18s}  A_erase A_restore    gap  random gap (sd)  d_erase d_restore    p*",
    ]
    for row in result.table:
        lines.append(
            f"{row['map']:>18s} {row['label']:>18s}  {_num(row['A_erase'])}     {_num(row['A_restore'])}  "
            f"{_num(row['gap'], '+.3f')}  {_num(row.get('random_gap'), '+.3f')} ({_num(row.get('random_gap_sd'))})  "
            f"{_num(row.get('d_erase'), '+.3f')}    {_num(row.get('d_restore'), '+.3f')} {_num(row['p_star'])}"
        )
    return "\n".join(lines)
