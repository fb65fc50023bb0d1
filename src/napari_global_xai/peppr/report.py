"""PEPPR outputs: curve figure (PNG), long-format curves (CSV), summary (JSON); filled images: :mod:`.filled`.

Everything is written atomically (:func:`napari_global_xai.io_utils.atomic_path`): a file appears whole or not at
all. Figures use matplotlib's object API with the Agg canvas, so no pyplot global state is touched (safe inside
napari and in worker threads).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from ..config import MODES
from ..io_utils import atomic_path, atomic_write_text, json_ready, save_json
from .curves import Curves
from .result import PepprResult

__all__ = ["plot_peppr", "draw_panel", "summary_text", "write_peppr", "curves_rows", "summary_dict", "CSV_COLUMNS"]

CSV_COLUMNS = ("map", "order", "seed", "curve", "fraction", "label", "value")
_COLOURS = {"erase": "#c0392b", "restore": "#2471a3"}


# ------------------------------------------------------------------------------------------------------ figure


def _panels(result: PepprResult, label: str | None) -> list[tuple[str, str]]:
    """(map, label) panels: each map's headline labels, or only those matching ``label`` (a label or a map)."""
    panels = [(row["map"], row["label"]) for row in result.table]
    if label is not None:
        panels = [p for p in panels if label in p]
        if not panels:
            raise ValueError(f"no PEPPR panel for {label!r}; maps {result.maps}, labels {result.labels + ['macro']}")
    return panels


def draw_panel(ax, result: PepprResult, map_name: str, label: str) -> None:
    """Draw one PEPPR panel (a map's curves on one label or ``"macro"``) into a matplotlib ``Axes``.

    The map's erase (red) and restore (blue) curves (solid, markers), the random order's mean ± sample sd band
    (thin line and shading) and the reverse order (dashed); the legend gives each curve's normalised area and the
    title the PEPPR gap (A_restore − A_erase). Used by :func:`plot_peppr` and the napari PEPPR dock.
    """
    f = result.fractions
    block = result.summary[map_name][label]
    for mode in MODES:
        colour = _COLOURS[mode]
        if result.random:
            mean, sd = result.random_band(mode, label)
            ax.fill_between(f, mean - sd, mean + sd, color=colour, alpha=0.15, linewidth=0)
            ax.plot(
                f,
                mean,
                color=colour,
                alpha=0.55,
                linewidth=1,
                label=f"random {mode} (A={block[f'random_A_{mode}']:.3f})",
            )
        if map_name in result.reverse:
            ax.plot(
                f,
                result.reverse[map_name].curve(mode, label),
                color=colour,
                linestyle="--",
                linewidth=1,
                label=f"reverse {mode} (A={block[f'reverse_A_{mode}']:.3f})",
            )
        ax.plot(
            f,
            result.curves[map_name].curve(mode, label),
            color=colour,
            linewidth=2,
            marker="o",
            markersize=3,
            label=f"map {mode} (A={block[f'A_{mode}']:.3f})",
        )
    ax.set_title(f"map {map_name} → {label}   gap={block['gap']:.3f}", fontsize=9)
    ax.set_xlabel("fraction of pixels erased / restored")
    ax.set_ylabel("AUROC" if result.metric == "auroc" else "mean probability")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")


def plot_peppr(result: PepprResult, path: str | Path, label: str | None = None, dpi: int = 110) -> Path:
    """Draw the PEPPR curves to a PNG.

    Parameters
    ----------
    result : PepprResult
    path : str or Path
        PNG file (written atomically).
    label : str, optional
        Only the panels of this label or map; default one panel per (map, headline label).
    dpi : int

    Returns
    -------
    Path

    Notes
    -----
    One :func:`draw_panel` per (map, label) panel, three panels per row.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = _panels(result, label)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (map_name, lab) in zip(axes, panels):
        draw_panel(ax, result, map_name, lab)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"PEPPR ({result.fill} fill, {result.n_images} images)", fontsize=10)
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


# ------------------------------------------------------------------------------------------------ tables, JSON


def _fmt(value, spec=".3f") -> str:
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
            f"{row['map']:>18s} {row['label']:>18s}  {_fmt(row['A_erase'])}     {_fmt(row['A_restore'])}  "
            f"{_fmt(row['gap'], '+.3f')}  {_fmt(row.get('random_gap'), '+.3f')} ({_fmt(row.get('random_gap_sd'))})  "
            f"{_fmt(row.get('d_erase'), '+.3f')}    {_fmt(row.get('d_restore'), '+.3f')} {_fmt(row['p_star'])}"
        )
    return "\n".join(lines)


def _curve_rows(curves: Curves, map_name: str):
    for mode in MODES:
        for label in list(curves.labels) + ["macro"]:
            for p, value in zip(curves.fractions, curves.curve(mode, label)):
                yield (
                    map_name,
                    curves.order,
                    "" if curves.seed is None else curves.seed,
                    mode,
                    float(p),
                    label,
                    float(value),
                )


def curves_rows(result: PepprResult) -> list[tuple]:
    """Long-format rows ``(map, order, seed, curve, fraction, label, value)`` of every curve (see CSV_COLUMNS)."""
    rows = []
    for name in result.maps:
        rows += _curve_rows(result.curves[name], name)
        if name in result.reverse:
            rows += _curve_rows(result.reverse[name], name)
    for c in result.random:
        rows += _curve_rows(c, "random")
    return rows


def summary_dict(result: PepprResult) -> dict:
    """The JSON-ready summary of a run (:func:`~napari_global_xai.io_utils.json_ready`: NaN written as null)."""
    return json_ready(
        {
            "method": "PEPPR (reconstruction, methods.md §1.7)",
            "metric": result.metric,
            "fill": result.fill,
            "fractions": result.fractions,
            "labels": result.labels,
            "maps": result.maps,
            "headline": result.headline,
            "table": result.table,
            "summary": result.summary,
            "specificity": result.specificity,
            "split": result.split_note,
            "n_images": result.n_images,
            "random_seeds": [c.seed for c in result.random],
            "n_forwards": result.n_forwards,
            "n_skipped": result.n_skipped,
            "seconds": result.seconds,
            "eval_indices": None if result.eval_indices is None else result.eval_indices,
            "cancelled": result.cancelled,
            "status": "CANCELLED" if result.cancelled else "complete",
            "n_requested": result.n_images if result.n_requested is None else result.n_requested,
        }
    )


def write_peppr(result: PepprResult, out_dir: str | Path, plot: bool = True) -> dict[str, Path]:
    """Write ``peppr_curves.csv``, ``peppr_summary.json`` and ``peppr.png`` into ``out_dir`` (atomically).

    Returns
    -------
    dict
        ``{"curves": path, "summary": path, "figure": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(curves_rows(result))
    paths = {"curves": out / "peppr_curves.csv", "summary": out / "peppr_summary.json"}
    atomic_write_text(paths["curves"], text.getvalue())
    save_json(paths["summary"], summary_dict(result))
    if plot:
        paths["figure"] = plot_peppr(result, out / "peppr.png")
    return paths
