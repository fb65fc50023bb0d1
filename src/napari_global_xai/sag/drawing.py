"""SAG figures: the graph of one image (roots on top, children below), into a caller's figure or to a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import FIGURE_FORMATS
from .grid import patch_edges, patch_masks
from .result import SagResult

__all__ = ["FIGURE_FORMATS", "draw_sag_figure", "draw_sag", "node_levels"]


def node_levels(result: SagResult, max_levels: int) -> list[list[int]]:
    """Node indices per drawn row: the roots, then each level's not yet seen children (breadth first)."""
    n_roots = len(result.roots)
    levels = [list(range(n_roots))]
    seen = set(levels[0])
    while len(levels) < max_levels:
        nxt = []
        for i in levels[-1]:
            for c in result.nodes[i].children:
                if c not in seen:
                    seen.add(c)
                    nxt.append(c)
        if not nxt:
            break
        levels.append(nxt)
    return levels


def draw_sag_figure(
    fig,
    result: SagResult,
    image_rgb,
    *,
    max_levels: int = 3,
    max_per_row: int = 6,
    dim: float = 0.25,
    label_name: str | None = None,
    image_name: str | None = None,
) -> dict:
    """Draw the SAG into a matplotlib figure the caller owns (a file's Agg canvas, or a dock's Qt canvas).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    result, image_rgb, max_levels, max_per_row, dim
        As in :func:`draw_sag`.
    label_name, image_name : str, optional
        The label's and the image's names for the title (a :class:`SagResult` holds only their indices).

    Returns
    -------
    dict
        ``{axes: node index}`` of every drawn node, so an interactive canvas can tell which node was clicked.
    """
    from matplotlib.patches import Rectangle

    img = np.asarray(image_rgb)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32)
    img = img / max(float(np.percentile(img, 99.5)), 1e-6)  # stretch: UWF pseudo-colour is dark
    h, w = img.shape[:2]
    cols = result.grid[1]
    masks = patch_masks((h, w), result.grid)
    re, ce = patch_edges((h, w), result.grid)
    levels = [lv[:max_per_row] for lv in node_levels(result, max_levels)] if result.nodes else [[]]
    ncol = max(1, max(len(lv) for lv in levels))
    ncol = max(ncol, 2)  # a lone root still gets a readable panel
    nodes = {}
    for li, lv in enumerate(levels):
        for j in range(ncol):
            ax = fig.add_subplot(len(levels), ncol, li * ncol + j + 1)
            ax.set_axis_off()
            if j >= len(lv):
                continue
            node = result.nodes[lv[j]]
            nodes[ax] = lv[j]
            keep = masks[list(node.patches)].any(axis=0) if node.patches else np.zeros((h, w), bool)
            shown = img * np.where(keep, 1.0, dim)[..., None]
            ax.imshow(np.clip(shown, 0, 1), interpolation="nearest")
            for p in node.patches:
                r, c = divmod(p, cols)
                ax.add_patch(
                    Rectangle(
                        (ce[c] - 0.5, re[r] - 0.5),
                        ce[c + 1] - ce[c],
                        re[r + 1] - re[r],
                        fill=False,
                        edgecolor="yellow",
                        linewidth=0.6,
                    )
                )
            kind = "root" if li == 0 else f"−{li}"
            ax.set_title(f"{kind}: {100 * node.relative:.0f} %", fontsize=8)
    label = repr(label_name) if label_name else f"label #{result.label}"
    image = repr(image_name) if image_name else f"image {result.image_index}"
    fig.suptitle(
        f"SAG of {label} on {image}: p(full) = {result.full_confidence:.3f}; % = confidence relative to the full image",
        fontsize=9,
        wrap=True,
    )
    return nodes


def draw_sag(
    result: SagResult,
    image_rgb,
    path,
    *,
    max_levels: int = 3,
    max_per_row: int = 6,
    dim: float = 0.25,
    dpi: int = 110,
    label_name: str | None = None,
    image_name: str | None = None,
) -> None:
    """Draw the SAG: the root row, then rows of children (one patch fewer per row), as PNG, SVG or PDF.

    Each node shows the image with non-selected patches dimmed to ``dim`` × intensity (official: 10 %; 25 % here so
    the anatomy stays readable on dark UWF images), the
    selected patches outlined, and the relative confidence in % as title. Written atomically
    (:func:`~napari_global_xai.io_utils.atomic_path`) with matplotlib's Agg canvas (no pyplot, no GUI); the drawing
    itself is :func:`draw_sag_figure`.

    Parameters
    ----------
    result : SagResult
    image_rgb : numpy.ndarray, (H, W) or (H, W, 3)
        The image in the harmonised frame (same as given to :func:`sag_for_image`).
    path : str or os.PathLike
        Output file; its suffix picks the format (``.png``, ``.svg``, ``.pdf``).
    max_levels : int
        Rows drawn (roots + ``max_levels − 1`` child levels).
    max_per_row : int
        Nodes drawn per row.
    label_name, image_name : str, optional
        Named in the title (else the label's index and the image's stack index).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..io_utils import atomic_path

    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"{path}: SAG figures are written as {', '.join(FIGURE_FORMATS)} (from the file suffix)")
    h, w = np.asarray(image_rgb).shape[:2]
    levels = [lv[:max_per_row] for lv in node_levels(result, max_levels)] if result.nodes else [[]]
    ncol = max(2, max(len(lv) for lv in levels))
    fig = Figure(figsize=(3.6 * ncol, (3.6 * h / w + 0.5) * len(levels) + 0.3), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    draw_sag_figure(
        fig,
        result,
        image_rgb,
        max_levels=max_levels,
        max_per_row=max_per_row,
        dim=dim,
        label_name=label_name,
        image_name=image_name,
    )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt)
