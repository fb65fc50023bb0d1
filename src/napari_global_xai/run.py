"""Pipelines: one function per job, called by both the CLI and the napari docks.

Every pipeline follows the run contract of :mod:`napari_global_xai.control`: a ``control=RunControl`` (or the
``progress(done, total, stage)`` / ``cancel`` keywords; never napari or tqdm), works chunk by chunk, and on cancel
returns its result dataclass with what it finished, marked ``cancelled=True``. The frame a model reads is decided
once, from its card (:func:`~napari_global_xai.data.conform.model_frame`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .aggregate import GlobalMapAccumulator, GlobalMaps
from .batching import Cancelled
from .control import CancelFn, ProgressFn, RunControl
from .data.conform import model_frame
from .explain.engine import ExplainConfig, ImageMapEngine, predict_probabilities, select_pairs

__all__ = ["ExplainResult", "DemoResult", "run_explain", "run_demo", "resolve_targets", "ProgressFn", "CancelFn"]


def _noop_progress(done: int, total: int, stage: str) -> None:
    pass


@dataclass
class ExplainResult:
    """Image-wise and global maps of one explain run.

    Attributes
    ----------
    image_maps : numpy.ndarray, (n, L, H, W) float32
        Image-wise maps in the left-eye frame (0 where not computed); a memmap of ``image_maps.tif`` when the run
        wrote to a folder.
    computed : numpy.ndarray, (n, L) bool
        Which maps were computed (all selected ones unless the run was cancelled).
    zero : numpy.ndarray, (n, L) bool
        Computed maps that are zero everywhere (no explanation): reported, never averaged into a global map.
    stalled : numpy.ndarray, (n, L) bool
        Computed maps the method flagged (an I-GOS/iGOS++ optimisation that stalled; its map is the documented
        recovery): reported, and averaged into a global map only with ``ExplainConfig.include_stalled``.
    include : numpy.ndarray, (n, L) bool
        Subset membership: which maps enter each label's global map.
    target_labels : list of str
    probabilities : numpy.ndarray, (n, n_model_labels)
    model_labels : list of str
    global_maps : GlobalMaps
    config : ExplainConfig
    subset : str
        The subset rule actually used (``auto`` resolved).
    cancelled : bool
    provenance : dict
    out_dir : pathlib.Path or None
    truth_missing : list of str
        Target labels without a column in the labels table: their subset used predicted positives.
    """

    image_maps: np.ndarray
    computed: np.ndarray
    include: np.ndarray
    target_labels: list[str]
    probabilities: np.ndarray
    model_labels: list[str]
    global_maps: GlobalMaps
    config: ExplainConfig
    subset: str
    cancelled: bool = False
    provenance: dict = field(default_factory=dict)
    out_dir: Path | None = None
    zero: np.ndarray | None = None
    truth_missing: list[str] = field(default_factory=list)
    stalled: np.ndarray | None = None

    @property
    def n_computed(self) -> int:
        return int(self.computed.sum())

    @property
    def n_zero(self) -> dict[str, int]:
        """All-zero image-wise maps per target label (left out of the global maps)."""
        return count_per_label(self.zero, self.include, self.target_labels)

    @property
    def n_stalled(self) -> dict[str, int]:
        """Stalled (flagged) image-wise maps per target label of the subset."""
        return count_per_label(self.stalled, self.include, self.target_labels)


def count_per_label(mask: np.ndarray | None, include: np.ndarray, labels: list[str]) -> dict[str, int]:
    """``{label: number of (image, label) pairs where mask & include}``; zeros when there is no mask."""
    hits = (mask if mask is not None else np.zeros_like(include)) & include
    return {name: int(hits[:, i].sum()) for i, name in enumerate(labels)}


def _fit(stack, model):
    """The stack resized / converted (lazily) to what the model's card asks, with a notice per change."""
    from .data.conform import fit_stack_to_model

    return fit_stack_to_model(stack, model.card)


def resolve_targets(model_labels: list[str], targets) -> list[str]:
    """Validate target label names against the model's labels (``None`` = all)."""
    if targets is None:
        return list(model_labels)
    targets = [targets] if isinstance(targets, str) else list(targets)
    unknown = [t for t in targets if t not in model_labels]
    if unknown:
        from .errors import UsageError

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


