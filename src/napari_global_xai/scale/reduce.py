"""Tree reduction of :class:`~napari_global_xai.aggregate.GlobalMapAccumulator` partials on a Dask cluster.

Each chunk task returns the partial accumulator of its own maps; :class:`TreeReducer` merges partials pairwise as
they arrive, on the workers, like a binary counter (two partials of level k become one of level k + 1), so the
merge depth is log2 of the number of chunks and no process ever holds more than a few partials. The mean maps are
int64 fixed point and therefore bit-identical for any merge order and any tree shape; the per-pixel standard
deviation is float64 (Chan et al.) and equal to float64 rounding.
"""

from __future__ import annotations

import copy

__all__ = ["merge_partials", "TreeReducer"]


def merge_partials(first, second):
    """A new accumulator holding both partials' images (neither input is changed).

    Inputs are never mutated: a worker hands the same object to every task that reads a result, and a task re-run
    after a lost worker must see its inputs as they were. ``None`` stands for "no maps".
    """
    first, second = _partial_of(first), _partial_of(second)
    if first is None or second is None:
        return copy.deepcopy(first if second is None else second)
    return copy.deepcopy(first).merge(second)


def _partial_of(value):
    """An accumulator, or the ``partial`` of a chunk outcome that carries one."""
    return getattr(value, "partial", value)


class TreeReducer:
    """Merge accumulator futures pairwise on the cluster as they are added (a balanced binary tree).

    Parameters
    ----------
    client : distributed.Client
    merge : callable(a, b) -> accumulator
        Default :func:`merge_partials`.

    Notes
    -----
    ``add`` takes futures in any order (as they complete); the tree's shape then depends on timing, which the mean
    maps never notice (fixed point) and the standard deviation notices only at float64 rounding.
    """

    def __init__(self, client, merge=merge_partials):
        self.client = client
        self.merge = merge
        self.levels: list = []  # levels[k]: a future holding 2**k chunks' partials, or None

    def add(self, future) -> None:
        """Add one partial (a future of an accumulator or of a chunk outcome)."""
        level = 0
        while True:
            if level == len(self.levels):
                self.levels.append(None)
            waiting = self.levels[level]
            if waiting is None:
                self.levels[level] = future
                return
            self.levels[level] = None
            future = self.client.submit(self.merge, waiting, future, pure=False)
            level += 1

    def result(self):
        """The merged accumulator of everything added (gathered here), or None when nothing was added."""
        rest = [f for f in self.levels if f is not None]
        self.levels = []
        if not rest:
            return None
        total = rest[0]
        for other in rest[1:]:
            total = self.client.submit(self.merge, total, other, pure=False)
        if len(rest) == 1:  # one partial: copy it, so the caller never holds an object a worker may still use
            total = self.client.submit(merge_partials, total, None, pure=False)
        return total.result()
