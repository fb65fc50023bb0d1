"""SAG drivers: one image (:func:`sag_for_image`), images of a stack in lockstep groups (:func:`run_sag`), and the
pipeline over a stack with its outputs (:func:`run_sag_pipeline`, called by the CLI and the SAG dock).

Settings come from one :class:`~napari_global_xai.config.SagConfig` (validated on construction) and progress and cancel
from one :class:`~napari_global_xai.control.RunControl`. The image frame is decided once, by the pipeline, from the
model card (``harmonise_laterality``); the functions below it take images already in that frame.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import SagConfig
from ..control import Cancelled, RunControl
from ..data.conform import model_frame
from .grid import grid_for, patch_saliency
from .result import SagResult, SagRunResult
from .search import image_program, run_programs

__all__ = ["IGOS_SAG_PARAMS", "NEGATIVE_BELOW", "negative_images", "sag_for_image", "run_sag", "run_sag_pipeline"]

#: I-GOS parameters of the official SAG code (``Integrated_Mask``: ``max_iterations=2, integ_iter=20, l1=1,
#: tv=20``, mask on the patch grid), methods.md §2.6. ``mask_size`` is set to the SAG grid and ``baseline`` to the
#: SAG fill at run time.
IGOS_SAG_PARAMS = {"iterations": 2, "ig_iter": 20, "l1": 1.0, "tv": 20.0}


def _saliency_maps(
    model, x, label: int, method: str, method_params: dict | None, grid, fill: str, fill_sigma: float | None = None
) -> np.ndarray:
    """Heuristic maps ``(k, H, W)`` of a batch of normalised images ``x`` ``(k, c, H, W)`` for one label.

    For I-GOS / iGOS++ the official SAG parameters apply, on the SAG grid, with the SAG fill as baseline (blur for
    ``impute``) and the SAG blur width when one is given; ``method_params`` override them.
    """
    import torch

    from ..saliency import get_method

    params = dict(method_params or {})
    if method in ("igos", "igos++"):
        sigma = {} if fill_sigma is None or fill not in ("blur", "impute") else {"blur_sigma": float(fill_sigma)}
        params = {
            **IGOS_SAG_PARAMS,
            "mask_size": tuple(grid),
            "baseline": fill if fill in ("zero", "black", "blur") else "blur",
            **sigma,
            **params,
        }
    m = get_method(method, model, **params)
    targets = torch.full((len(x),), int(label), device=x.device, dtype=torch.long)
    if m.needs_grad:
        a = m.attribute(x, targets)
    else:
        with torch.inference_mode():
            a = m.attribute(x, targets)
    a = a.detach().float().cpu().numpy()
    return np.abs(a).sum(axis=1) if a.shape[1] > 1 else a[:, 0]


def _params(config: SagConfig, method: str) -> dict:
    """The parameters recorded in each :class:`SagResult` (and its JSON)."""
    keys = (
        "beam_width",
        "n_successors",
        "root_threshold",
        "max_roots",
        "max_root_size",
        "skip_supersets",
        "overlap",
        "n_show",
        "node_threshold",
        "max_children",
        "max_nodes",
        "fill",
    )
    return {"method": method, "method_params": config.method_params or None, **{k: getattr(config, k) for k in keys}}


def _sag_group(
    model,
    images_raw: Sequence[np.ndarray],
    label_index: int,
    image_indices: Sequence[int],
    saliency: Sequence | None,
    config: SagConfig,
    control: RunControl | None = None,
) -> list[SagResult]:
    """SAGs of a group of same-size images (in the model's frame), their saliency maps and model calls batched."""
    from ..perturb import default_sigma
    from .scorer import SagScorer

    x = model.preprocess(np.stack([np.asarray(im) for im in images_raw]))
    h, w = x.shape[-2:]
    grid = grid_for((h, w), config.grid)
    t_sal, given = 0.0, saliency is not None
    if not given:
        t0 = time.perf_counter()
        saliency = _saliency_maps(
            model, x, label_index, config.method, config.method_params, grid, config.fill, config.fill_sigma
        )
        t_sal = (time.perf_counter() - t0) / len(x)
    maps = [np.asarray(m, dtype=np.float64) for m in saliency]
    for m in maps:
        if m.shape[-2:] != (h, w):
            raise ValueError(f"saliency map shape {m.shape} does not match the image {(h, w)}")
    t0 = time.perf_counter()
    sigma = config.fill_sigma
    if config.fill == "blur" and sigma is None:  # the one blur default, recorded in the result
        sigma = default_sigma(x.shape)
    scorers = SagScorer.group(
        model, x, label_index, grid, config.fill, fill_sigma=sigma, batch_size=config.batch_size, control=control
    )
    search = dict(
        beam_width=config.beam_width,
        n_successors=config.n_successors,
        root_threshold=config.root_threshold,
        max_roots=config.max_roots,
        max_root_size=config.max_root_size,
        skip_supersets=config.skip_supersets,
    )
    graph = dict(node_threshold=config.node_threshold, max_children=config.max_children, max_nodes=config.max_nodes)
    programs = [
        image_program(
            grid[0] * grid[1],
            np.argsort(-patch_saliency(m, grid), kind="stable"),
            search,
            config.overlap,
            config.n_show,
            graph,
        )
        for m in maps
    ]
    outcomes = run_programs(programs, scorers)
    seconds = (time.perf_counter() - t0) / len(x)
    params = {**_params(config, "given" if given else config.method), "fill_sigma": sigma}
    return [
        SagResult(
            image_index=int(i),
            label=int(label_index),
            grid=tuple(grid),
            full_confidence=float(full),
            roots=shown,
            nodes=nodes,
            n_forwards=sc.n_forwards,
            all_roots=all_roots,
            root_confidences=[float(c) for c in confs],
            n_batches=sc.n_batches,
            seconds=seconds,
            saliency_seconds=t_sal,
            params=dict(params),
        )
        for i, sc, (full, all_roots, confs, shown, nodes) in zip(image_indices, scorers, outcomes)
    ]


def sag_for_image(
    model,
    image_raw,
    label_index: int,
    config: SagConfig | None = None,
    *,
    saliency=None,
    image_index: int = 0,
    control: RunControl | None = None,
) -> SagResult:
    """Structured attention graph of one image for one label.

    Parameters
    ----------
    model : LoadedModel
    image_raw : numpy.ndarray, (H, W, C)
        Raw pixels in the model's frame (the left-eye frame when the card harmonises laterality: mirror right eyes
        before calling, or use :func:`run_sag_pipeline`, which decides the frame from the card).
    label_index : int
        Output explained.
    config : SagConfig, optional
        Every setting (official values per field in :class:`~napari_global_xai.config.SagConfig`); default
        ``SagConfig()``.
    saliency : numpy.ndarray, (H, W), optional
        Heuristic map (higher = more important). When None it is computed with ``config.method``.
    image_index : int
        Stored in the result.
    control : RunControl, optional
        Cancel, checked before every model pass.

    Returns
    -------
    SagResult

    Notes
    -----
    Follows methods.md §2.6 (official code). Adaptations: grid from the aspect ratio instead of 7 × 7; hard
    (nearest) patch masks instead of bilinear upsampling; confidence = sigmoid probability for multi-label cards
    (softmax for multi-class, as officially); the fill is any project fill (default blur, σ =
    :data:`~napari_global_xai.config.BLUR_SIGMA_FRACTION` of the shorter side) instead of black; any registered
    saliency method or a given map may replace I-GOS (for I-GOS, ``method_params`` override
    :data:`IGOS_SAG_PARAMS` and the mask grid and baseline follow the SAG grid and fill); the beam keeps exactly
    ``beam_width`` states, merges duplicate successors and (``skip_supersets``) does not re-minimise successors
    containing a known root; roots are at most ``max_root_size`` patches (default 6); redundant-patch removal and
    graph children are scored in batches (greedy best-first removal; children = the ``max_children`` most confident
    one-patch removals); all model calls are batched and each distinct patch set is scored once. Relative
    confidence = confidence / full-image confidence.
    """
    config = SagConfig() if config is None else config
    maps = None if saliency is None else [saliency]
    return _sag_group(model, [image_raw], label_index, [image_index], maps, config, control)[0]


def _gather(images, chunk: Sequence[int]) -> list[np.ndarray]:
    """Pixels of some images: an AlignedStack in its own frame, or any ``(n, H, W, C)`` indexable."""
    if hasattr(images, "to_left_eye"):
        return list(images.get(np.asarray(chunk, dtype=np.intp)))
    return [np.asarray(images[i]) for i in chunk]


def run_sag(
    model,
    images,
    label_index: int,
    indices: Sequence[int],
    config: SagConfig | None = None,
    *,
    control: RunControl | None = None,
    laterality: Sequence[str] | None = None,
    saliency_maps=None,
    executor=None,
) -> list[SagResult]:
    """SAGs of several images of a stack for one label, ``config.images_together`` at a time.

    The images of a group share every model call: their heuristic maps are computed in one batched call of the
    saliency method, and their searches run in lockstep (:func:`~napari_global_xai.sag.search.run_programs`), so
    each round's patch sets of all images go through the model together. Results equal :func:`sag_for_image` per
    image (up to float rounding of batched convolutions); ``seconds`` and ``saliency_seconds`` are the group's wall
    time shared evenly.

    Parameters
    ----------
    model : LoadedModel
    images : AlignedStack or array-like, (n, H, W, C)
        Raw pixels in the model's frame (an AlignedStack is read in its own frame).
    label_index : int
    indices : sequence of int
        Images to explain.
    config : SagConfig, optional
        Every setting (default ``SagConfig()``).
    control : RunControl, optional
        Progress (stage ``"sag"``, in images, after each group) and cancel (checked between groups and between
        batches).
    laterality : sequence of str, optional
        Per stack image, for stored-frame arrays: images with ``"R"`` are read mirrored (through
        :meth:`~napari_global_xai.data.AlignedStack.to_left_eye`). Kept for callers of the array form;
        :func:`run_sag_pipeline` passes a stack already in the card's frame instead.
    saliency_maps : mapping or sequence, optional
        ``saliency_maps[i]`` is the heuristic map of stack image ``i`` (in the images' frame).
    executor : ChunkExecutor, optional
        Where the groups run (default this process, one after another); a
        :class:`~napari_global_xai.scale.executor.DaskExecutor` runs them on a cluster, with the same graphs.

    Returns
    -------
    list of SagResult

    Raises
    ------
    Cancelled
        On a cancel; its ``partial`` holds the results of the groups finished before (a list, maybe empty).
    """
    config = SagConfig() if config is None else config
    control = control or RunControl()
    if laterality is not None:
        from ..data import AlignedStack

        images = AlignedStack(images, [str(i) for i in range(len(images))], laterality=list(laterality)).to_left_eye()
    from ..batching import images_per_pass
    from ..chunks import InProcessExecutor
    from .task import SagChunkTask

    indices = [int(i) for i in indices]
    size = max(1, int(config.images_together or images_per_pass(model.device)))
    groups = [indices[start : start + size] for start in range(0, len(indices), size)]
    maps = None if saliency_maps is None else [[saliency_maps[i] for i in g] for g in groups]
    task = SagChunkTask(model, images, int(label_index), groups, config, maps)
    finished: dict[int, list[SagResult]] = {}
    try:
        for result in (executor or InProcessExecutor()).map_chunks(task, range(len(groups)), cancel=control.cancel_fn):
            finished[result.chunk] = result.results
            control.report(sum(len(r) for r in finished.values()), len(indices), "sag")
        if len(finished) < len(groups):  # the executor stopped on a cancel
            raise Cancelled(f"cancelled after {sum(len(r) for r in finished.values())} of {len(indices)} images")
    except Cancelled as exc:
        exc.partial = [r for c in sorted(finished) for r in finished[c]]  # the finished groups stay usable
        raise
    return [r for c in range(len(groups)) for r in finished[c]]


#: A full-image probability below this makes an image negative for the label: its graph explains a "no".
NEGATIVE_BELOW = 0.5


def negative_images(frame_stack, model, label: str, indices, below: float = NEGATIVE_BELOW) -> dict[int, float]:
    """``{index: p(full)}`` of the ``indices`` the model calls negative for ``label`` (p < ``below``, by default
    :data:`NEGATIVE_BELOW`).

    ``frame_stack`` is read as given (the run's frame: :func:`~napari_global_xai.data.conform.model_frame`);
    one batched forward pass of those images.
    """
    from ..saliency.engine import predict_probabilities

    indices = [int(i) for i in indices]
    if not indices:
        return {}
    probs = predict_probabilities(model, np.asarray(frame_stack.get(indices)))[:, model.labels.index(label)]
    return {i: float(p) for i, p in zip(indices, probs) if p < below}


def negative_message(frame_stack, label: str, negatives: dict[int, float], n_chosen: int) -> str:
    """One line naming the negative images, their p(full) and what that means for their graphs."""
    named = ", ".join(f"{frame_stack.image_ids[i]!r} (p = {p:.3f})" for i, p in list(negatives.items())[:5])
    more = f" and {len(negatives) - 5} more" if len(negatives) > 5 else ""
    which = "the chosen image is" if n_chosen == 1 else f"{len(negatives)} of {n_chosen} chosen images are"
    return (
        f"SAG: {which} negative for {label!r} (p(full) < {NEGATIVE_BELOW:g}): {named}{more}; a graph of a negative "
        "image explains why the model says no, so its roots mean little; choose images the model calls positive"
    )


def _positives(frame_stack, model, label: str, label_index: int, control: RunControl) -> list[int]:
    """Images positive for ``label`` in the labels table, else predicted positive (with a notice naming why)."""
    table = None if frame_stack.labels is None else frame_stack.labels.matched_to([label])
    if table is not None and label in table.names:
        return [int(i) for i in np.nonzero(table.column(label))[0]]
    if table is not None:
        from ..data.labels import InputNotice, missing_truth_message

        warnings.warn(
            f"{missing_truth_message([label])}: SAG explains the images predicted positive", InputNotice, stacklevel=3
        )
    from ..saliency.engine import predict_probabilities

    probs = []
    for _idx, pixels in frame_stack.iter_chunks(16):
        control.check("cancelled before any SAG was computed")
        probs.append(predict_probabilities(model, pixels))
    return [int(i) for i in np.nonzero(np.concatenate(probs)[:, label_index] > 0.5)[0]]


def run_sag_pipeline(
    stack,
    model,
    label: str,
    config: SagConfig | None = None,
    *,
    indices=None,
    out_dir: str | Path | None = None,
    control: RunControl | None = None,
    executor=None,
) -> SagRunResult:
    """Structured attention graphs for images of a stack and their stack-level summary.

    Parameters
    ----------
    stack : AlignedStack
        Any frame: the pipeline reads it in the left-eye frame when the card harmonises laterality, else as stored
        (decided here, once).
    model : LoadedModel
    label : str
        Model label explained.
    config : SagConfig, optional
        Every setting (default ``SagConfig()``: I-GOS ranking, blur fill, roots of at most 6 patches, PNG figures).
    indices : sequence of int, optional
        Images; default those positive for ``label`` (labels table), else those predicted positive.
    out_dir : path, optional
        Writes ``sag_<image id>.json`` and the graph figure per image (``sag_<image id>.<format>`` for each of
        ``config.figure_formats``) and ``sag_summary.json``; checked for writing before any model pass.
    control : RunControl, optional
        Progress (stage ``"sag"``, one step per image group) and cancel.
    executor : ChunkExecutor, optional
        Where the image groups run (see :func:`run_sag`).

    Returns
    -------
    SagRunResult
        Per-image results and the stack summary. After a cancel the images finished so far are returned (and
        written, marked ``"status": "CANCELLED"``) with ``cancelled=True``.

    Raises
    ------
    Cancelled
        A cancel before the first image group finished; ``partial`` is a :class:`SagRunResult` with no results.
    UsageError
        An unknown label or an image index outside the stack.
    OutputFolderError
        ``out_dir`` cannot be written.
    """
    from ..control import status_of
    from ..data.conform import fit_stack_to_model
    from ..errors import UsageError

    control = control or RunControl()
    config = SagConfig() if config is None else config
    if label not in model.labels:
        raise UsageError(f"unknown label {label!r}; the model's labels are {model.labels}")
    if out_dir is not None:
        from ..io_utils import check_output_folder

        check_output_folder(out_dir)
    stack = fit_stack_to_model(stack, model.card)
    model.check_input(stack.shape)
    frame_stack = model_frame(stack, model.card)
    label_index = model.labels.index(label)
    indices = (
        _positives(frame_stack, model, label, label_index, control) if indices is None else [int(i) for i in indices]
    )
    outside = [i for i in indices if not 0 <= i < len(frame_stack)]
    if outside:
        raise UsageError(f"image index(es) {outside} outside the stack's 0..{len(frame_stack) - 1}")
    negatives = negative_images(frame_stack, model, label, indices)  # one forward pass, before any search
    if negatives:
        from ..data.labels import InputNotice

        warnings.warn(negative_message(frame_stack, label, negatives, len(indices)), InputNotice, stacklevel=2)
    run = SagRunResult([], {}, label=label, n_requested=len(indices), config=config, stack=frame_stack)
    try:
        run.results = run_sag(
            model, frame_stack, label_index, indices, control=control, config=config, executor=executor
        )
    except Cancelled as exc:
        run.results, run.cancelled = list(exc.partial or []), True
        if not run.results:
            run.summary = {"cancelled": True, "status": status_of(True), "n_requested": len(indices)}
            raise Cancelled(str(exc), partial=run) from exc
    from .summary import sag_stack_summary

    run.summary = {
        **sag_stack_summary(run.results),
        "cancelled": run.cancelled,
        "status": status_of(run.cancelled),
        "n_requested": len(indices),
    }
    run.image_ids = [stack.image_ids[r.image_index] for r in run.results]
    if out_dir is not None:
        run.write(out_dir)
    return run