def missing_truth_message(names: list[str]) -> str:
    """``"the labels table has no column for model label(s) 'MH', 'x'"``."""
    return f"the labels table has no column for model label(s) {', '.join(map(repr, names))}"


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
            from .data.labels import InputNotice

            warnings.warn(f"{missing_truth_message(missing)}: their global maps use the images predicted positive "
                          "instead of ground truth (the other labels use ground truth); map a column to a label "
                          "with label_map / --label-map CSV_NAME=MODEL_NAME", InputNotice, stacklevel=3)
        return "positive"
    if subset in ("positive", "true_positive") and truth is not None and missing:
        raise ValueError(f"subset {subset!r} needs ground truth for every target label, but "
                         f"{missing_truth_message(missing)}; map a column with --label-map CSV_NAME=MODEL_NAME "
                         "(label_map=...), leave the label out with --targets, or use subset 'auto'")
    return subset


def run_explain(stack, model, config: ExplainConfig | None = None, out_dir: str | Path | None = None,
                progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                control: RunControl | None = None) -> ExplainResult:
    """Image-wise maps for a stack, aggregated into label-wise and overall global maps.

    Parameters
    ----------
    stack : AlignedStack
        Any frame; the maps are computed in the model's frame (:func:`~napari_global_xai.data.conform.model_frame`:
        left-eye when the card harmonises laterality, else as stored), recorded as ``provenance["frame"]``.
    model : LoadedModel
    config : ExplainConfig, optional
    out_dir : path, optional
        When given, image-wise maps stream into ``out_dir/image_maps.tif`` (never all in memory) and the global
        maps, overlays and provenance are written there at the end (also after a cancel, then marked
        ``"status": "CANCELLED"`` in the provenance). The folder is checked for writing before any model pass; a
        run that fails removes its hidden partial file and leaves the folder's earlier results untouched.
    progress : callable(done, total, stage), optional
    cancel : callable() -> bool or threading.Event, optional
    control : RunControl, optional
        Progress (stages ``"predict"``, ``"explain"``) and cancel in one object, instead of ``progress`` /
        ``cancel``.

    Returns
    -------
    ExplainResult
        After a cancel: the maps finished so far, ``cancelled=True``.

    Raises
    ------
    ModelLoadError
        The model does not fit the stack (checked before any long work).
    UsageError
        Unknown targets or method parameters (checked before any long work).
    OutputFolderError
        ``out_dir`` cannot be written (checked first).
    ValueError
        A subset rule that needs labels the stack does not have.
    """
    config = config or ExplainConfig()
    control = RunControl.of(control, progress, cancel)
    progress, cancel = control.report, control.cancel_fn
    if out_dir is not None:
        from .io_utils import check_output_folder

        check_output_folder(out_dir)
    targets = resolve_targets(model.labels, config.targets)
    target_idx = [model.labels.index(t) for t in targets]
    engine = ImageMapEngine(model, config, target_idx)  # validates the method and its parameters early
    stack = _fit(stack, model)
    model.check_input(stack.shape)
    frame_stack = model_frame(stack, model.card)
    truth, known = _truth_for(frame_stack, targets)
    subset = _resolve_subset(config.subset, truth, known, targets)
    n, h, w = len(frame_stack), stack.shape[1], stack.shape[2]
    import torch

    engine.check(torch.zeros(1, model.n_channels, h, w, device=model.device))  # method requirements, before work

    probabilities = np.zeros((n, len(model.labels)), np.float32)
    cancelled = False
    try:
        for idx, pixels in frame_stack.iter_chunks(config.chunk_size):
            if cancel is not None and cancel():
                raise Cancelled("cancelled before any map was computed")
            probabilities[idx] = predict_probabilities(model, pixels)
            progress(int(idx[-1]) + 1, n, "predict")
    except Cancelled:
        cancelled = True

    include = select_pairs(subset, truth, probabilities[:, target_idx], config.threshold, known=known)
    pairs = include if config.compute == "subset" else np.ones_like(include)
    if cancelled:
        pairs = np.zeros_like(pairs)
    computed = np.zeros_like(include)
    zero = np.zeros_like(include)
    stalled = np.zeros_like(include)
    writer = _MapWriter(out_dir, (n, len(targets), h, w))
    accumulator = GlobalMapAccumulator(targets, (h, w))
    total, done_maps = int(pairs.sum()), 0

    def on_batch(k):
        nonlocal done_maps
        done_maps += k
        progress(done_maps, total, "explain")

    try:
        for idx, pixels in ([] if cancelled else frame_stack.iter_chunks(config.chunk_size)):
            chunk = np.zeros((len(idx), len(targets), h, w), np.float32)
            done = np.zeros((len(idx), len(targets)), bool)
            empty = np.zeros((len(idx), len(targets)), bool)
            flagged = np.zeros((len(idx), len(targets)), bool)
            try:
                engine.compute(pixels, pairs[idx], cancel=cancel, on_batch=on_batch, out=chunk, done=done,
                               zero=empty, stalled=flagged)
            finally:  # keep finished maps of a cancelled chunk
                computed[idx] = done
                zero[idx] = empty & done
                stalled[idx] = flagged & done
                usable = done & ~zero[idx] & (~stalled[idx] | config.include_stalled)
                accumulator.update(chunk, include[idx] & usable)
                writer.write(idx, chunk)
    except Cancelled:
        cancelled = True
    except BaseException:  # a crash (or a second Ctrl-C) leaves no hidden partial file behind
        writer.abort()
        raise

    from .provenance import provenance_record

    prov = provenance_record(model=model, config=config, sources=getattr(stack, "sources", ()),
                             subset=subset, targets=targets, frame=frame_stack.frame, cancelled=cancelled,
                             status=_status(cancelled), n_images=n,
                             n_maps_computed=int(computed.sum()), n_maps_selected=total,
                             n_zero_maps=count_per_label(zero, include, targets),
                             n_stalled_maps=count_per_label(stalled, include, targets),
                             stalled_maps_in_global_maps=bool(config.include_stalled),
                             method_warnings=list(engine.notes or []))
    truth_missing = [t for t, k in zip(targets, known) if not k] if truth is not None else []
    global_maps = accumulator.result(metadata={"method": config.method, "subset": subset,
                                               "normalisation": config.normalisation,
                                               "subset_predicted_labels": truth_missing})
    prov["subset_predicted_labels"] = truth_missing
    result = ExplainResult(writer.finish(), computed, include, targets, probabilities, list(model.labels),
                           global_maps, config, subset, cancelled, prov, Path(out_dir) if out_dir else None,
                           zero=zero, truth_missing=truth_missing, stalled=stalled)
    if out_dir is not None:
        from .outputs import write_explain_outputs

        write_explain_outputs(result, out_dir, anatomy=frame_stack.mean_image(), image_ids=stack.image_ids)
    return result


