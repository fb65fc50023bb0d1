"""The explain job: image-wise maps of a stack, aggregated into label-wise and overall global maps.

The door is :func:`run_explain`, shared by the CLI (``global-xai explain``) and the Explain dock. It follows the run
contract of :mod:`napari_global_xai.control`: a ``control=RunControl``, chunk by chunk, and on cancel the result with
what it finished, marked ``cancelled=True``. The frame a model reads is decided once, from its card
(:func:`~napari_global_xai.data.conform.model_frame`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..aggregate import GlobalMapAccumulator
from ..config import ExplainConfig
from ..control import RunControl, status_of
from ..data.conform import fit_stack_to_model, model_frame
from ..data.labels import missing_truth_message
from ..io_utils import writing
from ..saliency.engine import ImageMapEngine
from .completeness import reported
from .result import FILES, ExplainResult, count_per_label, open_map_writer

__all__ = ["run_explain", "resolve_targets", "result_checks"]


def resolve_targets(model_labels: list[str], targets) -> list[str]:
    """Validate target label names against the model's labels (``None`` = all)."""
    if targets is None:
        return list(model_labels)
    targets = [targets] if isinstance(targets, str) else list(targets)
    unknown = [t for t in targets if t not in model_labels]
    if unknown:
        from ..errors import UsageError

        raise UsageError(f"unknown target label(s) {unknown}; the model's labels are {model_labels}")
    return targets


def _truth_for(stack, targets: list[str]) -> tuple[np.ndarray | None, np.ndarray]:
    """Ground truth ``(n, T)`` of the targets (0 where unknown) and which targets have it, ``known (T,)``.

    The stack's labels table is matched to the targets by name (case-insensitive, see
    :meth:`~napari_global_xai.data.LabelsTable.matched_to`); without a table the truth is None and nothing is known.
    """
    known = np.zeros(len(targets), bool)
    if stack.labels is None:
        return None, known
    table = stack.labels.matched_to(targets)
    truth = np.zeros((len(stack), len(targets)), np.uint8)
    for j, name in enumerate(targets):
        if name in table.names:
            truth[:, j], known[j] = table.column(name), True
    return truth, known


def _resolve_subset(subset: str, truth, known: np.ndarray, targets: list[str]) -> str:
    """The subset rule used (``auto`` resolved); refuses truth-based rules when a target has no ground truth.

    Notes
    -----
    ``auto`` with a labels table is ``positive``; a target without a column then falls back, alone, to predicted
    positives (:func:`select_pairs` with ``known``), with an :class:`~napari_global_xai.data.InputNotice` naming it.
    """
    missing = [t for t, k in zip(targets, known) if not k]
    if subset == "auto":
        if truth is None:
            return "predicted"
        if missing:
            from ..data.labels import InputNotice

            warnings.warn(
                f"{missing_truth_message(missing)}: their global maps use the images predicted positive "
                "instead of ground truth (the other labels use ground truth); map a column to a label "
                "with label_map / --label-map CSV_NAME=MODEL_NAME",
                InputNotice,
                stacklevel=3,
            )
        return "positive"
    if subset in ("positive", "true_positive") and truth is not None and missing:
        raise ValueError(
            f"subset {subset!r} needs ground truth for every target label, but "
            f"{missing_truth_message(missing)}; map a column with --label-map CSV_NAME=MODEL_NAME "
            "(label_map=...), leave the label out with --targets, or use subset 'auto'"
        )
    return subset


def _refuse_nothing_to_explain(subset: str, compute: str, truth, known: np.ndarray, targets: list[str]) -> None:
    """Refuse, before any model pass, a run whose subset holds no image for any target and computes only the subset.

    Raises
    ------
    InputError
        ``positive`` / ``true_positive`` with ground truth for every target and no positive image for any of them.
    """
    if subset not in ("positive", "true_positive") or compute != "subset" or truth is None or not known.all():
        return
    if len(truth) and truth.any():
        return
    from ..errors import InputError

    raise InputError(
        f"no image is positive for any target label ({', '.join(targets)}) in the labels table, so subset "
        f"{subset!r} selects no image and every global map would be empty; check the labels CSV, or use --subset "
        "all / predicted (subset='all' / 'predicted')"
    )


