"""One group of images of a SAG run: the unit an executor runs, in this process or on a Dask cluster.

:func:`~napari_global_xai.sag.pipeline.run_sag` cuts the images into groups of ``images_together`` (the images of a
group share every model call) and hands a :class:`SagChunkTask` to an executor (the seam of
:mod:`napari_global_xai.chunks`); task ``c`` computes group ``c``'s graphs. Each group is computed alone, in the same
batches wherever it runs, so a cluster run gives the same graphs as the in-process run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..chunks import ShippedTask
from ..control import RunControl

__all__ = ["SagChunkTask", "SagChunkResult"]


@dataclass
class SagChunkResult:
    """The graphs of one group (``complete`` is always True: a cancel inside a group raises)."""

    chunk: int
    results: list
    complete: bool = True


@dataclass
class SagChunkTask(ShippedTask):
    """Compute group ``c`` of a SAG run: ``task(c, cancel=None, on_maps=None) -> SagChunkResult``.

    Parameters
    ----------
    model : LoadedModel
    stack : AlignedStack or array-like, (n, H, W, C)
        Raw pixels in the model's frame.
    label_index : int
    groups : list of list of int
        Stack indices of each group.
    config : SagConfig
    saliency : list of list of arrays, optional
        Given heuristic maps per group (None: the task computes them with ``config.method``).
    """

    model: object
    stack: object
    label_index: int
    groups: list
    config: object
    saliency: list | None = None

    def __call__(
        self, chunk: int, cancel: Callable[[], bool] | None = None, on_maps: Callable[..., None] | None = None
    ) -> SagChunkResult:
        """The group's graphs; a cancel raises :class:`~napari_global_xai.control.Cancelled`."""
        from .pipeline import _gather, _sag_group

        indices = self.groups[chunk]
        maps = None if self.saliency is None else self.saliency[chunk]
        results = _sag_group(
            self.model,
            _gather(self.stack, indices),
            self.label_index,
            indices,
            maps,
            self.config,
            RunControl(cancel=cancel),
        )
        return SagChunkResult(chunk, results)
