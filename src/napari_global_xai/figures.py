"""PNG figures (matplotlib, Agg canvas, no pyplot state): global maps over the mean anatomy, and
:func:`save_figure` (one drawing function to one PNG, written atomically; the analyses' pipelines use it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["anatomy_rgb", "map_scale", "save_figure", "save_global_map_overlays"]


def anatomy_rgb(anatomy: np.ndarray) -> np.ndarray:
    """Mean anatomy image ``(H, W[, C])`` → displayable float RGB in [0, 1] (each channel stretched together)."""
    a = np.asarray(anatomy, np.float64)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 2:
        a = np.concatenate([a, np.zeros_like(a[..., :1])], axis=-1)
    a = a[..., :3]
    lo, hi = np.nanpercentile(a, 1), np.nanpercentile(a, 99.5)
    return np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1)


def map_scale(normalisation: str | None, vmax: float) -> tuple[float, str]:
    """``(factor, label)`` of a global map's colour bar: ticks show ``value × factor`` and the label says what that
    is, so a scale reads as a quantity (not ``0.000025 … 0.000175 map value``).

    ``mass`` (each image-wise map sums to 1): the share of the map's mass per pixel, in a power of ten chosen from
    ``vmax`` (e.g. "share of the map's mass per pixel, × 10⁻⁵"); ``max``: the share of each image's peak; anything
    else: the method's raw attribution (after channel reduction).
    """
    if normalisation == "mass":
        exponent = int(np.floor(np.log10(vmax))) if vmax > 0 else 0
        sup = str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
        return 10.0**-exponent, "share of the map's mass per pixel" + (f", × 10{sup}" if exponent else "")
    if normalisation == "max":
        return 1.0, "mean share of each image's peak value"
    return 1.0, "attribution (raw, after channel reduction)"


def save_figure(path: str | Path, draw, *args, size=(8, 5)) -> Path:
    """Call ``draw(fig, *args)`` on a new ``size``-inch figure (110 dpi); write it to ``path`` as a PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .io_utils import atomic_path

    fig = Figure(figsize=size, dpi=110)
    FigureCanvasAgg(fig)
    draw(fig, *args)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def save_global_map_overlays(
    anatomy: np.ndarray,
    maps: dict[str, np.ndarray],
    path: str | Path,
    title: str = "",
    shared_scale: bool = True,
    cmap: str = "inferno",
    normalisation: str | None = None,
) -> Path:
    """One panel per map: the map (perceptual colormap, opacity rising with the value) over the grey anatomy.

    Parameters
    ----------
    anatomy : (H, W[, C]) array
    maps : dict name -> (H, W) array
    shared_scale : bool
        One colour scale for every panel (maps stay comparable), else per-panel scaling.
    normalisation : str, optional
        The image-wise maps' normalisation: the colour bar's unit and scale (:func:`map_scale`).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from .io_utils import atomic_path

    rgb = anatomy_rgb(anatomy)
    base = np.repeat((0.3 * rgb[..., :1] + 0.6 * rgb[..., 1:2] + 0.1 * rgb[..., 2:3]) ** 0.8 * 0.75, 3, axis=-1)
    names = list(maps)
    finite = [np.asarray(m, float)[np.isfinite(m)] for m in maps.values()]
    vmax_all = max([np.percentile(f, 99.5) for f in finite if f.size] + [1e-12])
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    colormap = colormaps[cmap]
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        m = np.nan_to_num(np.asarray(maps[name], float), nan=0.0)
        vmax = vmax_all if shared_scale else max(np.percentile(m, 99.5), 1e-12)
        v = np.clip(m / vmax, 0, 1)
        alpha = np.clip(v * 1.3, 0, 0.9)[..., None]
        ax.imshow(base * (1 - alpha) + colormap(v)[..., :3] * alpha)
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
        if not shared_scale or i == len(names) - 1:
            factor, unit = map_scale(normalisation, vmax)
            bar = fig.colorbar(ScalarMappable(Normalize(0, vmax * factor), colormap), ax=ax, shrink=0.8)
            bar.set_label(unit, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path
