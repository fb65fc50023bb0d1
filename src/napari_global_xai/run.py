"""Pipelines: one function per job, called by both the CLI and the napari docks.

Every pipeline takes ``progress(done, total, stage)`` and ``cancel() -> bool`` callables (never napari or tqdm),
works chunk by chunk, and on cancel returns what it finished, marked ``cancelled=True``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .aggregate import GlobalMapAccumulator, GlobalMaps
from .batching import Cancelled
from .explain.engine import ExplainConfig, ImageMapEngine, predict_probabilities, select_pairs

__all__ = ["ExplainResult", "run_explain", "resolve_targets", "ProgressFn", "CancelFn"]

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]


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

    @property
    def n_computed(self) -> int:
        return int(self.computed.sum())


def resolve_targets(model_labels: list[str], targets) -> list[str]:
    """Validate target label names against the model's labels (``None`` = all)."""
    if targets is None:
        return list(model_labels)
    targets = [targets] if isinstance(targets, str) else list(targets)
    unknown = [t for t in targets if t not in model_labels]
    if unknown:
        raise ValueError(f"unknown target label(s) {unknown}; the model's labels are {model_labels}")
    return targets


def _truth_for(stack, targets: list[str]) -> np.ndarray | None:
    table = stack.labels
    if table is None or not all(t in table.names for t in targets):
        return None
    return np.stack([table.column(t) for t in targets], axis=1).astype(np.uint8)


def _resolve_subset(subset: str, truth) -> str:
    if subset == "auto":
        return "positive" if truth is not None else "predicted"
    return subset


def run_explain(stack, model, config: ExplainConfig | None = None, out_dir: str | Path | None = None,
                progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> ExplainResult:
    """Image-wise maps for a stack, aggregated into label-wise and overall global maps.

    Parameters
    ----------
    stack : AlignedStack
        Any frame; it is harmonised to the left-eye frame when the model card asks for it.
    model : LoadedModel
    config : ExplainConfig, optional
    out_dir : path, optional
        When given, image-wise maps stream into ``out_dir/image_maps.tif`` (never all in memory) and the global
        maps, overlays and provenance are written there at the end (also after a cancel).
    progress : callable(done, total, stage), optional
    cancel : callable() -> bool, optional

    Returns
    -------
    ExplainResult

    Raises
    ------
    ModelLoadError
        The model does not fit the stack (checked before any long work).
    ValueError
        Unknown targets, or a subset rule that needs labels the stack does not have.
    """
    config = config or ExplainConfig()
    progress = progress or _noop_progress
    model.check_input(stack.shape)
    frame_stack = stack.to_left_eye() if model.card.harmonise_laterality else stack
    targets = resolve_targets(model.labels, config.targets)
    target_idx = [model.labels.index(t) for t in targets]
    truth = _truth_for(frame_stack, targets)
    subset = _resolve_subset(config.subset, truth)
    n, h, w = len(frame_stack), stack.shape[1], stack.shape[2]
    engine = ImageMapEngine(model, config, target_idx)  # validates the method and its parameters early

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

    include = select_pairs(subset, truth, probabilities[:, target_idx], config.threshold)
    pairs = include if config.compute == "subset" else np.ones_like(include)
    if cancelled:
        pairs = np.zeros_like(pairs)
    computed = np.zeros_like(include)
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
            try:
                engine.compute(pixels, pairs[idx], cancel=cancel, on_batch=on_batch, out=chunk, done=done)
            finally:  # keep finished maps of a cancelled chunk
                computed[idx] = done
                accumulator.update(chunk, include[idx] & done)
                writer.write(idx, chunk)
    except Cancelled:
        cancelled = True

    from .provenance import provenance_record

    prov = provenance_record(model=model, config=config, sources=getattr(stack, "sources", ()),
                             subset=subset, targets=targets, frame="left" if model.card.harmonise_laterality
                             else stack.frame, cancelled=cancelled, n_images=n,
                             n_maps_computed=int(computed.sum()), n_maps_selected=total)
    global_maps = accumulator.result(metadata={"method": config.method, "subset": subset,
                                               "normalisation": config.normalisation})
    result = ExplainResult(writer.finish(), computed, include, targets, probabilities, list(model.labels),
                           global_maps, config, subset, cancelled, prov, Path(out_dir) if out_dir else None)
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

        self.array.flush()
        del self.array
        os.replace(self.tmp, self.path)
        return tifffile.memmap(self.path, mode="r")

