"""PEPPR outputs: curve figure (PNG), long-format curves (CSV), summary (JSON), erased/restored images (TIFF).

Everything is written atomically (:func:`napari_global_xai.io_utils.atomic_path`): a file appears whole or not at
all. Figures use matplotlib's object API with the Agg canvas, so no pyplot global state is touched (safe inside
napari and in worker threads).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .io_utils import atomic_path, atomic_write_text
from .peppr import MODES, Curves, PepprResult, apply_fill, removed_mask

__all__ = ["plot_peppr", "draw_panel", "summary_text", "write_peppr", "curves_rows", "summary_dict", "filled_images", "write_filled_tiff",
           "CSV_COLUMNS"]

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
            ax.plot(f, mean, color=colour, alpha=0.55, linewidth=1,
                    label=f"random {mode} (A={block[f'random_A_{mode}']:.3f})")
        if map_name in result.reverse:
            ax.plot(f, result.reverse[map_name].curve(mode, label), color=colour, linestyle="--", linewidth=1,
                    label=f"reverse {mode} (A={block[f'reverse_A_{mode}']:.3f})")
        ax.plot(f, result.curves[map_name].curve(mode, label), color=colour, linewidth=2, marker="o", markersize=3,
                label=f"map {mode} (A={block[f'A_{mode}']:.3f})")
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
    for ax in axes[len(panels):]:
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
    lines = [f"PEPPR on {result.n_images} images ({result.metric}, {result.fill} fill, {len(result.fractions)} "
             f"fractions, {len(result.random)} random seeds): {result.n_forwards} forwards, {result.n_skipped} "
             f"skipped, {result.seconds:.1f} s",
             f"split: {result.split_note.get('note', '')}",
             f"{'map':>18s} {'label':>18s}  A_erase A_restore    gap  random gap (sd)  d_erase d_restore    p*"]
    for row in result.table:
        lines.append(
            f"{row['map']:>18s} {row['label']:>18s}  {_fmt(row['A_erase'])}     {_fmt(row['A_restore'])}  "
            f"{_fmt(row['gap'], '+.3f')}  {_fmt(row.get('random_gap'), '+.3f')} ({_fmt(row.get('random_gap_sd'))})  "
            f"{_fmt(row.get('d_erase'), '+.3f')}    {_fmt(row.get('d_restore'), '+.3f')} {_fmt(row['p_star'])}")
    return "\n".join(lines)


def _curve_rows(curves: Curves, map_name: str):
    for mode in MODES:
        for label in list(curves.labels) + ["macro"]:
            for p, value in zip(curves.fractions, curves.curve(mode, label)):
                yield (map_name, curves.order, "" if curves.seed is None else curves.seed, mode, float(p), label,
                       float(value))


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


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def summary_dict(result: PepprResult) -> dict:
    """The JSON-ready summary of a run (NaN written as null)."""
    return _jsonable({
        "method": "PEPPR (reconstruction, methods.md §1.7)",
        "metric": result.metric, "fill": result.fill, "fractions": result.fractions, "labels": result.labels,
        "maps": result.maps, "headline": result.headline, "table": result.table, "summary": result.summary,
        "specificity": result.specificity, "split": result.split_note, "n_images": result.n_images,
        "random_seeds": [c.seed for c in result.random], "n_forwards": result.n_forwards,
        "n_skipped": result.n_skipped, "seconds": result.seconds,
        "eval_indices": None if result.eval_indices is None else result.eval_indices,
    })


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
    atomic_write_text(paths["summary"], json.dumps(summary_dict(result), indent=2) + "\n")
    if plot:
        paths["figure"] = plot_peppr(result, out / "peppr.png")
    return paths


# ---------------------------------------------------------------------------------------- erased / restored images


def _normalisation(model, images: np.ndarray):
    """(normalised (n, c, H, W) tensor, mean, std, pixel scale) on the CPU; identity without a model."""
    if model is None:
        arr = np.asarray(images, np.float32)
        arr = arr[..., None] if arr.ndim == 3 else arr
        c = arr.shape[-1]
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), [0.0] * c, [1.0] * c, 1.0
    card = model.card
    return model.preprocess(images, device=torch.device("cpu")).contiguous(), card.mean, card.std, card.pixel_scale


def filled_images(model, images, ranking: np.ndarray, fractions: Sequence[float], fill: str = "zero",
                  mode: str = "erase", *, fill_sigma: float | None = None, seed: int = 0) -> np.ndarray:
    """Erased or restored images at chosen fractions, in raw pixel space, for display or TIFF export.

    Parameters
    ----------
    model : LoadedModel or None
        Its card gives the input channels, ``mean``, ``std`` and ``pixel_scale``; without a model all channels are
        used and the fill is applied to the raw values (``zero`` and ``black`` then both mean raw 0).
    images : array-like, (n, H, W, C)
        Raw harmonised pixels.
    ranking : numpy.ndarray, (H * W,)
    fractions : sequence of float
    fill : {"zero", "black", "blur", "impute"}
    mode : {"erase", "restore"}
    fill_sigma : float, optional
    seed : int
        Seed of the ``impute`` noise.

    Returns
    -------
    numpy.ndarray, (n, F, H, W, c)
        uint8 (rounded and clipped to 0..255) when ``images`` are uint8, else float32.

    Notes
    -----
    The fill is applied as in the curve engine (:func:`napari_global_xai.peppr.apply_fill` on normalised inputs,
    same masks) and mapped back with ``raw = (x * std + mean) * pixel_scale``; for ``zero`` that is the training mean
    intensity of each channel. Only the ``impute`` noise draws differ from the engine's (seeded per image here).
    """
    images = np.asarray(images)
    x, mean, std, scale = _normalisation(model, images)
    h, w = x.shape[-2:]
    m = torch.as_tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    out = []
    for p in fractions:
        removed = torch.from_numpy(removed_mask(ranking, (h, w), mode, p))
        y = apply_fill(x, removed, fill, mean=mean, std=std, sigma=fill_sigma,
                       noise_seeds=[seed + i for i in range(len(x))])
        out.append(((y * s + m) * scale).permute(0, 2, 3, 1).numpy())
    result = np.stack(out, axis=1)
    if images.dtype == np.uint8:
        return np.clip(np.rint(result), 0, 255).astype(np.uint8)
    return result.astype(np.float32)


def write_filled_tiff(path: str | Path, model, images, ranking: np.ndarray, fractions: Sequence[float],
                      fill: str = "zero", mode: str = "erase", **kwargs) -> Path:
    """Write :func:`filled_images` as an ImageJ hyperstack TIFF (T = image, Z = fraction, C = channel), atomically.

    The fractions, fill and mode are stored in the ImageJ metadata (``Info``).
    """
    import tifffile

    data = filled_images(model, images, ranking, fractions, fill, mode, **kwargs)   # (n, F, H, W, c)
    data = np.ascontiguousarray(np.moveaxis(data, -1, 2))                             # (n, F, c, H, W)
    info = json.dumps({"mode": mode, "fill": fill, "fractions": [float(p) for p in fractions]})
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, metadata={"axes": "TZCYX", "Info": info})
    return path
