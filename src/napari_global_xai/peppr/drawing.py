"""Drawing PEPPR into matplotlib axes and figures: the panel (curves, summary table, filmstrip, highlight) and the
curves figure a run writes (:func:`plot_peppr`, one :func:`draw_panel` per map and label).

The panel's data (:class:`~napari_global_xai.peppr.view.PepprView`, :class:`~napari_global_xai.peppr.view.Filmstrip`)
comes from :mod:`napari_global_xai.peppr.view`; the napari dock and the report both draw through here. Matplotlib's
object API with the Agg canvas for files: no pyplot global state (safe inside napari and in worker threads).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ..config import MODES
from .result import PepprResult
from .view import TABLE_COLUMNS, FigureHandles, Filmstrip, PepprView, nearest_index

__all__ = [
    "table_cells",
    "draw_curves",
    "draw_table",
    "filmstrip_mosaic",
    "draw_filmstrip",
    "set_highlight",
    "draw_peppr_figure",
    "draw_panel",
    "plot_peppr",
]

_COLOURS = {"erase": "#c0392b", "restore": "#2471a3"}

_MAP_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_MODE_STYLE = {"erase": {"linestyle": "-", "marker": "o"}, "restore": {"linestyle": "--", "marker": "s"}}
#: The random order's mean curves: thin, no markers, a dotted and a dash-dotted line in two greys, so they read
#: apart from the map curves (solid / dashed, coloured, markers) and from each other.
RANDOM_STYLE = {
    "erase": {"color": "0.35", "linestyle": ":", "linewidth": 1.6},
    "restore": {"color": "0.6", "linestyle": "-.", "linewidth": 1.6},
}
#: Font size (points) of the summary table and the legend.
TABLE_FONT_PT = 9


def _fmt(value, spec: str) -> str:
    if spec == "s":
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not np.isfinite(v) else format(v, spec)


def table_cells(view: PepprView) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the compact summary table (:data:`TABLE_COLUMNS`)."""
    header = [h for h, _, _ in TABLE_COLUMNS]
    rows = [[_fmt(row.get(key), spec) for _, key, spec in TABLE_COLUMNS] for row in view.rows]
    return header, rows


def draw_curves(ax, view: PepprView, fraction: float | None = None, legend: bool = True):
    """Draw every table row's erase (solid) and restore (dashed) curve, one colour per map, into ``ax``.

    The random order's mean ± sd is drawn once per label as a grey band, its mean as a thin dotted (erase) or
    dash-dotted (restore) grey line without markers (:data:`RANDOM_STYLE`); the legend sits outside the axes (to the
    right). Returns the fraction marker (a vertical line) or None.
    """
    f = view.fractions
    banded = set()
    for i, row in enumerate(view.rows):
        colour = _MAP_COLOURS[i % len(_MAP_COLOURS)]
        name, label = row["map"], row["label"]
        for mode in ("erase", "restore"):
            if (mode, label) not in banded:
                band = view.random_band(mode, label)
                if band is not None:
                    mean, sd = band
                    style = RANDOM_STYLE[mode]
                    ax.fill_between(f, mean - sd, mean + sd, color=style["color"], alpha=0.15, linewidth=0)
                    ax.plot(
                        f,
                        mean,
                        **style,
                        label=f"random order: {mode}, mean ± sd" + (f" ({label})" if len(view.rows) > 1 else ""),
                    )
                banded.add((mode, label))
            key = (name, mode, label)
            if key in view.curves:
                ax.plot(
                    f,
                    view.curves[key],
                    color=colour,
                    linewidth=1.8,
                    markersize=3.5,
                    label=f"{name}{'' if label in ('macro', name) else ' → ' + label}: {mode}",
                    picker=True,
                    pickradius=5,
                    **_MODE_STYLE[mode],
                )
    ax.set_xlabel("fraction of pixels erased / restored")
    ax.set_ylabel("AUROC" if view.metric == "auroc" else "mean probability")
    ax.set_xlim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    marker = None
    if fraction is not None:
        marker = ax.axvline(float(fraction), color="#f1c40f", linewidth=1.5, zorder=0)
    if legend:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
    return marker


def draw_table(ax, view: PepprView):
    """The compact summary table in an axes of its own (axis off)."""
    ax.set_axis_off()
    header, rows = table_cells(view)
    if not rows:
        return None
    table = ax.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(TABLE_FONT_PT)
    table.auto_set_column_width(list(range(len(header))))
    table.scale(1.0, 1.6)
    for cell in table.get_celld().values():  # transparent cells: readable on light and dark (napari) themes
        cell.set_facecolor("none")
        cell.set_edgecolor("0.55")
    return table


