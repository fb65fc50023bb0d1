"""One chunk of images of a curve run (PEPPR, deletion/insertion): the unit an executor runs, here or on a cluster.

:meth:`~napari_global_xai.peppr.engine.CurveEngine.run` plans every curve's keys once, cuts the images the curves
use into chunks of ``chunk_size`` and hands a :class:`CurveChunkTask` to an executor (the executor seam of
:mod:`napari_global_xai.chunks`). A task scores one chunk's distinct ``(image, mask)`` pairs and returns them as a
:class:`CurveChunkResult`; the engine folds each result into the curves as it arrives, so the client holds the
per-image scores of every curve and computes each fraction's AUROC once, over all images, at the end.

Each chunk is scored alone, in the same batches wherever it runs, so a cluster run gives the same scores as the
in-process run (bit-identical on the same hardware). The one difference is bookkeeping: the shared fully filled
image of a constant fill is forwarded once per process (per worker), so ``n_forwards`` grows by one per extra
worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..chunks import ShippedTask
from ..control import RunControl

__all__ = ["CurveChunkTask", "CurveChunkResult"]


@dataclass
class CurveChunkResult:
    """The scores of one chunk.

    Attributes
    ----------
    chunk : int
    images : numpy.ndarray of int
        Stack indices of the chunk's images.
    scores : numpy.ndarray, (n_pairs, n_outputs) float64
        Raw model outputs of each distinct ``(image, key)`` pair.
    rows : dict
        ``(j, key id) -> row of scores`` for image ``images[j]``.
    shared : numpy.ndarray or None
        Outputs of the constant fully filled image (when a curve needs it).
    n_forwards : int
        Image forwards this chunk ran.
    batch_size : int
        The scorer's batch size after the chunk (smaller after an out-of-memory back-off).
    complete : bool
        Always True: a cancel inside a chunk raises instead (its scores are not usable alone).
    """

    chunk: int
    images: np.ndarray
    scores: np.ndarray
    rows: dict
    shared: np.ndarray | None
    n_forwards: int
    batch_size: int
    complete: bool = True


@dataclass
class CurveChunkTask(ShippedTask):
    """Score chunk ``c`` of a planned curve run: ``task(c, cancel=None, on_maps=None) -> CurveChunkResult``.

    Parameters
    ----------
    model : LoadedModel
    stack : array-like or AlignedStack
        The images, read in their own frame (the engine's ``images``).
    engine : CurveEngine
        The planned engine (keys and rankings); shipped without model and images (:meth:`detach`).
    plan : _Plan
        The engine's plan (active images, keys per image).
    chunk_size : int
        Images per chunk.

    Notes
    -----
    The scorer is built on the first chunk in each process and kept, so its cache of the shared fully filled image
    and its out-of-memory back-off last for the whole run there. ``on_maps(n, 0, 0)`` is called after each model
    pass with the ``n`` image forwards it ran (in-process progress).
    """

    model: object
    stack: object
    engine: object
    plan: object
    chunk_size: int

    def __post_init__(self):
        self._scorer = None

    @property
    def n_chunks(self) -> int:
        return -(-len(self.plan.active) // self.chunk_size)

    def images(self, chunk: int) -> np.ndarray:
        """Stack indices of chunk ``chunk``."""
        return self.plan.active[chunk * self.chunk_size : (chunk + 1) * self.chunk_size]

    def reset(self) -> None:
        self._scorer = None

    def detach(self):
        shell = super().detach()
        shell.engine = self.engine.detached()
        return shell

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_scorer"] = None
        return state

    def __call__(
        self, chunk: int, cancel: Callable[[], bool] | None = None, on_maps: Callable[..., None] | None = None
    ) -> CurveChunkResult:
        """Score chunk ``chunk``; a cancel raises :class:`~napari_global_xai.control.Cancelled`."""
        from .engine import _take

        if self._scorer is None:
            self._scorer = self.engine.scorer(self.model)
        scorer = self._scorer
        scorer.control = RunControl(cancel=cancel)
        on_batch = None if on_maps is None else (lambda n: on_maps(n, 0, 0))
        images = self.images(chunk)
        before = scorer.n_forwards
        x = self.model.preprocess(_take(self.stack, images))
        scores, rows, shared = self.engine.score_chunk(scorer, x, images, self.plan, on_batch)
        return CurveChunkResult(chunk, images, scores, rows, shared, scorer.n_forwards - before, scorer.batch_size)