class _MapWriter:
    """Image-wise maps: in memory, or streamed into an uncompressed (memory-mappable) TIFF written atomically."""

    def __init__(self, out_dir, shape):
        self.shape = shape
        self.path = None
        if out_dir is None:
            self.array = np.zeros(shape, np.float32)
            return
        import tifffile

        self.path = Path(out_dir) / "image_maps.tif"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.array = tifffile.memmap(self.tmp, shape=shape, dtype=np.float32, photometric="minisblack",
                                     metadata={"axes": "QCYX"})

    def write(self, idx, chunk):
        self.array[idx] = chunk

    def finish(self):
        if self.path is None:
            return self.array
        import os

        import tifffile

        try:
            self.array.flush()
            del self.array
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return tifffile.memmap(self.path, mode="r")

    def abort(self):
        """Drop the hidden partial file (after a failure); an earlier complete ``image_maps.tif`` stays."""
        if self.path is None:
            return
        import contextlib
        import os

        self.__dict__.pop("array", None)  # close the memmap before removing its file
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def _status(cancelled: bool) -> str:
    """Provenance marker of a result: ``"CANCELLED"`` (partial, marked loudly) or ``"complete"``."""
    return "CANCELLED" if cancelled else "complete"



def _stage(progress: ProgressFn | None, stage: str):
    """Adapt ``progress(done, total, stage)`` to the two-argument callbacks of the curve engine."""
    if progress is None:
        return None
    return lambda done, total: progress(done, total, stage)


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
    if stack.labels is None:
        return (list(label_names) if label_names is not None else list(model.labels)), None
    wanted = list(label_names) if label_names is not None else list(model.labels)
    table = stack.labels.matched_to(wanted)
    if table.missing and label_names is not None:
        raise ValueError(f"PEPPR needs ground truth for the labels it scores, but {missing_truth_message(table.missing)}")
    from .data.labels import InputNotice

    if not table.names:
        warnings.warn(f"{missing_truth_message(table.missing)}: PEPPR scores every label on its mean predicted "
                      "probability instead of AUROC", InputNotice, stacklevel=2)
        return wanted, None
    if table.missing:
        warnings.warn(f"PEPPR scores only labels with ground truth: skipped {', '.join(map(repr, table.missing))} "
                      "(no column in the labels table)", InputNotice, stacklevel=2)
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


