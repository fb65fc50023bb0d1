"""PEPPR front ends: :func:`run_peppr` (arrays in, :class:`PepprResult` out) and the stack pipelines.

The frame is decided **once per pipeline**, here, from the model card: :func:`run_peppr_pipeline` harmonises the
stack to the left-eye frame when ``model.card.harmonise_laterality`` is set (the frame the global maps live in) and
hands that stack on; :func:`run_peppr` and the curve engine use whatever frame they are given and never flip.

Cancel contract: curves need every fraction, but the engine finishes images chunk by chunk, so a cancelled
:func:`run_peppr` raises :class:`~napari_global_xai.control.Cancelled` whose ``partial`` is a :class:`PepprResult`
with ``cancelled=True`` over the images whose chunks finished (complete curves on fewer images), or None when no
chunk finished. :func:`run_peppr_pipeline` returns that partial result (written, marked CANCELLED) and re-raises
only when there is nothing to return.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import PepprConfig
from ..control import Cancelled, RunControl
from ..data.conform import model_frame
from ..perturb.rankings import pixel_ranking, random_ranking
from .curve_functions import curves_from
from .engine import CurveEngine
from .result import PepprResult
from .summary import collect_maps, headlines, map_summary, specificity_matrix, split_note, table_rows

__all__ = ["run_peppr", "run_peppr_pipeline", "run_peppr_from_files", "peppr_truth"]


def run_peppr(
    model,
    images,
    global_maps,
    truth: np.ndarray | None,
    label_names: Sequence[str] | None = None,
    config: PepprConfig | None = None,
    *,
    eval_indices: Sequence[int] | None = None,
    control: RunControl | None = None,
    executor=None,
) -> PepprResult:
    """PEPPR: erase and restore curves of global maps, with random-order, reverse-order and specificity baselines.

    Parameters
    ----------
    model : LoadedModel
    images : array-like, (n, H, W, C)
        Raw pixels in the maps' frame (numpy, or a lazy stack read through ``get``; never flipped here).
    global_maps : GlobalMaps or dict[str, (H, W)]
        A :class:`~napari_global_xai.aggregate.GlobalMaps` contributes every label map plus ``"overall"``.
    truth : numpy.ndarray, (n, L) or None
        0/1 labels of ``label_names`` for all ``n`` images (rows picked by ``eval_indices``); None = the metric is
        the mean predicted probability.
    label_names : sequence of str, optional
        Evaluated labels (truth columns), each a model label; default all model labels.
    config : PepprConfig, optional
        Settings (fractions, fill, random seeds, ``maps_for``, reverse order, specificity, splits, tolerance,
        tie seed, batch and chunk sizes, blur σ); default ``PepprConfig()``. ``maps_for="labelwise"``: a map named
        like a label is judged on that label's metric, any other map (``"overall"``) on every label and the macro
        mean; ``"overall"``: every map on every label and the macro mean. Curves for every label are computed either
        way. ``random_seeds=0``: no random-order baseline.
    eval_indices : sequence of int, optional
        Images evaluated (default all).
    control : RunControl, optional
        Progress (stage ``"peppr"``, in image forwards) and cancel.
    executor : ChunkExecutor, optional
        Where the chunks of images are scored (default this process); a
        :class:`~napari_global_xai.scale.executor.DaskExecutor` scores them on a cluster. The per-image scores are
        gathered here and each AUROC is computed once, so the curves are the same as in-process.

    Returns
    -------
    PepprResult

    Raises
    ------
    Cancelled
        When cancelled; ``partial`` is a :class:`PepprResult` with ``cancelled=True`` over the images finished,
        or None.

    Notes
    -----
    Reconstruction of methods.md §1.7 (only the paper's abstract is available; every item below is our choice):

    * ranking: :func:`~napari_global_xai.perturb.pixel_ranking` of each global map at full image resolution, ties
      broken by a seeded secondary key; reverse order = the ranking reversed; random order =
      :func:`~napari_global_xai.perturb.random_ranking` per seed (≥ 5 seeds by default, mean ± sample sd);
    * masks: ``k = round(p·H·W)`` top pixels, the same mask for every image; erase removes them, restore keeps only
      them; fill in normalised space (``zero`` = training mean per channel by default);
    * metric: per-label AUROC over the evaluated images (:func:`~napari_global_xai.metrics.auroc`, equal to
      sklearn's ``roc_auc_score``; NaN for a label with one class) and the macro mean over labels (NaN labels
      skipped); without truth the mean predicted probability.
      AUROC is computed on the logits (sigmoid models) or log-softmax (softmax models): the same order as the
      probabilities, but float32 probabilities of confident predictions round to exactly 1.0 (logit ≳ 17) and
      would become ties, which pulls AUROC towards 0.5 on a confident model;
    * summary: normalised trapezoid areas, gap = A_restore − A_erase, differences to the random order's mean, and
      ``p_star`` (see :func:`~napari_global_xai.peppr.summary.summarise`); the reverse order's areas are added;
    * specificity: computed from **both** curves, label map a × label b: A_erase and A_restore matrices and their
      gains over the random order (``erase_gain`` = random A_erase(b) − A_erase(a, b), ``restore_gain`` =
      A_restore(a, b) − random A_restore(b)); a specific map has its largest gains on the diagonal. It costs no
      extra forward: every forward scores all labels;
    * one engine run serves every map, order and seed, so the unmodified images and the constant fully filled
      image are forwarded once for all of them, and a map's reverse-order masks that coincide with its own
      restore masks are not forwarded twice;
    * circularity: the split that built the maps and the evaluated split are recorded as given (methods.md §1.6).
    """
    t0 = time.perf_counter()
    cfg = config or PepprConfig()
    names = list(model.labels)
    label_names = list(names if label_names is None else label_names)
    missing = [n for n in label_names if n not in names]
    if missing:
        raise ValueError(f"labels {missing} are not outputs of the model (outputs: {names})")
    label_idx = [names.index(n) for n in label_names]
    engine = CurveEngine(
        model,
        images,
        cfg.fractions,
        cfg.fill,
        batch_size=cfg.batch_size,
        chunk_size=cfg.chunk_size,
        fill_sigma=cfg.fill_sigma,
    )
    evaluated = None if eval_indices is None else np.asarray(eval_indices, np.int64)
    if truth is not None:
        truth = np.asarray(truth)
        truth = truth[:, None] if truth.ndim == 1 else truth
        if truth.shape != (engine.n_images, len(label_names)):
            raise ValueError(
                f"truth must be (n_images, n_labels) = {(engine.n_images, len(label_names))}, got {truth.shape}"
            )
    maps = collect_maps(global_maps, engine.shape)

    jobs = []  # (request id, map name, order, seed)
    for name, m in maps.items():
        rid = engine.add_ranking(pixel_ranking(m, cfg.tie_seed))
        jobs.append((engine.add_request(rid, images=evaluated), name, "true", None))
        if cfg.include_reverse:
            jobs.append((engine.add_request(rid, reverse=True, images=evaluated), name, "reverse", None))
    for s in range(cfg.random_seeds):
        rid = engine.add_ranking(random_ranking(engine.shape, s))
        jobs.append((engine.add_request(rid, images=evaluated), "random", "random", s))
    every = np.arange(engine.n_images) if evaluated is None else evaluated
    try:
        outputs = engine.run(control, executor=executor)
    except Cancelled as exc:
        outputs, finished = exc.partial
        columns = np.nonzero(np.isin(every, finished))[0]
        partial = None
        if len(columns):
            partial = _assemble(engine, outputs, jobs, columns, every, truth, label_idx, label_names, maps, cfg, t0)
            partial.cancelled, partial.n_requested = True, len(every)
        raise Cancelled(f"PEPPR cancelled after {len(columns)} of {len(every)} images", partial) from None
    return _assemble(
        engine,
        outputs,
        jobs,
        None,
        every,
        truth,
        label_idx,
        label_names,
        maps,
        cfg,
        t0,
        keep_indices=evaluated is not None,
    )


def _assemble(
    engine, outputs, jobs, columns, every, truth, label_idx, label_names, maps, cfg, t0, keep_indices=True
) -> PepprResult:
    """Curves, summaries and tables from the engine's outputs, on all evaluated images or on ``columns`` of them."""
    if columns is not None:
        outputs = [{m: v[:, columns] for m, v in out.items()} for out in outputs]
        every = every[columns]
    rows = every
    truth = None if truth is None else truth[rows]
    curves, reverse, random = {}, {}, []
    for rid, name, order, seed in jobs:
        c = curves_from(outputs[rid], label_idx, label_names, truth, engine, map_name=name, order=order, seed=seed)
        if order == "random":
            random.append(c)
        else:
            (curves if order == "true" else reverse)[name] = c
    summary = {name: map_summary(c, reverse.get(name), random, cfg.tolerance) for name, c in curves.items()}
    headline = headlines(list(maps), label_names, cfg.maps_for)
    return PepprResult(
        fractions=engine.fractions.copy(),
        labels=label_names,
        metric="auroc" if truth is not None else "mean_probability",
        fill=cfg.fill,
        maps=list(maps),
        headline=headline,
        curves=curves,
        reverse=reverse,
        random=random,
        summary=summary,
        table=table_rows(summary, headline),
        specificity=specificity_matrix(summary, list(maps), label_names) if cfg.specificity else {},
        split_note=split_note(cfg.map_split, cfg.eval_split),
        n_images=len(rows),
        n_forwards=engine.n_forwards,
        n_skipped=engine.n_skipped,
        seconds=time.perf_counter() - t0,
        eval_indices=rows if (keep_indices or columns is not None) else None,
    )


def peppr_truth(stack, model, label_names=None):
    """Evaluated labels and their ``(n, L)`` ground truth (None without a labels table).

    With a labels table only labels that have ground truth are scored (matched by name, case-insensitively); the
    model labels skipped for want of a column are named in an :class:`~napari_global_xai.data.InputNotice`.
    Without a table every label (or ``label_names``) is evaluated on its mean probability (truth None).

    Raises
    ------
    ValueError
        If ``label_names`` asks for labels the table has no column for. (When no model label has a column, every
        label is evaluated on its mean probability, with a notice.)
    """
    from ..data.labels import missing_truth_message

    if stack.labels is None:
        return (list(label_names) if label_names is not None else list(model.labels)), None
    wanted = list(label_names) if label_names is not None else list(model.labels)
    table = stack.labels.matched_to(wanted)
    if table.missing and label_names is not None:
        raise ValueError(
            f"PEPPR needs ground truth for the labels it scores, but {missing_truth_message(table.missing)}"
        )
    from ..data.labels import InputNotice

    if not table.names:
        warnings.warn(
            f"{missing_truth_message(table.missing)}: PEPPR scores every label on its mean predicted "
            "probability instead of AUROC",
            InputNotice,
            stacklevel=2,
        )
        return wanted, None
    if table.missing:
        warnings.warn(
            f"PEPPR scores only labels with ground truth: skipped {', '.join(map(repr, table.missing))} "
            "(no column in the labels table)",
            InputNotice,
            stacklevel=2,
        )
    return list(table.names), np.stack([table.column(n) for n in table.names], axis=1)


def _split_indices(stack, split: str | None):
    if split is None:
        return None
    table = stack.labels
    if table is None or table.split is None:
        raise ValueError(f"eval_split={split!r} needs a 'split' column in the labels table")
    idx = np.nonzero(np.asarray(table.split) == split)[0]
    if len(idx) == 0:
        raise ValueError(f"no image has split {split!r}; splits present: {sorted(set(map(str, table.split)))}")
    return idx


def run_peppr_pipeline(
    stack,
    model,
    global_maps,
    config: PepprConfig | None = None,
    *,
    labels=None,
    out_dir: str | Path | None = None,
    control: RunControl | None = None,
    executor=None,
) -> PepprResult:
    """PEPPR of global maps on an aligned stack: curves, random/reverse baselines, scores, figure and files.

    Parameters
    ----------
    stack : AlignedStack
        Any frame: harmonised to the left-eye frame here (once) when the model card asks for it, the frame the
        maps live in; otherwise used as stored.
    model : LoadedModel
    global_maps : GlobalMaps or dict name -> (H, W)
    config : PepprConfig, optional
        Settings (default ``PepprConfig()``); ``eval_split`` evaluates only images of that split (labels ``split``
        column) and ``map_split`` records which split built the maps (both appear in the result's ``split_note``);
        ``filled_fractions`` are the fractions of the written erased/restored images.
    labels : list of str, optional
        Labels scored (default: model outputs present in the labels table).
    out_dir : path, optional
        Writes ``peppr_curves.csv``, ``peppr_summary.json``, ``peppr.png`` and the erased/restored images of the
        overall map at ``filled_fractions`` (``erased_overall.tif``, ``restored_overall.tif``).
    control : RunControl, optional
        Progress (stage ``"peppr"``) and cancel.
    executor : ChunkExecutor, optional
        Where the chunks of images are scored (see :func:`run_peppr`).

    Returns
    -------
    PepprResult
        ``cancelled=True`` after a cancel with at least one finished chunk of images (written, marked CANCELLED;
        the filled-image TIFFs are then not written).

    Raises
    ------
    Cancelled
        When cancelled before any chunk finished (nothing written).
    OutputFolderError
        ``out_dir`` cannot be written (checked before any model pass).
    """
    from ..data.conform import fit_stack_to_model

    control = control or RunControl()
    cfg = config or PepprConfig()
    if out_dir is not None:
        from ..io_utils import check_output_folder

        check_output_folder(out_dir)
    stack = fit_stack_to_model(stack, model.card)
    model.check_input(stack.shape)
    frame_stack = model_frame(stack, model.card)
    names, truth = peppr_truth(frame_stack, model, labels)
    eval_idx = _split_indices(frame_stack, cfg.eval_split)
    cfg = dataclasses.replace(cfg, eval_split=cfg.eval_split or ("all images" if eval_idx is None else None))
    try:
        result = run_peppr(
            model,
            frame_stack,
            global_maps,
            truth,
            names,
            cfg,
            eval_indices=eval_idx,
            control=control,
            executor=executor,
        )
    except Cancelled as exc:
        if not isinstance(exc.partial, PepprResult):
            raise
        result = exc.partial
    if out_dir is not None:
        from .filled import write_filled_tiff
        from .result import filled_file

        result.write(out_dir)
        if not result.cancelled:
            maps = collect_maps(global_maps, frame_stack.shape[1:3])
            name = "overall" if "overall" in maps else next(iter(maps))
            ranking = pixel_ranking(maps[name])
            sample = frame_stack.get(np.arange(min(8, len(frame_stack))))
            for mode in ("erase", "restore"):
                path = Path(out_dir) / filled_file(mode, name)
                write_filled_tiff(path, model, sample, ranking, cfg.filled_fractions, cfg.fill, mode)
    return result


def run_peppr_from_files(
    stack,
    model,
    global_maps_from,
    out_dir,
    config: PepprConfig | None = None,
    *,
    control: RunControl | None = None,
    executor=None,
) -> tuple[str, PepprResult]:
    """CLI helper: read the global maps, run :func:`run_peppr_pipeline`; returns ``(printable summary, result)``.

    ``global_maps_from`` is what :func:`~napari_global_xai.explain.result.open_explain` reads: an explain results
    folder, its store, or a global maps TIFF. The output folder is checked before the maps are read; ``control``
    and ``executor`` (a cluster run) are passed on.
    """
    from ..explain.result import open_explain
    from ..io_utils import check_output_folder
    from .summary import summary_text

    check_output_folder(out_dir)
    gm = open_explain(global_maps_from).global_maps
    result = run_peppr_pipeline(stack, model, gm, config, out_dir=out_dir, control=control, executor=executor)
    text = summary_text(result)
    return text, result
