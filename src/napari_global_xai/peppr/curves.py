"""PEPPR curve types and curve read-outs: :class:`Curves`, :class:`PerImageCurves`, :func:`curve_area` and
:func:`restoration_point` (methods.md §1.7 summary scores). The run's result is :class:`~.result.PepprResult`.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..perturb.rankings import check_fractions

__all__ = ["Curves", "PerImageCurves", "curve_area", "restoration_point"]


def curve_area(fractions: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Normalised trapezoid area under a curve (or the columns of ``(F, ...)`` curves).

    Notes
    -----
    ``∫ y dp / (p_max − p_min)`` by the trapezoid rule on the given fractions (RISE's ``auc`` on an even grid;
    methods.md §1.7 summary scores). With fractions spanning [0, 1] this is the plain area, in metric units.
    """
    f = check_fractions(fractions)
    y = np.asarray(values, np.float64)
    if len(f) < 2:
        return y[0] if y.ndim else y
    return np.trapezoid(y, f, axis=0) / (f[-1] - f[0])


def restoration_point(
    fractions: Sequence[float],
    restore: np.ndarray,
    full: float | None = None,
    tolerance: float = 0.01,
    interpolate: bool = True,
) -> float:
    """``p*``: the smallest restored fraction whose metric reaches ``full − tolerance``.

    Parameters
    ----------
    fractions : sequence of float
    restore : (F,) restore curve
    full : float, optional
        The full-image metric; default the curve's value at the largest fraction (p = 1 restores everything).
    tolerance : float
        δ of methods.md §1.7 (0.01, a proposal).
    interpolate : bool
        True: linear interpolation between the last fraction below the target and the first reaching it;
        False: the first grid fraction reaching it.

    Returns
    -------
    float
        NaN when the curve never reaches the target (or is NaN).
    """
    f = check_fractions(fractions)
    y = np.asarray(restore, np.float64)
    full = y[-1] if full is None else full
    if not np.isfinite(full):
        return float("nan")
    target = full - tolerance
    hit = np.nonzero(y >= target)[0]
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0 or not interpolate:
        return float(f[i])
    y0, y1 = y[i - 1], y[i]
    return float(f[i - 1] + (target - y0) / (y1 - y0) * (f[i] - f[i - 1]))


@dataclass
class Curves:
    """Erase and restore curves of one ranking on a stack.

    Attributes
    ----------
    fractions : numpy.ndarray, (F,)
    erase, restore : numpy.ndarray, (F, L)
        Metric per fraction and label.
    metric : {"auroc", "mean_probability"}
    labels : list of str
    n_forwards, n_skipped : int
        Image forwards run / saved by the engine run that produced these curves (shared by all curves of a
        :func:`run_peppr` call).
    fill : str
    map_name, order : str
        Which map and which order (``"true"``, ``"reverse"``, ``"random"``).
    seed : int or None
        Random-order seed.
    erase_scores, restore_scores : numpy.ndarray, (F, n, L), optional
        The probabilities behind the curves.
    """

    fractions: np.ndarray
    erase: np.ndarray
    restore: np.ndarray
    metric: str
    labels: list[str]
    n_forwards: int
    n_skipped: int
    fill: str
    map_name: str = ""
    order: str = "true"
    seed: int | None = None
    erase_scores: np.ndarray | None = field(default=None, repr=False)
    restore_scores: np.ndarray | None = field(default=None, repr=False)

    @property
    def erase_macro(self) -> np.ndarray:
        """(F,) mean over labels (NaN labels skipped)."""
        return _nanmean_rows(self.erase)

    @property
    def restore_macro(self) -> np.ndarray:
        return _nanmean_rows(self.restore)

    def curve(self, mode: str, label: str) -> np.ndarray:
        """(F,) curve of ``mode`` for a label name or ``"macro"``."""
        values = getattr(self, mode)
        if label == "macro":
            return _nanmean_rows(values)
        return values[:, self.labels.index(label)]


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64)
    ok = np.isfinite(values)
    count = ok.sum(axis=1)
    total = np.where(ok, values, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(len(values), np.nan), where=count > 0)


@dataclass
class PerImageCurves:
    """Per-image deletion (erase) and insertion (restore) curves of each image's own map.

    Attributes
    ----------
    fractions : numpy.ndarray, (F,)
    deletion, insertion : numpy.ndarray, (n, F)
        Probability of each image's target label after erasing / restoring its top pixels.
    targets : numpy.ndarray of int, (n,)
        Model output index per image.
    target_names : list of str
    fill : str
    n_forwards, n_skipped : int
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    targets: np.ndarray
    target_names: list[str]
    fill: str
    n_forwards: int
    n_skipped: int

    def areas(self) -> dict[str, np.ndarray]:
        """Per-image normalised trapezoid areas: ``deletion`` (lower = better), ``insertion`` (higher)."""
        return {
            "deletion": curve_area(self.fractions, self.deletion.T),
            "insertion": curve_area(self.fractions, self.insertion.T),
        }

    def summary(self) -> dict[str, float]:
        """Mean areas over images and their difference (insertion − deletion)."""
        a = self.areas()
        d, i = float(np.mean(a["deletion"])), float(np.mean(a["insertion"]))
        return {"deletion": d, "insertion": i, "gap": i - d}
