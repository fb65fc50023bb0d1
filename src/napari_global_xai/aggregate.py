"""Pixel-wise aggregation of image-wise maps into label-wise and overall global explanations.

:class:`GlobalMapAccumulator` is a streaming, mergeable reducer: ``update(maps, include)`` consumes one chunk,
``merge(other)`` adds another accumulator, ``result()`` gives the :class:`GlobalMaps`. Sums and counts are kept in
int64 fixed point (:data:`FRACTION_BITS` fractional bits), so the mean does not depend on chunking, chunk order or
how chunks were spread over workers: streaming, merging halves and one big chunk give bit-identical means. The
per-pixel standard deviation uses Chan et al.'s parallel update of float64 second moments (identical up to float64
rounding).

Global map definitions (methods.md §1.6; the paper's exact rule is unknown, so the subset is selectable):
label-wise ``G_l = mean over images i in S_l of E_il``; overall ``G = mean over labels of G_l`` (labels named in
``overall_labels``, default every disease label, i.e. all but an ``any_*`` label, whose map is also reported).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["GlobalMaps", "GlobalMapAccumulator", "FRACTION_BITS", "overall_map"]

FRACTION_BITS = 40
_SCALE = float(2**FRACTION_BITS)
_LIMIT = 2**62
#: Maps summed at a time without moments (``moments=False``): small enough to stay in the CPU cache.
_SUM_BLOCK = 4


@dataclass
class GlobalMaps:
    """Label-wise global maps and their statistics.

    Attributes
    ----------
    labels : list of str
    mean : numpy.ndarray, (L, H, W) float64
        Label-wise global maps (NaN where no image contributed).
    std : numpy.ndarray, (L, H, W) float64
        Per-pixel standard deviation over the contributing maps (population).
    count : numpy.ndarray, (L,) int64
        Number of image-wise maps aggregated per label.
    overall : numpy.ndarray, (H, W) float64
        Mean of the label-wise maps of ``overall_labels`` that have at least one image.
    overall_labels : list of str
    metadata : dict
    """

    labels: list[str]
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray
    overall: np.ndarray
    overall_labels: list[str]
    metadata: dict = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A label's global map, or ``"overall"``."""
        if name == "overall":
            return self.overall
        return self.mean[self.labels.index(name)]


def overall_map(mean: np.ndarray, count: np.ndarray, labels: list[str], overall_labels: list[str]) -> np.ndarray:
    """Mean of the label-wise maps in ``overall_labels`` (equal label weight), skipping labels with no images."""
    idx = [labels.index(n) for n in overall_labels if count[labels.index(n)] > 0]
    if not idx:
        return np.full(mean.shape[1:], np.nan)
    return mean[idx].mean(axis=0)


