"""Curves from the curve engine's raw outputs: one ranking's erase/restore curves over a stack (PEPPR's core) and
per-image deletion/insertion (RISE / I-GOS style), both on :class:`~napari_global_xai.peppr.engine.CurveEngine`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import DEFAULT_FRACTIONS, MODES
from ..control import RunControl
from ..metrics import activate, activation_of, auroc, ranking_scores
from ..perturb.rankings import pixel_ranking
from .curves import Curves, PerImageCurves
from .engine import CurveEngine

__all__ = ["erase_restore_curves", "deletion_insertion", "curves_from"]


def _stack_metric(logits: np.ndarray, idx, truth: np.ndarray | None, activation: str) -> np.ndarray:
    """(F, n, L_all) raw outputs -> (F, L): per-label AUROC over the images, or the mean probability."""
    if truth is None:
        return activate(logits, activation)[..., idx].mean(axis=1)
    return auroc(truth, ranking_scores(logits, activation)[..., idx])


def _label_selection(model, label_indices, truth, n_images):
    names = list(model.labels)
    idx = list(range(len(names))) if label_indices is None else [int(i) for i in label_indices]
    if truth is not None:
        truth = np.asarray(truth)
        if truth.ndim == 1:
            truth = truth[:, None]
        if truth.shape != (n_images, len(idx)):
            raise ValueError(f"truth must be (n_images, n_labels) = {(n_images, len(idx))}, got {truth.shape}")
    return idx, [names[i] for i in idx], truth


def curves_from(raw: dict[str, np.ndarray], idx, names, truth, engine, **meta) -> Curves:
    act = activation_of(engine.model)
    curves = {m: _stack_metric(raw[m], idx, truth, act) for m in MODES}
    probs = {m: activate(raw[m], act)[..., idx] for m in MODES}
    return Curves(
        fractions=engine.fractions.copy(),
        erase=curves["erase"],
        restore=curves["restore"],
        metric="auroc" if truth is not None else "mean_probability",
        labels=list(names),
        n_forwards=engine.n_forwards,
        n_skipped=engine.n_skipped,
        fill=engine.fill,
        erase_scores=probs["erase"],
        restore_scores=probs["restore"],
        **meta,
    )


def erase_restore_curves(
    model,
    images,
    ranking: np.ndarray,
    fractions=DEFAULT_FRACTIONS,
    fill: str = "zero",
    truth: np.ndarray | None = None,
    label_indices: Sequence[int] | None = None,
    *,
    control: RunControl | None = None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    fill_sigma: float | None = None,
) -> Curves:
    """Dataset-level erase and restore curves of one pixel ranking shared by every image (PEPPR's core).

    Parameters
    ----------
    model : LoadedModel
    images : array-like, (n, H, W, C) uint8
        Raw harmonised (left-eye frame) pixels, or an indexable lazy stack returning such arrays for index arrays.
    ranking : numpy.ndarray, (H * W,)
        Pixel order, most important first (:func:`pixel_ranking`, :func:`random_ranking`).
    fractions : sequence of float
        Strictly increasing in [0, 1].
    fill : {"zero", "black", "blur", "impute"}
    truth : numpy.ndarray, (n, L), optional
        0/1 ground truth of the evaluated labels; metric = per-label AUROC. Without it the metric is the mean
        predicted probability of each label.
    label_indices : sequence of int, optional
        Model outputs evaluated (columns of ``truth``); default all.
    control : RunControl, optional
        Progress (stage ``"peppr"``, in image forwards) and cancel.
    batch_size, chunk_size : int, optional
        See :class:`CurveEngine`.
    fill_sigma : float, optional
        Blur width for ``fill="blur"``.

    Returns
    -------
    Curves

    Notes
    -----
    methods.md §1.7: with ``k = round(p·H·W)``, erasing replaces the ``k`` top-ranked pixels of every image by the
    fill, restoring keeps only them; both use the same ranking for every image (aligned modality). The fill is
    applied in normalised input space (``zero`` = training mean, the default erase value of §1.7).
    """
    engine = CurveEngine(
        model, images, fractions, fill, batch_size=batch_size, chunk_size=chunk_size, fill_sigma=fill_sigma
    )
    idx, names, truth = _label_selection(model, label_indices, truth, engine.n_images)
    engine.add_request(engine.add_ranking(ranking))
    return curves_from(engine.run(control)[0], idx, names, truth, engine)


def deletion_insertion(
    model,
    images,
    maps: np.ndarray,
    targets: Sequence,
    fractions=DEFAULT_FRACTIONS,
    fill: str = "zero",
    *,
    seed: int = 0,
    control: RunControl | None = None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    fill_sigma: float | None = None,
) -> PerImageCurves:
    """Per-image deletion / insertion curves (RISE / I-GOS style) on the same engine as PEPPR.

    Parameters
    ----------
    model : LoadedModel
    images : array-like, (n, H, W, C)
        Raw harmonised pixels.
    maps : numpy.ndarray, (n, H, W)
        Each image's own saliency map.
    targets : sequence of int or str, (n,)
        Each image's target label (model output index or name).
    fractions : sequence of float
    fill : {"zero", "black", "blur", "impute"}
    seed : int
        Tie-breaking seed of :func:`pixel_ranking`.
    control : RunControl, optional
        Progress (stage ``"deletion"``, in image forwards) and cancel.

    Returns
    -------
    PerImageCurves

    Notes
    -----
    Differences to the published implementations (methods.md §2.5, §3): pixels are ranked at image resolution
    (RISE; I-GOS ranks mask cells), the step grid is ``fractions`` instead of a fixed number of pixels per step, the
    score is the card's activation (sigmoid for multi-label models, not softmax), and the same fill is used for
    deletion and insertion (RISE inserts into a blurred image: pass ``fill="blur"`` for that). Areas use the
    normalised trapezoid rule (:func:`curve_area`), as RISE's ``auc``.
    """
    maps = np.asarray(maps)
    engine = CurveEngine(
        model, images, fractions, fill, batch_size=batch_size, chunk_size=chunk_size, fill_sigma=fill_sigma
    )
    if maps.shape != (engine.n_images, *engine.shape):
        raise ValueError(f"maps must be (n, H, W) = {(engine.n_images, *engine.shape)}, got {maps.shape}")
    names = list(model.labels)
    tgt = np.array([names.index(t) if isinstance(t, str) else int(t) for t in targets], np.int64)
    if len(tgt) != engine.n_images:
        raise ValueError(f"need one target per image ({engine.n_images}), got {len(tgt)}")
    for i in range(engine.n_images):
        engine.add_request(engine.add_ranking(pixel_ranking(maps[i], seed)), images=[i])
    outputs = engine.run(control, stage="deletion")
    act = activation_of(model)
    curves = {m: np.array([activate(out[m][:, 0], act)[:, t] for out, t in zip(outputs, tgt)]) for m in MODES}
    return PerImageCurves(
        fractions=engine.fractions.copy(),
        deletion=curves["erase"],
        insertion=curves["restore"],
        targets=tgt,
        target_names=[names[t] for t in tgt],
        fill=fill,
        n_forwards=engine.n_forwards,
        n_skipped=engine.n_skipped,
    )
