"""The unit of work of an explain run (one chunk of images) and the seam where executors plug in.

The seam is shared: PEPPR's curve chunks (:mod:`napari_global_xai.peppr.chunk_task`) and SAG's image groups
(:mod:`napari_global_xai.sag.chunk_task`) follow the same :class:`ShippedTask` contract, so any executor runs all
three.

An explain run (:func:`napari_global_xai.run.run_explain`) cuts the stack into chunks of ``config.chunk_size``
consecutive images (chunk ``c`` holds images ``c * size`` … ``min((c + 1) * size, n) - 1``). Everything a chunk
needs is computed by one picklable callable, :class:`ExplainChunkTask`; it returns a :class:`ChunkResult` that the
run hands to its writer (memory, TIFF or the resumable Zarr store of :mod:`napari_global_xai.store`).

The executor seam
-----------------
``run_explain(..., executor=None)`` accepts any object with this one method::

    executor.map_chunks(task, pending, cancel=None, on_maps=None) -> Iterator[ChunkResult]

``task``
    An :class:`ExplainChunkTask`; ``task(c, cancel=None, on_maps=None)`` computes chunk ``c`` and returns its
    :class:`ChunkResult`. It predicts the chunk's probabilities, selects the chunk's (image, label) pairs
    (:func:`~napari_global_xai.explain.engine.select_pairs` is row-wise, so each chunk decides alone), computes
    their maps and folds them into a fresh :class:`~napari_global_xai.aggregate.GlobalMapAccumulator` of the chunk.
    The task pickles without its model engine (rebuilt on first use where it lands), so a worker can run it.
``pending``
    The chunk numbers still to compute, increasing (chunks already finished in a resumed store are left out).
``cancel``
    ``cancel() -> bool`` of the run, or None. An executor stops starting chunks once it returns True. An executor
    that runs the task in this process passes ``cancel`` into the task, which then returns a partial result
    (``complete=False``) holding the maps finished so far; an executor that runs tasks elsewhere calls the task
    without it and drops (or awaits) the chunks in flight.
``on_maps``
    ``on_maps(k, selected, images)`` after each batch of ``k`` finished maps of the chunk's ``selected`` maps over
    its ``images`` images, for progress within a chunk; in-process only (an executor that runs tasks elsewhere
    ignores it). ``run_explain`` turns it into image progress between chunk results.

It yields one :class:`ChunkResult` per chunk **as chunks finish, in any order**; the run writes each as it comes
(in the calling thread: writers are not thread-safe, so an executor yields results, it never writes them),
and the global maps do not depend on the order (the accumulator is exact and mergeable; the run merges the chunk
accumulators in chunk order at the end). After yielding a result with ``complete=False`` it yields nothing more.
:class:`InProcessExecutor` (the default) is a plain loop.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .aggregate import GlobalMapAccumulator

__all__ = [
    "ChunkResult",
    "ChunkExecutor",
    "ShippedTask",
    "ExplainChunkTask",
    "InProcessExecutor",
    "chunk_bounds",
    "ChunkOrderMerge",
    "assemble_chunks",
]


def chunk_bounds(n_images: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of each chunk of ``chunk_size`` consecutive images (the last may be smaller)."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    return [(s, min(s + chunk_size, n_images)) for s in range(0, n_images, chunk_size)]


@dataclass
class ChunkResult:
    """Everything one chunk of an explain run produced.

    Attributes
    ----------
    chunk : int
        Chunk number.
    indices : numpy.ndarray of int, (k,)
        Image indices of the chunk (consecutive).
    maps : numpy.ndarray, (k, L, H, W) float32
        Image-wise maps in the left-eye frame (0 where not computed).
    done, zero, stalled : numpy.ndarray of bool, (k, L)
        Computed maps; computed maps zero everywhere; computed maps the method flagged as stalled.
    include : numpy.ndarray of bool, (k, L)
        Subset membership of each (image, label) pair (which maps may enter the label's global map).
    pairs : numpy.ndarray of bool, (k, L)
        Pairs selected for computing (``include``, or all pairs with ``compute="all"``).
    probabilities : numpy.ndarray, (k, n_model_labels) float32
    accumulator : GlobalMapAccumulator
        The chunk's usable maps (done, in the subset, not all-zero, not stalled unless included) alone.
    complete : bool
        False when the chunk was cancelled part-way (its finished maps are kept; a resumed run recomputes it).
    """

    chunk: int
    indices: np.ndarray
    maps: np.ndarray
    done: np.ndarray
    zero: np.ndarray
    stalled: np.ndarray
    include: np.ndarray
    pairs: np.ndarray
    probabilities: np.ndarray
    accumulator: GlobalMapAccumulator
    complete: bool = True
    notes: list[str] = field(default_factory=list)


ChunkFn = Callable[..., ChunkResult]


class ChunkExecutor(Protocol):
    """What :func:`~napari_global_xai.run.run_explain` needs from an executor (see the module docstring)."""

    def map_chunks(
        self,
        task: ChunkFn,
        pending: Sequence[int],
        cancel: Callable[[], bool] | None = None,
        on_maps: Callable[[int, int, int], None] | None = None,
    ) -> Iterator[ChunkResult]: ...


class InProcessExecutor:
    """Run chunks one after another in this process (the default executor)."""

    def map_chunks(
        self,
        task: ChunkFn,
        pending: Sequence[int],
        cancel: Callable[[], bool] | None = None,
        on_maps: Callable[[int, int, int], None] | None = None,
    ) -> Iterator[ChunkResult]:
        for c in pending:
            if cancel is not None and cancel():
                return
            result = task(c, cancel=cancel, on_maps=on_maps)
            yield result
            if not result.complete:
                return


class ShippedTask:
    """A chunk task that an executor can send to another process without its model and pixels.

    A task keeps the model in ``model`` and the pixel source in ``stack``; :meth:`detach` gives a copy without them
    (and without anything built in this process, such as a saliency engine or a scorer), which travels with the
    model's and the stack's recipes (:class:`~napari_global_xai.scale.specs.ModelSpec`,
    :class:`~napari_global_xai.scale.specs.StackSpec`); :meth:`attach` puts a worker's own model and stack back.
    Explain, PEPPR and SAG chunk tasks share this contract, so one executor serves all three.
    """

    model: object
    stack: object

    def reset(self) -> None:
        """Forget what was built in this process (engines, scorers); a subclass with such state overrides it."""

    def detach(self):
        """A copy without model, stack and per-process state."""
        shell = copy.copy(self)
        shell.model = shell.stack = None
        shell.reset()
        return shell

    def attach(self, model, stack):
        """A copy of a detached task with this process's ``model`` and ``stack``."""
        task = copy.copy(self)
        task.model, task.stack = model, stack
        task.reset()
        return task


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
            from .explain.engine import ImageMapEngine

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
        from .batching import Cancelled
        from .explain.engine import predict_probabilities, select_pairs

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
        complete = True
        engine = self.engine
        on_batch = None
        if on_maps is not None:
            selected = int(pairs.sum())

            def on_batch(n_maps: int) -> None:
                on_maps(n_maps, selected, k)

        try:
            engine.compute(
                pixels, pairs, cancel=cancel, on_batch=on_batch, out=maps, done=done, zero=zero, stalled=stalled
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
    """Whole-stack ``(n, ...)`` arrays from the per-chunk results: probabilities, include, computed, zero, ...

    Chunks never started (a cancel) get NaN-free zeros: no probabilities, no maps; their pairs are selected from
    the ground truth alone where a rule needs no prediction (``all``, ``positive`` with a column).
    """
    from .explain.engine import select_pairs

    n_targets = len(task.targets)
    probabilities = np.zeros((n, n_model_labels), np.float32)
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
        for key in arrays:
            arrays[key][idx] = getattr(record, key)
    return (probabilities, arrays["include"], arrays["done"], arrays["zero"], arrays["stalled"], arrays["pairs"])