def result_checks(probabilities, computed, include, zero, global_maps, stack, subset: str) -> dict:
    """What makes a finished run partly (or wholly) meaningless, each said once as a one-line
    :class:`~napari_global_xai.errors.ResultWarning`; returned for the provenance.

    Returns
    -------
    dict
        ``result_warnings`` (the lines) and ``result_meaningless`` (a line when no label has a map and no
        image-wise map was computed beyond them, or every image's probabilities are NaN or infinite; else None).
    """
    from ..errors import ResultWarning

    lines, fatal = [], None
    bad = ~np.isfinite(probabilities).all(axis=1)  # a finished run predicted every image
    if bad.any():
        ids = [stack.image_ids[i] for i in np.flatnonzero(bad)[:3]] + (["…"] if bad.sum() > 3 else [])
        lines.append(
            f"the model's probabilities are NaN or infinite for {int(bad.sum())} of {len(bad)} images "
            f"({', '.join(ids)}): their predictions and maps are meaningless (they never count as predicted "
            "positive); check the model and its card's mean, std and pixel_scale"
        )
        if bad.all():
            fatal = lines[-1]
    empty = []
    for j, name in enumerate(global_maps.labels):
        if global_maps.count[j]:
            continue
        selected, zeros = int(include[:, j].sum()), int((zero[:, j] & include[:, j]).sum())
        why = f"all {zeros} maps all-zero" if selected and zeros == selected else f"no image in subset {subset!r}"
        empty.append(f"{name} ({why})")
    if empty:
        its = "its global map is" if len(empty) == 1 else "their global maps are"
        lines.append(f"no map for label{'s' * (len(empty) > 1)} {', '.join(empty)}: {its} empty (NaN)")
        if len(empty) == len(global_maps.labels) and not (computed & ~include).any() and fatal is None:
            fatal = f"no label has a map, so every global map is empty (NaN): {', '.join(empty)}"
    for line in lines:
        warnings.warn(line, ResultWarning, stacklevel=3)
    return {"result_warnings": lines, "result_meaningless": fatal}


