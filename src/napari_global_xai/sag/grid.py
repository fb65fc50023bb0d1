"""The SAG patch grid: its size from the aspect ratio, its cells as masks and edges, a saliency map per cell."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["grid_for", "patch_edges", "patch_masks", "patch_saliency"]


def grid_for(image_hw: tuple[int, int], grid: tuple[int, int] | None = None, n_patches: int = 49) -> tuple[int, int]:
    """The patch grid ``(rows, cols)``.

    Parameters
    ----------
    image_hw : (int, int)
    grid : (int, int), optional
        Explicit grid; returned as is (validated).
    n_patches : int
        Target number of patches when ``grid`` is None (official code: 7 × 7 = 49 on 224 × 224).

    Returns
    -------
    (int, int)
        ``cols = round(sqrt(n_patches · W / H))``, ``rows = round(cols · H / W)``: 7 × 7 for a square image,
        6 × 8 for 384 × 512.

    Raises
    ------
    ValueError
        A grid with fewer than one or more cells than pixels along a side.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    if grid is not None:
        rows, cols = (int(v) for v in grid)
    else:
        cols = max(1, round(math.sqrt(n_patches * w / h)))
        rows = max(1, round(cols * h / w))
    if rows < 1 or cols < 1 or rows > h or cols > w:
        raise ValueError(f"invalid patch grid {rows} × {cols} for a {h} × {w} image")
    return rows, cols


def patch_edges(image_hw: tuple[int, int], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column edges of the grid cells: ``round(i · H / rows)``, ``round(j · W / cols)`` (a partition).

    Returns
    -------
    row_edges : numpy.ndarray of int, (rows + 1,)
    col_edges : numpy.ndarray of int, (cols + 1,)
    """
    h, w = image_hw
    rows, cols = grid
    return (np.round(np.linspace(0, h, rows + 1)).astype(int), np.round(np.linspace(0, w, cols + 1)).astype(int))


def patch_masks(image_hw: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Boolean ``(rows·cols, H, W)`` masks; patch ``p = row · cols + col``.

    Notes
    -----
    Patch edges are :func:`patch_edges` (a partition of the image, "nearest" upsampling of the grid). The official
    code upsamples the 7 × 7 selection bilinearly, which softens patch borders; hard patches keep every pixel either
    the image or the fill (documented adaptation).
    """
    h, w = image_hw
    rows, cols = grid
    re, ce = patch_edges((h, w), (rows, cols))
    masks = np.zeros((rows * cols, h, w), bool)
    for r in range(rows):
        for c in range(cols):
            masks[r * cols + c, re[r] : re[r + 1], ce[c] : ce[c + 1]] = True
    return masks


def patch_saliency(saliency: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean of a ``(H, W)`` saliency map over each patch: ``(rows·cols,)`` (higher = more salient).

    A ``(c, H, W)`` map is reduced to ``sum_c |map|`` first.
    """
    sal = np.asarray(saliency, dtype=np.float64)
    if sal.ndim == 3:
        sal = np.abs(sal).sum(axis=0)
    masks = patch_masks(sal.shape, grid)
    return np.array([sal[m].mean() for m in masks])
