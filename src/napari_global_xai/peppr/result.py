"""What one PEPPR run returns: :class:`PepprResult` (the curves per map, their summary and report table). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .curves import Curves

__all__ = ["PepprResult"]


@dataclass
class PepprResult:
    """Everything one PEPPR run produced.

    Attributes
    ----------
    fractions : numpy.ndarray, (F,)
    labels : list of str
        Evaluated labels (curve columns).
    metric : {"auroc", "mean_probability"}
    fill : str
    maps : list of str
        Evaluated maps, in order.
    headline : dict[str, list[str]]
        Per map, the labels (or ``"macro"``) it is judged on (``maps_for``).
    curves, reverse : dict[str, Curves]
        True-order and reverse-order curves per map.
    random : list of Curves
        Random-order curves, one per seed (shared by every map: they do not depend on it).
    summary : dict
        Per map, :func:`summarise` against the random curves (per label and ``"macro"``), with the reverse order's
        areas added.
    table : list of dict
        One row per (map, headline label): the numbers a report shows.
    specificity : dict
        ``maps`` (label maps), ``labels`` and ``erase`` / ``restore`` area matrices (map a × label b) plus
        ``erase_gain`` = random A_erase(b) − A_erase(a, b) and ``restore_gain`` = A_restore(a, b) − random
        A_restore(b).
    split_note : dict
        Which split built the maps and which is evaluated (the circularity guard), as given.
    n_images, n_forwards, n_skipped : int
        ``n_images``: images the curves are computed on (after a cancel, those finished).
    seconds : float
    eval_indices : numpy.ndarray or None
        Stack indices of the evaluated images (None = all); after a cancel, those finished.
    cancelled : bool
        True for the partial result of a cancelled run: every curve is complete, but only over the images whose
        chunks finished (``n_images`` of ``n_requested``).
    n_requested : int or None
        Images the run was asked to evaluate (None = ``n_images``).
    """

    fractions: np.ndarray
    labels: list[str]
    metric: str
    fill: str
    maps: list[str]
    headline: dict[str, list[str]]
    curves: dict[str, Curves]
    reverse: dict[str, Curves]
    random: list[Curves]
    summary: dict
    table: list[dict]
    specificity: dict
    split_note: dict
    n_images: int
    n_forwards: int
    n_skipped: int
    seconds: float = 0.0
    eval_indices: np.ndarray | None = None
    cancelled: bool = False
    n_requested: int | None = None

    def random_band(self, mode: str, label: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sample standard deviation (over seeds) of the random-order curve, ``(F,)`` each."""
        stack = np.array([c.curve(mode, label) for c in self.random])
        if len(stack) == 0:
            nan = np.full(len(self.fractions), np.nan)
            return nan, nan
        sd = stack.std(axis=0, ddof=1) if len(stack) > 1 else np.zeros(stack.shape[1])
        return stack.mean(axis=0), sd