def run_peppr_pipeline(stack, model, global_maps, *, labels=None, fractions=None, fill: str = "zero",
                       random_seeds: int = 5, eval_split: str | None = None, map_split: str | None = None,
                       out_dir: str | Path | None = None, filled_fractions=(0.05, 0.1, 0.2, 0.5),
                       progress: ProgressFn | None = None, cancel: CancelFn | None = None):
    """PEPPR of global maps on an aligned stack: curves, random/reverse baselines, scores, figure and files.

    Parameters
    ----------
    stack : AlignedStack
        Harmonised to the left-eye frame here when the model asks for it (the frame the maps live in).
    model : LoadedModel
    global_maps : GlobalMaps or dict name -> (H, W)
    labels : list of str, optional
        Labels scored (default: model outputs present in the labels table).
    fractions : sequence of float, optional
        Default :data:`napari_global_xai.peppr.DEFAULT_FRACTIONS`.
    fill : {"zero", "black", "blur", "impute"}
    random_seeds : int
    eval_split, map_split : str, optional
        Circularity guard: evaluate only images of ``eval_split`` (labels ``split`` column); ``map_split`` records
        which split built the maps. Both appear in the result's ``split_note``.
    out_dir : path, optional
        Writes ``peppr_curves.csv``, ``peppr_summary.json``, ``peppr.png`` and the erased/restored images of the
        overall map at ``filled_fractions`` (``erased_overall.tif``, ``restored_overall.tif``).

    Returns
    -------
    PepprResult
        (Raises :class:`~napari_global_xai.batching.Cancelled` when cancelled: curves need every fraction, so
        nothing is written.)

    Raises
    ------
    OutputFolderError
        ``out_dir`` cannot be written (checked before any model pass).
    """
    from . import peppr

    if out_dir is not None:
        from .io_utils import check_output_folder

        check_output_folder(out_dir)
    stack = _fit(stack, model)
    model.check_input(stack.shape)
    frame_stack = stack.to_left_eye() if model.card.harmonise_laterality else stack
    names, truth = peppr_truth(frame_stack, model, labels)
    eval_idx = _split_indices(frame_stack, eval_split)
    result = peppr.run_peppr(model, _LazyPixels(frame_stack), global_maps, truth, names,
                             fractions=fractions or peppr.DEFAULT_FRACTIONS, fill=fill, random_seeds=random_seeds,
                             eval_indices=eval_idx, map_split=map_split,
                             eval_split=eval_split or ("all images" if eval_idx is None else None),
                             progress=_stage(progress, "peppr"), cancel=cancel)
    if out_dir is not None:
        from .peppr_report import write_filled_tiff, write_peppr

        write_peppr(result, out_dir)
        maps = peppr.collect_maps(global_maps, frame_stack.shape[1:3])
        name = "overall" if "overall" in maps else next(iter(maps))
        ranking = peppr.pixel_ranking(maps[name])
        sample = frame_stack.get(np.arange(min(8, len(frame_stack))))
        for mode, stem in (("erase", "erased"), ("restore", "restored")):
            write_filled_tiff(Path(out_dir) / f"{stem}_{name}.tif", model, sample, ranking, filled_fractions,
                              fill, mode)
    return result


class _LazyPixels:
    """Index an AlignedStack like an ``(n, H, W, C)`` array (what the curve engine reads), loading on demand."""

    def __init__(self, stack):
        self.stack = stack
        self.shape = stack.shape
        self.dtype = stack.dtype
        self.ndim = 4

    def __len__(self):
        return len(self.stack)

    def __getitem__(self, idx):
        pixels = self.stack.get(idx)
        return pixels[0] if isinstance(idx, (int, np.integer)) else pixels  # numpy semantics for an int index


