"""Pixel rankings and the masks they define: which pixels a perturbation removes at each fraction.

A *ranking* is a permutation of the flat pixel indices, most important first. At a fraction ``p`` the top
``k = round(p·H·W)`` pixels are erased (``mode="erase"``) or only they are kept (``mode="restore"``). Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import MODES

__all__ = [
    "pixel_ranking",
    "random_ranking",
    "fraction_counts",
    "check_fractions",
    "rank_positions",
    "removed_mask",
    "TIE_STREAM",
    "RANDOM_STREAM",
]

#: Seed streams (the second entry of ``default_rng([seed, stream])``): tie-breaking keys and the random order
#: never share a sequence.
TIE_STREAM, RANDOM_STREAM = 0x7A1E, 0x3A2D


def pixel_ranking(global_map: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pixel order of a map, most important first.

    Parameters
    ----------
    global_map : numpy.ndarray, (H, W)
        Importance per pixel (higher = more important). NaN counts as ``-inf`` (least important).
    seed : int
        Seed of the tie-breaking key.

    Returns
    -------
    numpy.ndarray of int64, (H * W,)
        Flat pixel indices; ``ranking[::-1]`` is the reverse (least important first) order.

    Raises
    ------
    ValueError
        If the map is not 2-D.

    Notes
    -----
    methods.md §1.7 proposes breaking ties with a tiny seeded jitter (cf. ROAD's 1e-4 noise). A jitter can reorder
    two *distinct* values closer than the jitter and cannot break ties between ``-inf`` values, so ties are broken
    instead by a seeded random **secondary sort key** (a random permutation of the pixels): pixels with different
    values keep their order exactly, equal values (including NaN / ``-inf``) are ordered randomly but
    deterministically for a given ``seed``. The key is drawn from a stream (``default_rng([seed, 0x7A1E])``) distinct
    from :func:`random_ranking`'s, so a binary region map's within-region order is not the random baseline's order.
    """
    g = np.asarray(global_map, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"a global map must be 2-D (H, W), got shape {g.shape}")
    g = np.where(np.isnan(g), -np.inf, g).ravel()
    tie_key = np.random.default_rng([int(seed), TIE_STREAM]).permutation(g.size)
    return np.lexsort((tie_key, -g)).astype(np.int64)


def random_ranking(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A random pixel order (the random-order baseline), ``(H * W,)`` int64, reproducible from ``seed``."""
    h, w = shape
    return np.random.default_rng([int(seed), RANDOM_STREAM]).permutation(int(h) * int(w)).astype(np.int64)


def check_fractions(fractions) -> np.ndarray:
    """``fractions`` as a float64 array; ValueError unless strictly increasing, finite and in ``[0, 1]``."""
    f = np.asarray(fractions, dtype=np.float64).ravel()
    if f.size == 0 or np.any(~np.isfinite(f)) or f.min() < 0 or f.max() > 1 or np.any(np.diff(f) <= 0):
        raise ValueError(f"fractions must be strictly increasing values in [0, 1], got {list(fractions)}")
    return f


def fraction_counts(fractions: Sequence[float], n_pixels: int) -> np.ndarray:
    """Pixels per fraction, ``k = round(p * n_pixels)`` with halves rounded up (not to even)."""
    f = check_fractions(fractions)
    return np.floor(f * n_pixels + 0.5).astype(np.int64)


def rank_positions(ranking: np.ndarray, n_pixels: int) -> np.ndarray:
    """Rank position of every pixel (the inverse permutation of ``ranking``).

    Raises
    ------
    ValueError
        If ``ranking`` is not a permutation of ``0 .. n_pixels - 1``.
    """
    r = np.asarray(ranking).ravel()
    if r.size != n_pixels or not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"a ranking must be {n_pixels} integer pixel indices, got {r.size} of dtype {r.dtype}")
    if r.min() < 0 or r.max() >= n_pixels or np.bincount(r, minlength=n_pixels).max() != 1:
        raise ValueError("a ranking must be a permutation of the pixel indices 0 .. H*W-1")
    pos = np.empty(n_pixels, np.int32 if n_pixels < 2**31 else np.int64)
    pos[r] = np.arange(n_pixels)
    return pos


def removed_mask(ranking: np.ndarray, shape: tuple[int, int], mode: str, fraction: float) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels replaced by the fill at one fraction (True = filled).

    ``mode="erase"`` removes the top ``k`` pixels of ``ranking``; ``mode="restore"`` keeps only them.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    h, w = shape
    k = int(fraction_counts([fraction], h * w)[0])
    pos = rank_positions(ranking, h * w)
    removed = pos < k if mode == "erase" else pos >= k
    return removed.reshape(h, w)
