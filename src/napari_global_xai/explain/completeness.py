"""The completeness error of an explain run's maps, summarised per label for its summary JSON, CLI line and report.

A method that reports it (Integrated Gradients: ``SaliencyMethod.last_completeness``, :mod:`napari_global_xai.saliency`)
gives each raw attribution map its error ``|Σ attribution − (f(x) − f(b))| / |f(x) − f(b)|``: how much of the score
change from the baseline ``b`` to the image ``x`` the map does not account for (0: complete). It is measured on the
raw attribution, before channel reduction and normalisation. Torch-free.
"""

from __future__ import annotations

import numpy as np

__all__ = ["THRESHOLD", "reported", "completeness_summary", "completeness_note"]

#: A map whose error exceeds this is counted in ``above_threshold``: Sundararajan et al. (2017, §5) find "between 20
#: and 300 steps are enough to approximate the integral (within 5%)" and advise checking that the attributions add up
#: to the score difference, with more steps where they do not.
THRESHOLD = 0.05


def reported(values: np.ndarray | None, computed: np.ndarray) -> np.ndarray | None:
    """``values`` when some computed map has a completeness error, else None (the method reports none)."""
    return values if values is not None and np.isfinite(values[computed]).any() else None


def completeness_summary(values: np.ndarray | None, computed: np.ndarray, labels: list[str]) -> dict | None:
    """Per label, the completeness errors of its computed maps; None when the run has none (``null`` in JSON).

    Parameters
    ----------
    values : numpy.ndarray, (n, L) float64, or None
        Each map's error (NaN where none).
    computed : numpy.ndarray, (n, L) bool
    labels : list of str

    Returns
    -------
    dict or None
        ``threshold`` (:data:`THRESHOLD`) and ``per_label``: ``{label: {"maps", "undefined", "median", "p95",
        "max", "above_threshold"}}``, where ``maps`` counts the computed maps with an error, ``undefined`` those
        without one (``f(x) = f(b)``: nothing to account for), ``p95`` is numpy's linear-interpolation 95th
        percentile and ``above_threshold`` counts the maps whose error exceeds the threshold; the statistics are
        NaN (``null``) for a label without any.
    """
    if values is None:
        return None
    per_label = {}
    for j, name in enumerate(labels):
        mine = values[computed[:, j], j]
        finite = mine[np.isfinite(mine)]
        stats = (
            (float(np.median(finite)), float(np.percentile(finite, 95)), float(finite.max()))
            if finite.size
            else (np.nan, np.nan, np.nan)
        )
        per_label[name] = {
            "maps": int(finite.size),
            "undefined": int(mine.size - finite.size),
            "median": stats[0],
            "p95": stats[1],
            "max": stats[2],
            "above_threshold": int((finite > THRESHOLD).sum()),
        }
    return {"threshold": THRESHOLD, "per_label": per_label}


def completeness_note(stats: dict | None, threshold: float = THRESHOLD) -> str:
    """One label's statistics in words (``completeness error median 0.012, 1 of 40 above 0.05``); "" without any."""
    if not stats or not stats.get("maps"):
        return ""
    return (
        f"completeness error median {stats['median']:.3g}, {stats['above_threshold']} of {stats['maps']} "
        f"above {threshold:g}"
    )