def filmstrip_mosaic(strip: Filmstrip) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The strip's thumbnails as one RGBA image, a row per strip and a column per fraction, with transparent gutters
    (the figure's background shows between them); and ``(h, w, step_y, step_x)``: a thumbnail's size and the step
    from one thumbnail to the next, in the image's pixels."""
    thumbs = np.stack([np.asarray(t) for _, t in strip.rows])  # (rows, fractions, h, w[, c])
    n_rows, n_cols, h, w = thumbs.shape[:4]
    if thumbs.ndim == 4:
        thumbs = thumbs[..., None]
    step_y, step_x = h + max(2, round(0.08 * h)), w + max(2, round(0.04 * w))
    out = np.zeros(((n_rows - 1) * step_y + h, (n_cols - 1) * step_x + w, 4), np.uint8)
    for r in range(n_rows):
        for c in range(n_cols):
            tile = out[r * step_y : r * step_y + h, c * step_x : c * step_x + w]
            tile[..., :3] = thumbs[r, c, ..., :3]
            tile[..., 3] = 255
    return out, (h, w, step_y, step_x)


def draw_filmstrip(fig, strip: Filmstrip, highlight: int | None = None, handles: FigureHandles | None = None):
    """The thumbnails as one image (:func:`filmstrip_mosaic`): one row per strip, one column per fraction, the
    strips' titles beside the rows and the fractions under them; the ``highlight`` column framed.

    One axes and one image, not an axes per thumbnail: 32 axes took 0.36 s to build and 0.18 s to render, which held
    the viewer's main thread when a PEPPR result arrived (``benchmarks/bench_ui_stall.py``).
    """
    from matplotlib.patches import Rectangle

    handles = handles or FigureHandles()
    n_rows, n_cols = len(strip.rows), len(strip.fractions)
    if not n_rows:
        return handles
    mosaic, tile = filmstrip_mosaic(strip)
    h, w, step_y, step_x = tile
    ax = fig.add_subplot(1, 1, 1)
    fig.subplots_adjust(left=0.2 if fig.figure.get_figwidth() < 6 else 0.13, right=0.99, bottom=0.08, top=0.92)
    handles.strip_image = ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([c * step_x + (w - 1) / 2 for c in range(n_cols)], [f"{f:g}" for f in strip.fractions])
    ax.set_yticks([r * step_y + (h - 1) / 2 for r in range(n_rows)], [title for title, _ in strip.rows])
    ax.tick_params(length=0, pad=5, labelsize=8)
    ax.patch.set_alpha(0.0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    handles.strip_ax, handles.tile = ax, tile
    pad = 0.02 * min(step_x, step_y)
    handles.frames = [
        ax.add_patch(
            Rectangle(
                (c * step_x - 0.5 - pad, -0.5 - pad),
                w + 2 * pad,
                mosaic.shape[0] + 2 * pad,
                fill=False,
                edgecolor="#f1c40f",
                linewidth=2.5,
                visible=c == highlight,
                clip_on=False,
            )
        )
        for c in range(n_cols)
    ]
    fig.suptitle(
        f"image {strip.image_index}"
        + (f" · {strip.map_name}" if strip.map_name else "")
        + ": map order vs a random order",
        fontsize=8,
        y=0.995,
    )
    return handles


def set_highlight(handles: FigureHandles, column: int | None) -> None:
    """Frame one filmstrip column (None = none) and leave the others plain."""
    for c, frame in enumerate(handles.frames):
        frame.set_visible(c == column)


def draw_peppr_figure(
    fig,
    view: PepprView,
    strip: Filmstrip | None = None,
    fraction: float | None = None,
    title: str | None = None,
    layout: str = "auto",
) -> FigureHandles:
    """The whole PEPPR figure into ``fig``: curves, legend (outside the axes) and summary table, filmstrip below.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Cleared first; any canvas (Agg for files, the panel's Qt canvas).
    view : PepprView
    strip : Filmstrip, optional
    fraction : float, optional
        Marked on the curves and framed in the filmstrip (nearest grid fraction).
    title : str, optional
    layout : {"auto", "wide", "narrow"}
        ``wide``: table and legend beside the curves; ``narrow`` (a napari dock): table and legend under them;
        ``auto`` picks ``wide`` for figures at least 7.5 inches wide.

    Returns
    -------
    FigureHandles
    """
    fig.clear()
    handles = FigureHandles()
    wide = layout == "wide" or (layout == "auto" and fig.get_size_inches()[0] >= 7.5)
    if strip is not None and strip.rows:
        top, bottom = fig.subfigures(2, 1, height_ratios=[1.0 if wide else 1.9, 1.05], hspace=0.02)
    else:
        top, bottom = fig, None
    if wide:  # curves and legend side by side, the table under both (its full width: no column cut off)
        table_share = 0.22 + 0.11 * len(view.rows)  # header + rows at 9 pt, clear of the filmstrip's title
        grid = top.add_gridspec(
            2,
            2,
            width_ratios=[1.6, 1.0],
            height_ratios=[1.0, table_share],
            left=0.08,
            right=0.99,
            bottom=0.02,
            top=0.9,
            wspace=0.06,
            hspace=0.42,
        )
        curves_spec, table_spec, legend_spec = grid[0, 0], grid[1, :], grid[0, 1]
    else:
        grid = top.add_gridspec(
            3, 1, height_ratios=[2.0, 0.34, 0.3], left=0.15, right=0.97, bottom=0.0, top=0.93, hspace=0.36
        )
        curves_spec, table_spec, legend_spec = grid[0], grid[1], grid[2]
    handles.curves_ax = top.add_subplot(curves_spec)
    handles.marker = draw_curves(handles.curves_ax, view, fraction, legend=False)
    handles.table_ax = top.add_subplot(table_spec)
    draw_table(handles.table_ax, view)
    legend_ax = top.add_subplot(legend_spec)
    legend_ax.set_axis_off()
    lines, labels = handles.curves_ax.get_legend_handles_labels()
    if lines:  # legend outside the curves' axes
        legend = legend_ax.legend(
            lines, labels, fontsize=8, loc="upper left", frameon=False, ncol=1 if wide and len(lines) < 9 else 2
        )
        for text in legend.get_texts():  # the theme's text colour (napari's dark theme in the dock)
            text.set_color(handles.curves_ax.xaxis.label.get_color())
    top.suptitle(title or f"PEPPR ({view.fill} fill, {view.n_images} images)", fontsize=9)
    if bottom is not None:
        highlight = None if fraction is None else nearest_index(strip.fractions, fraction)
        draw_filmstrip(bottom, strip, highlight, handles)
    return handles


# ------------------------------------------------------------------------------------- the run's curves figure


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

    from ..io_utils import atomic_path

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
