"""The cohort reduction: one pass over an explain run's stored image-wise maps, folding each map into the groups
(cohort, rest) that use it.

``cohort_reduce(source, label_index, labels, groups, control=None, overall_labels=None) -> [GlobalMapAccumulator]``

* The source is a results store (:class:`~napari_global_xai.store.reader.MapBlocks`: stored values, read a block of
  images at a time as runs of consecutive images) or any ``(n, L, H, W)`` array of maps (the float32 maps of a TIFF
  results folder, a dask array). One block is read in a thread while the previous one is summed.
* Maps that were not computed or are zero everywhere are left out, as the explain job leaves them out.
* **float16 stores** (the default) are summed as stored, never converted to float32 (the conversion cost more than
  the sums): every float16 value is a multiple of 2**-24 below 2**16 in magnitude, so a float64 sum over a block is
  exact, and the blocks' sums are kept as int64 in units of 2**-24 (:class:`HalfSums`). They become the accumulator's
  fixed point (:data:`~napari_global_xai.aggregate.FRACTION_BITS`, in map units: stored / ``map_scale``) once, at
  the end, so the mean does not depend on how the images fell into blocks. Zero maps, NaN and Inf are found from the
  values' bit patterns (two integer max passes), not from float comparisons.
* **float32 maps** (float32 stores, TIFF folders) are divided by the store's power-of-two scale (exact) and folded into
  :class:`~napari_global_xai.aggregate.GlobalMapAccumulator` (``moments=False``): the same sums to the bit as the
  explain job's global map.

Measured on 1,000 maps of 384 x 512 in a float16 store: ``benchmarks/bench_cohort.py`` (RESULTS.md).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..aggregate import FRACTION_BITS, GlobalMapAccumulator
from ..control import Cancelled, RunControl

__all__ = ["cohort_reduce", "HalfSums", "BLOCK"]

#: Images read from the store at a time (one block is read while the previous one is summed).
BLOCK = 32

#: Every float16 value is an integer multiple of 2**-HALF_UNIT_BITS (the smallest subnormal).
HALF_UNIT_BITS = 24
#: Magnitude bit patterns from here up are Inf and NaN.
_HALF_INF = 0x7C00
_SIGN = 0x8000
#: Images whose int64 sums in 2**-24 units cannot overflow: each adds less than 2**40 per pixel.
_HALF_MAX_IMAGES = 2**22


def _nonfinite() -> ValueError:
    return ValueError("image-wise maps contain NaN or Inf; refusing to aggregate them")


def half_codes(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per map of ``maps`` (float16, ``(k, L, ...)``): whether it is non-zero, and its largest magnitude's bit pattern
    (both ``(k, L)``).

    Positive values order like their bit patterns read as int16 (negatives read below 0), and negative values'
    patterns read as uint16 order like their magnitudes above 0x8000; ±0 is 0 and 0x8000.
    """
    flat = maps.reshape(*maps.shape[:2], -1)
    positive = flat.view(np.int16).max(axis=2).astype(np.int32)
    negative = flat.view(np.uint16).max(axis=2).astype(np.int32)
    return (positive > 0) | (negative > _SIGN), np.maximum(positive, negative - _SIGN)


class HalfSums:
    """Exact sums of float16 maps per label: int64 in units of 2**-24 of the stored value, and counts."""

    def __init__(self, n_labels: int, shape):
        self.units = np.zeros((n_labels, *shape), np.int64)
        self.count = np.zeros(n_labels, np.int64)
        self.top = 0  # the largest magnitude's bit pattern seen

    def add(self, lab: int, maps: np.ndarray, top: int) -> None:
        """Add ``(k, H, W)`` float16 maps of label ``lab``; ``top`` is their largest magnitude's bit pattern."""
        if top >= _HALF_INF:
            raise _nonfinite()
        if self.count[lab] + len(maps) > _HALF_MAX_IMAGES:
            raise OverflowError(f"more than {_HALF_MAX_IMAGES} maps of one label in one cohort")
        total = maps.sum(axis=0, dtype=np.float64)  # exact: len(maps) * 2**16 < 2**(53 - 24)
        total *= 2.0**HALF_UNIT_BITS
        self.units[lab] += total.astype(np.int64)
        self.count[lab] += len(maps)
        self.top = max(self.top, top)

    def accumulator(self, labels, overall_labels, scale: float) -> GlobalMapAccumulator:
        """The sums as a ``moments=False`` accumulator of maps = stored / ``scale`` (a power of two): the fixed point
        is ``units * 2**(FRACTION_BITS - 24) / scale``, rounded half up once when that drops bits."""
        shift = FRACTION_BITS - HALF_UNIT_BITS - int(round(np.log2(scale)))
        if 2.0 ** round(np.log2(scale)) != scale:
            raise ValueError(f"map scale {scale} is not a power of two")
        if shift >= 0:
            if int(np.abs(self.units).max(initial=0)) >= 2 ** (62 - shift):
                raise OverflowError("fixed-point accumulator would overflow; normalise maps (mass/max) first")
            fixed = self.units << shift
        else:
            fixed = (self.units + (1 << (-shift - 1))) >> -shift
        top = float(np.uint16(self.top).view(np.float16))
        state = {
            "sum": fixed,
            "count": self.count.copy(),
            "mean64": np.zeros(self.units.shape),
            "m2": np.zeros(self.units.shape),
            "max_abs": np.float64(top / scale),
        }
        return GlobalMapAccumulator.from_state(labels, state, overall_labels, moments=False)


