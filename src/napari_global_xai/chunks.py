"""The seam where executors plug in: chunks of images, the shipped-task contract and the in-process executor.

The seam is shared: PEPPR's curve chunks (:mod:`napari_global_xai.peppr.task`) and SAG's image groups
(:mod:`napari_global_xai.sag.task`) follow the same :class:`ShippedTask` contract, so any executor runs all
three.

An explain run (:func:`~napari_global_xai.explain.pipeline.run_explain`) cuts the stack into chunks of
``config.chunk_size`` consecutive images (chunk ``c`` holds images ``c * size`` … ``min((c + 1) * size, n) - 1``).
Everything a chunk needs is computed by one picklable callable,
:class:`~napari_global_xai.explain.task.ExplainChunkTask`; it returns a
:class:`ChunkResult` that the run hands to its writer (memory, TIFF or the resumable Zarr store of
:mod:`napari_global_xai.store`).

The executor seam
-----------------
``run_explain(..., executor=None)`` accepts any object with this one method::

    executor.map_chunks(task, pending, cancel=None, on_maps=None) -> Iterator[ChunkResult]

``task``
    An :class:`~napari_global_xai.explain.task.ExplainChunkTask`; ``task(c, cancel=None, on_maps=None)`` computes
    chunk ``c`` and returns its :class:`ChunkResult`. It predicts the chunk's probabilities, selects the chunk's
    (image, label) pairs (:func:`~napari_global_xai.saliency.engine.select_pairs` is row-wise, so each chunk decides
    alone), computes their maps and folds them into a fresh
    :class:`~napari_global_xai.aggregate.GlobalMapAccumulator` of the chunk. The task pickles without its model
    engine (rebuilt on first use where it lands), so a worker can run it.
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .aggregate import GlobalMapAccumulator

__all__ = [
    "ChunkResult",
    "ChunkExecutor",
    "ShippedTask",
    "InProcessExecutor",
    "chunk_bounds",
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
    notes : list of str
        The method's one-line warnings.
    completeness : numpy.ndarray, (k, L) float64, or None
        Each computed map's completeness error ``|Σ attribution − (f(x) − f(b))| / |f(x) − f(b)|`` where the method
        reports it (IG); NaN elsewhere (not computed, another method, or ``f(x) = f(b)``). None: not recorded.
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
    completeness: np.ndarray | None = None


ChunkFn = Callable[..., ChunkResult]


class ChunkExecutor(Protocol):
    """What :func:`~napari_global_xai.explain.pipeline.run_explain` needs from an executor (see the module doc)."""

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