class GlobalMapAccumulator:
    """Streaming, exactly mergeable per-label mean / std / count of image-wise maps.

    Parameters
    ----------
    labels : list of str
        Target labels: the second axis of the maps passed to :meth:`update`.
    shape : (H, W)
    overall_labels : list of str, optional
        Labels averaged into the overall map; default all labels not starting with ``any``.
    moments : bool
        Also keep the second moments for the standard deviation (default). Without them (``moments=False``, e.g. a
        cohort's maps read back from a store) only the exact fixed-point sums and counts are kept, several times
        faster: the mean is the same to the bit, the std is NaN.
    """

    def __init__(self, labels, shape, overall_labels=None, *, moments: bool = True):
        self.labels = list(labels)
        self.shape = tuple(shape)
        self.overall_labels = (
            list(overall_labels)
            if overall_labels is not None
            else [n for n in self.labels if not n.lower().startswith("any")] or list(self.labels)
        )
        n_labels = len(self.labels)
        self.moments = bool(moments)
        self._sum = np.zeros((n_labels, *self.shape), np.int64)
        self._count = np.zeros(n_labels, np.int64)
        self._mean64 = np.zeros((n_labels, *self.shape), np.float64)
        self._m2 = np.zeros((n_labels, *self.shape), np.float64)
        self._max_abs = 0.0

    def update(self, maps: np.ndarray, include: np.ndarray | None = None) -> GlobalMapAccumulator:
        """Add a chunk.

        Parameters
        ----------
        maps : numpy.ndarray, (k, L, H, W)
            Image-wise maps of k images for the L target labels.
        include : numpy.ndarray of bool, (k, L), optional
            Which (image, label) maps belong to the label's subset (e.g. images positive for it); default all.
        """
        maps = np.asarray(maps)
        if maps.ndim != 4 or maps.shape[1] != len(self.labels) or maps.shape[2:] != self.shape:
            raise ValueError(
                f"maps must be (k, {len(self.labels)}, {self.shape[0]}, {self.shape[1]}), got {maps.shape}"
            )
        if include is None:
            include = np.ones(maps.shape[:2], bool)
        include = np.asarray(include, bool)
        if not self.moments:
            for lab in range(len(self.labels)):
                rows = include[:, lab]
                sel = maps[:, lab] if rows.all() else maps[rows, lab]
                for start in range(0, len(sel), _SUM_BLOCK):  # a few maps at a time stay in the CPU cache
                    self._add_sum(lab, sel[start : start + _SUM_BLOCK])
            return self
        if not np.isfinite(maps[include]).all():
            raise ValueError("image-wise maps contain NaN or Inf; refusing to aggregate them")
        for lab in range(len(self.labels)):
            sel = maps[include[:, lab], lab].astype(np.float64)
            if len(sel):
                self._add(lab, sel)
        return self

    def _add(self, lab: int, sel: np.ndarray) -> None:
        self._max_abs = max(self._max_abs, float(np.abs(sel).max()))
        n_new = int(self._count[lab]) + len(sel)
        if self._max_abs * _SCALE * n_new >= _LIMIT:
            raise OverflowError("fixed-point accumulator would overflow; normalise maps (mass/max) first")
        self._sum[lab] += np.rint(sel * _SCALE).astype(np.int64).sum(axis=0)
        # Chan et al.: combine (count, mean, M2) of the chunk with the running ones
        n_a, n_b = float(self._count[lab]), float(len(sel))
        mean_b = sel.mean(axis=0)
        m2_b = ((sel - mean_b) ** 2).sum(axis=0)
        self._combine_moments(lab, n_a, n_b, mean_b, m2_b)
        self._count[lab] += len(sel)

    def _add_sum(self, lab: int, sel: np.ndarray) -> None:
        """The fixed-point sum alone (``moments=False``), equal to the bit to :meth:`_add`'s.

        ``rint(x * 2**40)`` is exact in float32 for float32 maps (a power-of-two scaling), and a float64 sum of
        integer-valued terms is exact while the sum of their magnitudes stays below 2**53: then it equals the int64
        sum, whatever the order. Larger sums (or float64 maps) take the int64 route of :meth:`_add`.
        """
        dtype = np.float32 if sel.dtype == np.float32 else np.float64
        fixed = np.multiply(sel, dtype(_SCALE), dtype=dtype)
        np.rint(fixed, out=fixed)
        top, bottom = float(fixed.max()), float(fixed.min())
        if not (np.isfinite(top) and np.isfinite(bottom)):
            raise ValueError("image-wise maps contain NaN or Inf; refusing to aggregate them")
        self._max_abs = max(self._max_abs, max(top, -bottom) / _SCALE)
        n_new = int(self._count[lab]) + len(sel)
        if self._max_abs * _SCALE * n_new >= _LIMIT:
            raise OverflowError("fixed-point accumulator would overflow; normalise maps (mass/max) first")
        if max(top, -bottom) * len(sel) < 2.0**53:
            self._sum[lab] += fixed.sum(axis=0, dtype=np.float64).astype(np.int64)
        else:
            self._sum[lab] += fixed.astype(np.int64).sum(axis=0)
        self._count[lab] += len(sel)

    def _combine_moments(self, lab, n_a, n_b, mean_b, m2_b):
        n = n_a + n_b
        delta = mean_b - self._mean64[lab]
        self._mean64[lab] += delta * (n_b / n)
        self._m2[lab] += m2_b + delta**2 * (n_a * n_b / n)

    def merge(self, other: GlobalMapAccumulator) -> GlobalMapAccumulator:
        """Add another accumulator's images (same labels and shape) into this one; returns self."""
        if other.labels != self.labels or other.shape != self.shape or other.moments != self.moments:
            raise ValueError("cannot merge accumulators with different labels, shapes or moments")
        for lab in range(len(self.labels)):
            n_b = float(other._count[lab])
            if n_b == 0:
                continue
            self._combine_moments(lab, float(self._count[lab]), n_b, other._mean64[lab], other._m2[lab])
            self._count[lab] += other._count[lab]
        self._sum += other._sum
        self._max_abs = max(self._max_abs, other._max_abs)
        return self

    def state(self) -> dict[str, np.ndarray]:
        """The exact internal state as arrays (fixed-point sums, counts, float64 moments), e.g. to save a chunk's.

        :meth:`from_state` rebuilds an accumulator that merges bit-identically to this one.
        """
        return {
            "sum": self._sum.copy(),
            "count": self._count.copy(),
            "mean64": self._mean64.copy(),
            "m2": self._m2.copy(),
            "max_abs": np.float64(self._max_abs),
        }

    @classmethod
    def from_state(cls, labels, state: dict, overall_labels=None, *, moments: bool = True) -> GlobalMapAccumulator:
        """An accumulator with the state saved by :meth:`state` (arrays are copied, dtypes checked)."""
        acc = cls(labels, np.shape(state["sum"])[1:], overall_labels, moments=moments)
        for key, dtype in (("sum", np.int64), ("count", np.int64), ("mean64", np.float64), ("m2", np.float64)):
            value = np.asarray(state[key])
            if value.dtype != dtype or value.shape != getattr(acc, f"_{key}").shape:
                raise ValueError(f"accumulator state {key!r}: {value.dtype} {value.shape} does not fit")
            setattr(acc, f"_{key}", value.copy())
        acc._max_abs = float(state["max_abs"])
        return acc

    def result(self, metadata: dict | None = None) -> GlobalMaps:
        """The label-wise and overall global maps so far."""
        count = self._count.copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self._sum / _SCALE / count.reshape(-1, 1, 1).astype(np.float64)
            std = np.sqrt(np.maximum(self._m2 / count.reshape(-1, 1, 1), 0.0))
        mean[count == 0] = np.nan
        std[count == 0] = np.nan
        if not self.moments:
            std[:] = np.nan
        return GlobalMaps(
            self.labels,
            mean,
            std,
            count,
            overall_map(mean, count, self.labels, self.overall_labels),
            list(self.overall_labels),
            dict(metadata or {}),
        )