def run_peppr_from_files(stack, model, global_maps_path, out_dir, fill="zero", random_seeds=5,
                         eval_split=None, progress=None, cancel=None, fractions=None) -> str:
    """CLI helper: read ``global_maps.tif``, run :func:`run_peppr_pipeline`, return a printable summary.

    ``fractions`` (optional) are checked and completed by :func:`napari_global_xai.peppr.complete_fractions`
    (endpoints 0 and 1 added, with a note in the summary) before the maps file is read.
    """
    from .io_utils import check_output_folder
    from .outputs import read_global_maps
    from .peppr import complete_fractions
    from .peppr_report import summary_text

    note = ""
    if fractions is not None:
        fractions, added = complete_fractions(fractions)
        if added:
            note = (f"\nnote: added fraction(s) {', '.join(f'{a:g}' for a in added)} (the curves are read against "
                    f"the intact image at both ends); fractions used: {', '.join(f'{f:g}' for f in fractions)}")
    check_output_folder(out_dir)
    gm = read_global_maps(global_maps_path)
    result = run_peppr_pipeline(stack, model, gm, fractions=fractions, fill=fill, random_seeds=random_seeds,
                                eval_split=eval_split, out_dir=out_dir, progress=progress, cancel=cancel)
    return summary_text(result) + note + f"\nresults in {Path(out_dir).resolve()}"


@dataclass
class DemoResult:
    """What :func:`run_demo` made (the CLI prints it; see ``cli._demo_text``).

    Attributes
    ----------
    out_dir : pathlib.Path
    n_images : int
        Sample images explained.
    model_name, device : str
    method : str
    explain : ExplainResult
        The explain run (``out_dir/explain_<method>/``).
    peppr : PepprResult or None
        The PEPPR run (``out_dir/peppr_<method>/``); None when cancelled before it finished.
    report : dict str -> pathlib.Path
        ``"html"`` (and ``"pdf"``) of the one-file report; empty when cancelled.
    seconds : float
    cancelled : bool
    """

    out_dir: Path
    n_images: int
    model_name: str
    device: str
    method: str
    explain: ExplainResult
    peppr: object | None = None
    report: dict = field(default_factory=dict)
    seconds: float = 0.0
    cancelled: bool = False


def run_demo(out_dir, method: str = "ig", device: str = "auto", progress: ProgressFn | None = None,
             cancel: CancelFn | None = None, control: RunControl | None = None) -> DemoResult:
    """The whole chain on the shipped sample data: explain → global maps → PEPPR, with figures and the report.

    Files go to ``out_dir/explain_<method>/`` and ``out_dir/peppr_<method>/``, and the one-file report of both to
    ``out_dir/report.html`` (+ ``report.pdf``).

    Parameters
    ----------
    out_dir : path
    method : str
        Registered saliency method (IG runs with 16 steps here, to keep the demo short).
    device : str
    progress, cancel, control
        The run contract (:class:`~napari_global_xai.control.RunControl`); stages ``predict``, ``explain``,
        ``peppr``.

    Returns
    -------
    DemoResult
        After a cancel: ``cancelled=True``, the explain run's partial result (written, marked CANCELLED), no PEPPR
        and no report.
    """
    import time

    from .models import load_model
    from .samples import load_sample_stack

    control = RunControl.of(control, progress, cancel)
    t0 = time.perf_counter()
    out = Path(out_dir)
    stack = load_sample_stack()
    model = load_model(None, device=device)
    params = {"n_steps": 16} if method == "ig" else {}
    explained = run_explain(stack, model, ExplainConfig(method=method, params=params),
                            out_dir=out / f"explain_{method}", control=control)
    result = DemoResult(out, len(stack), model.card.name, str(model.device), method, explained,
                        cancelled=explained.cancelled)
    if not result.cancelled:
        try:
            result.peppr = run_peppr_pipeline(stack, model, explained.global_maps, out_dir=out / f"peppr_{method}",
                                              map_split="eval (same images: no held-out split in the sample)",
                                              progress=control.report, cancel=control.cancel_fn)
        except Cancelled:
            result.cancelled = True
    if not result.cancelled:
        from .report import write_report

        result.report = dict(write_report(out, out / "report.html", title="demo"))
    result.seconds = time.perf_counter() - t0
    return result


