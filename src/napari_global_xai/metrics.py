"""Metrics shared by every module: one AUROC, and the model's activation decided in one place.

``auroc`` serves PEPPR's curves, the concept faithfulness of :mod:`napari_global_xai.concepts` and the demo model's
held-out check; ``activation_of(model)`` reads the loaded model's card once (sigmoid multi-label or softmax
multi-class) and ``activate`` / ``ranking_scores`` turn raw outputs into probabilities or into AUROC inputs.
Torch-free (numpy and scipy).
"""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "activation_of", "activate", "ranking_scores"]


def auroc(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-label ROC AUC of many score sets at once (Mann–Whitney U with average ranks for ties).

    Parameters
    ----------
    truth : (n, L) array of 0/1
    scores : (..., n, L) array
        Higher = more likely positive.

    Returns
    -------
    numpy.ndarray, (..., L)
        NaN for a label whose truth has a single class.

    Notes
    -----
    Equals sklearn's ``roc_auc_score`` per column, ties counted as one half (checked in the tests), but ranks every
    fraction and label in one vectorised call instead of one sklearn call each: with sklearn's input validation the
    metric took ~10 % of a PEPPR run on a small CPU model.
    """
    from scipy.stats import rankdata

    truth = np.asarray(truth).astype(bool)
    n_pos = truth.sum(axis=0).astype(np.float64)
    n_neg = truth.shape[0] - n_pos
    ranks = rankdata(np.asarray(scores, np.float64), axis=-2)
    rank_sum = np.where(truth, ranks, 0.0).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), out, np.nan)


def activation_of(model) -> str:
    """The loaded model's output activation, ``"sigmoid"`` or ``"softmax"`` (its card's; sigmoid without a card)."""
    return getattr(getattr(model, "card", None), "activation", "sigmoid")


def activate(logits: np.ndarray, activation: str = "sigmoid") -> np.ndarray:
    """Probabilities from raw outputs ``(..., n_outputs)`` in float64 (sigmoid per output, or softmax)."""
    z = np.asarray(logits, np.float64)
    if activation == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def ranking_scores(logits: np.ndarray, activation: str) -> np.ndarray:
    """A score with the same order as each output's probability that does not saturate (AUROC input).

    Sigmoid: the logit itself; softmax: log-softmax. Float32 probabilities round to exactly 1.0 above a logit of
    about 17, which would turn confident predictions into ties.

    Notes
    -----
    The log-softmax normaliser is ``log1p`` of the sum over every output but one largest: written as
    ``log(sum exp(z - max))`` it rounds to exactly 0 once the margin over the runner-up exceeds ~37, and the
    top class's scores would tie again.
    """
    z = np.asarray(logits, np.float64)
    if activation == "softmax":
        m = z.max(axis=-1, keepdims=True)
        e = np.exp(z - m)
        top = np.argmax(z, axis=-1)[..., None]
        np.put_along_axis(e, top, 0.0, axis=-1)  # the largest output contributes exp(0) = 1: log1p below
        return z - m - np.log1p(e.sum(axis=-1, keepdims=True))
    return z