def run_explain(
    stack,
    model,
    config: ExplainConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    control: RunControl | None = None,
    out_format: str | None = None,
    map_dtype: str | None = None,
    overwrite: bool = False,
    executor=None,
) -> ExplainResult:
    """Image-wise maps for a stack, aggregated into label-wise and overall global maps.

    Parameters
    ----------
    stack : AlignedStack
        Any frame; the maps are computed in the model's frame (:func:`~napari_global_xai.data.conform.model_frame`:
        left-eye when the card harmonises laterality, else as stored), recorded as ``provenance["frame"]``.
    model : LoadedModel
    config : ExplainConfig, optional
    out_dir : path, optional
        When given, the run writes its results folder (:mod:`.result`): image-wise maps stream in chunk by chunk
        (never all in memory); the global maps, predictions, summary, overlay and provenance are written at the
        end (also after a cancel, then marked ``"status": "CANCELLED"``). The folder is checked for writing before
        any model pass.
    control : RunControl, optional
        Progress (stage ``"explain"``, in images, per finished chunk) and cancel.
    out_format : {"zarr", "tiff"}, optional
        Image-wise and global maps in the resumable Zarr store ``out_dir/image_maps.zarr`` (default,
        :mod:`napari_global_xai.store`) or in float32 TIFFs ``image_maps.tif``, ``global_maps.tif`` and
        ``global_std.tif`` (small stacks; a failed run removes its hidden partial file and leaves the folder's
        earlier results untouched; no resume).
    map_dtype : {"float16", "float32"}, optional
        Precision of the stored image-wise maps in the Zarr store (default float16); global maps are always
        computed from the float32 maps.
    overwrite : bool
        Replace a Zarr store written with other settings (otherwise refused); a store with the same settings is
        resumed: its finished chunks are reused, not recomputed.
    executor : ChunkExecutor, optional
        Runs the chunks (:mod:`napari_global_xai.chunks`); default :class:`~napari_global_xai.chunks.InProcessExecutor`.

    Returns
    -------
    ExplainResult

    Raises
    ------
    ModelLoadError
        The model does not fit the stack (checked before any long work).
    UsageError
        Unknown targets, method parameters, output format or map dtype (checked before any long work).
    OutputFolderError
        ``out_dir`` cannot be written, or holds a store of a run with other settings (checked after the options,
        before the model runs); a write failing later names its file.
    InputError
        No image is positive for any target and only the subset's maps are computed (nothing to explain).
    ValueError
        A subset rule that needs labels the stack does not have.

    Warns
    -----
    ResultWarning
        A label whose global map holds no map, or images whose probabilities are NaN or infinite (one line each,
        also in ``provenance["result_warnings"]``; ``provenance["result_meaningless"]`` says when nothing is left).
    """
    from ..chunks import InProcessExecutor
    from ..store.options import check_store_options
    from .task import ChunkOrderMerge, ExplainChunkTask, assemble_chunks

    config = config or ExplainConfig()
    control = control or RunControl()
    progress, cancel = control.report, control.cancel_fn
    out_format, map_dtype = check_store_options(out_format, map_dtype)
    targets = resolve_targets(model.labels, config.targets)
    target_idx = [model.labels.index(t) for t in targets]
    engine = ImageMapEngine(model, config, target_idx)  # validates the method and its parameters early
    if out_dir is not None:  # after the option checks, so a refused option leaves no folder behind
        from ..io_utils import check_output_folder

        check_output_folder(out_dir)
    stack = fit_stack_to_model(stack, model.card)
    model.check_input(stack.shape)
    frame_stack = model_frame(stack, model.card)
    truth, known = _truth_for(frame_stack, targets)
    subset = _resolve_subset(config.subset, truth, known, targets)
    _refuse_nothing_to_explain(subset, config.compute, truth, known, targets)
    n, h, w = len(frame_stack), stack.shape[1], stack.shape[2]
    import torch

    engine.check(torch.zeros(1, model.n_channels, h, w, device=model.device))  # method requirements, before work
    task = ExplainChunkTask(frame_stack, model, config, targets, subset, truth, known)
    task._engine = engine
    target = None if out_dir is None else Path(out_dir) / (FILES.store if out_format == "zarr" else FILES.image_maps)
    with writing(target):  # a failing write names the file (the store, or the image-wise maps TIFF)
        writer = open_map_writer(out_dir, out_format, map_dtype, overwrite, (n, len(targets), h, w), task, stack)
    records = dict(writer.completed())
    pending = [c for c in range(task.n_chunks) if c not in records]
    accumulator = GlobalMapAccumulator(targets, (h, w))
    merge = ChunkOrderMerge(accumulator)
    for c in sorted(records):
        merge.add(c, records[c])
    images_done = sum(len(records[c].indices) for c in records)
    progress(images_done, n, "explain")
    in_chunk = [0]  # maps finished in the chunk being computed (in-process executors report them)

    def on_maps(k: int, selected: int, images: int) -> None:
        in_chunk[0] += k
        progress(images_done + min(images - 1, images * in_chunk[0] // max(selected, 1)), n, "explain")

    cancelled = False
    try:
        for result in (executor or InProcessExecutor()).map_chunks(task, pending, cancel=cancel, on_maps=on_maps):
            in_chunk[0] = 0
            with writing(target):
                writer.write(result)
            result.maps = None  # written: keep only the small per-chunk facts
            records[result.chunk] = result
            merge.add(result.chunk, result)  # merged (and dropped) as soon as every earlier chunk is in
            images_done += len(result.indices)
            progress(images_done, n, "explain")
            cancelled = cancelled or not result.complete
    except BaseException:  # a crash (or a second Ctrl-C): no hidden partial file; a store stays resumable
        writer.abort()
        raise
    cancelled = cancelled or any(c not in records or not records[c].complete for c in range(task.n_chunks))
    assembled = assemble_chunks(records, task, n, len(model.labels))
    probabilities, include, computed, zero, stalled, pairs, completeness = assembled
    merge.finish()
    notes = list(dict.fromkeys([*(engine.notes or []), *(x for r in records.values() for x in r.notes)]))
    truth_missing = [t for t, k in zip(targets, known) if not k] if truth is not None else []
    global_maps = accumulator.result(
        metadata={
            "method": config.method,
            "subset": subset,
            "normalisation": config.normalisation,
            "subset_predicted_labels": truth_missing,
        }
    )
    checks = {} if cancelled else result_checks(probabilities, computed, include, zero, global_maps, stack, subset)

    from ..provenance import provenance_record

    prov = provenance_record(
        model=model,
        config=config,
        sources=getattr(stack, "sources", ()),
        subset=subset,
        targets=targets,
        frame=frame_stack.frame,
        cancelled=cancelled,
        status=status_of(cancelled),
        n_images=n,
        n_maps_computed=int(computed.sum()),
        n_maps_selected=int(pairs.sum()),
        n_zero_maps=count_per_label(zero, include, targets),
        n_stalled_maps=count_per_label(stalled, include, targets),
        stalled_maps_in_global_maps=bool(config.include_stalled),
        method_warnings=notes,
        **writer.facts(),
    )
    prov["subset_predicted_labels"] = truth_missing
    prov.update(checks)
    with writing(target):
        image_maps = writer.finish(global_maps, prov)
    result = ExplainResult(
        image_maps,
        computed,
        include,
        targets,
        probabilities,
        list(model.labels),
        global_maps,
        config,
        subset,
        cancelled,
        prov,
        Path(out_dir) if out_dir else None,
        zero=zero,
        truth_missing=truth_missing,
        stalled=stalled,
        completeness=reported(completeness, computed),
    )
    if out_dir is not None:
        with writing(target):  # the files written atomically name themselves; the store's anatomy is in the store
            result.write(out_dir, anatomy=frame_stack.mean_image(), image_ids=stack.image_ids)
    return result