def run_sag_pipeline(stack, model, label: str, *, indices=None, method: str = "igos", fill: str = "blur",
                     max_root_size: int | None = 6, out_dir: str | Path | None = None,
                     figure_formats: Sequence[str] = ("png",), progress: ProgressFn | None = None,
                     cancel: CancelFn | None = None, **sag_params):
    """Structured attention graphs for images of a stack and their stack-level summary.

    Parameters
    ----------
    stack : AlignedStack
    model : LoadedModel
    label : str
        Model label explained.
    indices : sequence of int, optional
        Images; default those positive for ``label`` (labels table), else those predicted positive.
    method, fill, max_root_size
        Patch-ranking saliency (I-GOS as in the official code; ``gradcam`` is ~3× faster), fill and largest root
        size. Fill and size differ from the official code (black, no limit): a constant fill creates sharp-edged
        patches that the demo model reads as lesions, and unbounded roots cost ~1,700 forwards per image; see
        :mod:`napari_global_xai.sag`.
    out_dir : path, optional
        Writes ``sag_<image id>.json`` and the graph figure per image and ``sag_summary.json``.
    figure_formats : sequence of {"png", "svg", "pdf"}
        Formats of each image's graph figure (``sag_<image id>.<format>``); default PNG only.

    Returns
    -------
    (list of SagResult, dict)
        Per-image results and :func:`napari_global_xai.sag.sag_stack_summary`, plus ``cancelled`` and
        ``n_requested``. After a cancel the images finished so far are returned (and written) with
        ``cancelled=True``; a cancel before the first group finished raises
        :class:`~napari_global_xai.batching.Cancelled`.
    """
    from . import sag

    bad = [f for f in figure_formats if f not in sag.FIGURE_FORMATS]
    if bad:
        raise ValueError(f"unknown figure format(s) {bad}; choose from {list(sag.FIGURE_FORMATS)}")
    if label not in model.labels:
        from .errors import UsageError

        raise UsageError(f"unknown label {label!r}; the model's labels are {model.labels}")
    if out_dir is not None:
        from .io_utils import check_output_folder

        check_output_folder(out_dir)
    stack = _fit(stack, model)
    model.check_input(stack.shape)
    frame_stack = stack.to_left_eye() if model.card.harmonise_laterality else stack
    label_index = model.labels.index(label)
    if indices is None:
        table = None if frame_stack.labels is None else frame_stack.labels.matched_to([label])
        if table is not None and label in table.names:
            indices = np.nonzero(table.column(label))[0]
        else:
            if table is not None:
                from .data.labels import InputNotice

                warnings.warn(f"{missing_truth_message([label])}: SAG explains the images predicted positive",
                              InputNotice, stacklevel=2)
            probs = np.concatenate([predict_probabilities(model, px) for _, px in frame_stack.iter_chunks(16)])
            indices = np.nonzero(probs[:, label_index] > 0.5)[0]
    indices = [int(i) for i in indices]
    outside = [i for i in indices if not 0 <= i < len(frame_stack)]
    if outside:
        from .errors import UsageError

        raise UsageError(f"image index(es) {outside} outside the stack's 0..{len(frame_stack) - 1}")
    try:
        results = sag.run_sag(model, _LazyPixels(frame_stack), label_index, indices,
                              progress=_stage(progress, "sag"), cancel=cancel, method=method, fill=fill,
                              max_root_size=max_root_size, **sag_params)
        cancelled = False
    except Cancelled as exc:
        results, cancelled = list(getattr(exc, "partial", [])), True
        if not results:
            raise
    summary = {**sag.sag_stack_summary(results), "cancelled": cancelled, "status": _status(cancelled),
               "n_requested": len(indices)}
    if out_dir is not None:
        from .io_utils import save_json

        out = Path(out_dir)
        for result in results:
            image_id = stack.image_ids[result.image_index]
            save_json(out / f"sag_{image_id}.json", sag.to_json(result))
            for fmt in figure_formats:
                sag.draw_sag(result, frame_stack.get(result.image_index)[0], out / f"sag_{image_id}.{fmt}")
        save_json(out / "sag_summary.json", {"label": label,
                                             "images": [stack.image_ids[r.image_index] for r in results],
                                             **summary})
    return results, summary