class _ArrayBlocks:
    """Blocks of an ``(n, L, H, W)`` array of maps (numpy, memmap, dask) as float32, in map units."""

    scale = 1.0

    def __init__(self, maps):
        self.maps = maps
        self.shape = tuple(maps.shape)

    def read(self, rows: np.ndarray, label_index: list[int]) -> np.ndarray:
        contiguous = rows[-1] - rows[0] + 1 == len(rows)
        block = self.maps[slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows]
        if len(label_index) != block.shape[1]:
            block = block[:, label_index]
        if hasattr(block, "compute"):
            block = block.compute()
        return np.asarray(block, np.float32)


def cohort_reduce(
    source,
    label_index: list[int],
    labels: list[str],
    groups: list[np.ndarray],
    control: RunControl | None = None,
    overall_labels=None,
    block: int = BLOCK,
) -> list[GlobalMapAccumulator]:
    """One pass over the stored maps, folding each image's maps into the groups that use them (module notes).

    Parameters
    ----------
    source : MapBlocks or array-like, (n, L, H, W)
        The run's image-wise maps: its store's blocks, or an array of maps (float32 in map units).
    label_index : list of int
        Positions of ``labels`` on the maps' second axis.
    labels : list of str
    groups : list of numpy.ndarray of bool, each (n, len(labels))
        Which (image, label) maps each accumulator takes (e.g. the cohort's and the rest's); an image no group uses
        is never read.
    control : RunControl, optional
        Progress in images (stage ``cohort``) and cancel between blocks.
    overall_labels : list of str, optional
        Of the accumulators (default: every label not starting with ``any``).

    Returns
    -------
    list of GlobalMapAccumulator
        One per group (``moments=False``).

    Raises
    ------
    ValueError
        A map holds NaN or Inf.
    Cancelled
        On a cancel, between blocks.
    """
    control = control or RunControl()
    blocks_of = source if hasattr(source, "read") else _ArrayBlocks(source)
    shape = tuple(blocks_of.shape[2:])
    accs = [GlobalMapAccumulator(labels, shape, overall_labels, moments=False) for _ in groups]
    halves = [HalfSums(len(labels), shape) for _ in groups]
    wanted = np.nonzero(np.any([g.any(axis=1) for g in groups], axis=0))[0]
    blocks = [wanted[s : s + block] for s in range(0, len(wanted), block)]
    done = 0
    control.report(0, len(wanted), "cohort")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cohort-read") as pool:
        pending = pool.submit(blocks_of.read, blocks[0], label_index) if blocks else None
        for b, indices in enumerate(blocks):
            maps = pending.result()
            pending = pool.submit(blocks_of.read, blocks[b + 1], label_index) if b + 1 < len(blocks) else None
            if maps.dtype == np.float16:
                nonzero, tops = half_codes(maps)
                for sums, use in zip(halves, groups):
                    include = use[indices] & nonzero
                    for lab in np.nonzero(include.any(axis=0))[0]:
                        rows = include[:, lab]
                        sums.add(int(lab), maps[:, lab] if rows.all() else maps[rows, lab], int(tops[rows, lab].max()))
            else:
                if blocks_of.scale != 1:
                    maps = maps.astype(np.float32, copy=False)
                    maps /= np.float32(blocks_of.scale)
                flat = maps.reshape(*maps.shape[:2], -1)
                nonzero = (flat.max(axis=2) != 0) | (flat.min(axis=2) != 0)
                for acc, use in zip(accs, groups):
                    include = use[indices] & nonzero
                    if include.any():
                        acc.update(maps, include)
            done += len(indices)
            control.report(done, len(wanted), "cohort")
            if control.cancelled():
                if pending is not None:
                    pending.cancel()
                raise Cancelled("cohort cancelled: nothing written (a mean over part of a cohort is no cohort's map)")
    return [  # a store's maps are all float16 or all float32: one of the two is empty
        acc.merge(sums.accumulator(labels, acc.overall_labels, blocks_of.scale)) for acc, sums in zip(accs, halves)
    ]
