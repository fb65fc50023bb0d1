"""The explain job's chunk task: one chunk of images predicted, its (image, label) pairs selected, explained, and
folded into a chunk accumulator; and the run's merge and assembly of the chunk results.

The executor seam it plugs into is :mod:`napari_global_xai.chunks` (shared with PEPPR's and SAG's tasks).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..aggregate import GlobalMapAccumulator
from ..chunks import ChunkResult, ShippedTask, chunk_bounds

__all__ = ["ExplainChunkTask", "ChunkOrderMerge", "assemble_chunks"]


@dataclass
class ExplainChunkTask(ShippedTask):
    """Compute one chunk of an explain run: predict, select pairs, explain, accumulate.

    Parameters
    ----------
    stack : AlignedStack
        Already fitted to the model and in the frame the maps live in.
    model : LoadedModel
    config : ExplainConfig
    targets : list of str
        Target labels (the L axis).
    subset : str
        Resolved subset rule (not ``auto``).
    truth : numpy.ndarray, (n, L) or None
        Ground truth of the targets (0 where unknown).
    known : numpy.ndarray of bool, (L,)
        Targets with a ground-truth column.

    Notes
    -----
    The saliency engine (which holds the model's method objects and hooks) is built on first call and not
    pickled, so a task can be shipped to a worker process that has the model.
    """

    stack: object
    model: object
    config: object
    targets: list[str]
    subset: str
    truth: np.ndarray | None
    known: np.ndarray

    def __post_init__(self):
        self.bounds = chunk_bounds(len(self.stack), self.config.chunk_size)
        self._engine = None

    @property
    def n_chunks(self) -> int:
        return len(self.bounds)

    @property
    def target_indices(self) -> list[int]:
        return [list(self.model.labels).index(t) for t in self.targets]

    def indices(self, chunk: int) -> np.ndarray:
        """Image indices of chunk ``chunk``."""
        start, stop = self.bounds[chunk]
        return np.arange(start, stop)

    @property
    def engine(self):
        """The saliency engine (built on first use)."""
        if self._engine is None:
            from ..saliency.engine import ImageMapEngine

            self._engine = ImageMapEngine(self.model, self.config, self.target_indices)
        return self._engine

    def reset(self) -> None:
        self._engine = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_engine"] = None
        return state

    def __call__(
        self,
        chunk: int,
        cancel: Callable[[], bool] | None = None,
        on_maps: Callable[[int, int, int], None] | None = None,
    ) -> ChunkResult:
        """Compute chunk ``chunk``; a cancel part-way returns the finished maps with ``complete=False``."""
        from ..batching import Cancelled
        from ..control import RunControl
        from ..saliency.engine import predict_probabilities, select_pairs

        idx = self.indices(chunk)
        pixels = self.stack.get(idx)
        probabilities = predict_probabilities(self.model, pixels)
        truth = None if self.truth is None else self.truth[idx]
        include = select_pairs(
            self.subset, truth, probabilities[:, self.target_indices], self.config.threshold, known=self.known
        )
        pairs = include if self.config.compute == "subset" else np.ones_like(include)
        k, n_targets = include.shape
        h, w = pixels.shape[1:3]
        maps = np.zeros((k, n_targets, h, w), np.float32)
        done = np.zeros((k, n_targets), bool)
        zero = np.zeros((k, n_targets), bool)
        stalled = np.zeros((k, n_targets), bool)
        completeness = np.full((k, n_targets), np.nan)
        complete = True
        engine = self.engine
        on_batch = None
        if on_maps is not None:
            selected = int(pairs.sum())

            def on_batch(n_maps: int) -> None:
                on_maps(n_maps, selected, k)

        try:
            engine.compute(
                pixels,
                pairs,
                control=RunControl(cancel=cancel),
                on_batch=on_batch,
                out=maps,
                done=done,
                zero=zero,
                stalled=stalled,
                completeness=completeness,
            )
        except Cancelled:
            complete = False
        zero &= done
        stalled &= done
        usable = done & ~zero & (~stalled | bool(self.config.include_stalled))
        accumulator = GlobalMapAccumulator(self.targets, (h, w)).update(maps, include & usable)
        return ChunkResult(
            chunk,
            idx,
            maps,
            done,
            zero,
            stalled,
            include,
            pairs,
            probabilities,
            accumulator,
            complete,
            list(engine.notes or []),
            completeness,
        )


class ChunkOrderMerge:
    """Merge per-chunk accumulators into one in chunk order, holding only those that finished early.

    The means are exact in any order (int64 fixed point); merging in chunk order also makes the float64 std the
    same whatever order chunks finished in (another worker, a resume). In-process chunks arrive in order, so at
    most one chunk accumulator is alive at a time: memory does not grow with the number of images.
    """

    def __init__(self, accumulator):
        self.accumulator = accumulator
        self.parked: dict[int, object] = {}
        self.next = 0

    def add(self, chunk: int, record) -> None:
        self.parked[chunk] = record
        while self.next in self.parked:
            self._take(self.parked.pop(self.next))
            self.next += 1

    def finish(self) -> None:
        """Merge what is parked behind a chunk that never finished (a cancel), still in chunk order."""
        for chunk in sorted(self.parked):
            self._take(self.parked.pop(chunk))

    def _take(self, record) -> None:
        self.accumulator.merge(record.accumulator)
        record.accumulator = None  # merged: only the small per-chunk facts stay


def assemble_chunks(records, task, n, n_model_labels):
    """Whole-stack ``(n, ...)`` arrays from the per-chunk results: probabilities, include, computed, zero, stalled,
    pairs and completeness (``(n, L)`` float64, NaN where a map has none: see :attr:`ChunkResult.completeness`).

    Chunks never started (a cancel) get NaN-free zeros: no probabilities, no maps; their pairs are selected from
    the ground truth alone where a rule needs no prediction (``all``, ``positive`` with a column).
    """
    from ..saliency.engine import select_pairs

    n_targets = len(task.targets)
    probabilities = np.zeros((n, n_model_labels), np.float32)
    completeness = np.full((n, n_targets), np.nan)
    arrays = {k: np.zeros((n, n_targets), bool) for k in ("include", "done", "zero", "stalled", "pairs")}
    for c in range(task.n_chunks):
        idx = task.indices(c)
        record = records.get(c)
        if record is None:
            truth = None if task.truth is None else task.truth[idx]
            guess = np.full((len(idx), n_targets), -np.inf)  # never "predicted positive"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arrays["include"][idx] = select_pairs(
                    task.subset, truth, guess, task.config.threshold, known=task.known
                )
            arrays["pairs"][idx] = (
                arrays["include"][idx] if task.config.compute == "subset" else np.ones((len(idx), n_targets), bool)
            )
            continue
        probabilities[idx] = record.probabilities
        if record.completeness is not None:
            completeness[idx] = record.completeness
        for key in arrays:
            arrays[key][idx] = getattr(record, key)
    return (
        probabilities,
        arrays["include"],
        arrays["done"],
        arrays["zero"],
        arrays["stalled"],
        arrays["pairs"],
        completeness,
    )
