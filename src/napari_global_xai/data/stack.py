"""``AlignedStack``: n spatially aligned images with lazy pixels, ids, laterality, labels and provenance.

Two frames of reference:

``"stored"``
    the images as they are on disk;
``"left"``
    the harmonised left-eye frame: images of right eyes (laterality ``"R"``) are mirrored left-right, so the same
    anatomy sits at the same pixel in every image. Per-image maps computed in this frame are mapped back with
    :meth:`AlignedStack.to_stored_frame`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import numpy as np

from .errors import StackError
from .labels import LabelsTable, duplicates, laterality_array, preview

__all__ = ["AlignedStack", "Indices", "FRAMES"]

#: Allowed values of :attr:`AlignedStack.frame`.
FRAMES = ("stored", "left")
#: An image index: an int, a slice, a sequence / array of ints, or a boolean mask of length n.
Indices: TypeAlias = int | np.integer | slice | Sequence[int] | np.ndarray
#: Memory source name used when pixels do not come from files.
IN_MEMORY = "<memory>"
_MEAN_CHUNK = 32


@dataclass(eq=False, repr=False)
class AlignedStack:
    """n aligned images of one shape, with ids, laterality, labels and the files they came from.

    Parameters
    ----------
    pixels : array-like, shape (n, H, W, C)
        As stored on disk: numpy array, numpy memmap, zarr array or dask array. Never loaded whole here.
    image_ids : list of str
        One unique id per image.
    laterality : array-like of str, shape (n,), optional
        ``"L"``, ``"R"`` or ``""`` (unknown, treated as left; ``left``/``right`` accepted). Defaults to
        ``labels.laterality`` when present, else all ``""``.
    labels : LabelsTable, optional
        Rows in the same order as the images (``labels.image_ids == image_ids``).
    sources : list of str, optional
        Provenance: the file each image came from (default ``"<memory>"``).
    frame : {"stored", "left"}
        Orientation that :meth:`get` returns.

    Raises
    ------
    StackError
        On a pixels array that is not 4-D, ids / laterality / sources of the wrong length, duplicate ids, bad
        laterality values, labels whose ids differ from ``image_ids``, or an unknown frame.
    """

    pixels: Any
    image_ids: list[str]
    laterality: np.ndarray | None = None
    labels: LabelsTable | None = None
    sources: list[str] | None = None
    frame: str = "stored"

    def __post_init__(self) -> None:
        if len(self.pixels.shape) != 4:
            raise StackError(f"pixels must have shape (n, H, W, C), got {tuple(self.pixels.shape)}")
        if self.frame not in FRAMES:
            raise StackError(f"frame must be one of {FRAMES}, got {self.frame!r}")
        self.image_ids = [str(image_id) for image_id in self.image_ids]
        self._check_length(self.image_ids, "image_ids")
        if dup := duplicates(self.image_ids):
            raise StackError(f"duplicate image ids: {preview(dup)}")
        self._check_labels()
        self.laterality = self._resolved_laterality()
        self.sources = [IN_MEMORY] * self.n if self.sources is None else [str(s) for s in self.sources]
        self._check_length(self.sources, "sources")

    # -------------------------------------------------------------------------------------------- validation

    def _check_length(self, values: Sequence[object], what: str) -> None:
        if len(values) != self.n:
            raise StackError(f"{what} has {len(values)} entries for {self.n} images")

    def _check_labels(self) -> None:
        if self.labels is None or self.labels.image_ids == self.image_ids:
            return
        if len(self.labels) != self.n:
            raise StackError(f"labels have {len(self.labels)} rows for {self.n} images")
        first = next(i for i, (a, b) in enumerate(zip(self.labels.image_ids, self.image_ids)) if a != b)
        raise StackError(
            f"labels are not in the stack's image order: row {first} is {self.labels.image_ids[first]!r}, image "
            f"{first} is {self.image_ids[first]!r} (align them with LabelsTable.aligned_to(image_ids))"
        )

    def _resolved_laterality(self) -> np.ndarray:
        if self.laterality is not None:
            values = list(np.asarray(self.laterality, dtype=object).reshape(-1))
        elif self.labels is not None and self.labels.laterality is not None:
            values = list(self.labels.laterality)
        else:
            values = [""] * self.n
        self._check_length(values, "laterality")
        return laterality_array(values, self.image_ids, StackError)

    # -------------------------------------------------------------------------------------------- shape

    @property
    def n(self) -> int:
        """Number of images."""
        return int(self.pixels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n, H, W, C)``."""
        return tuple(int(s) for s in self.pixels.shape)  # type: ignore[return-value]

    @property
    def n_channels(self) -> int:
        """``C``."""
        return int(self.pixels.shape[3])

    @property
    def dtype(self) -> np.dtype:
        """Pixel data type."""
        return np.dtype(self.pixels.dtype)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        labels = None if self.labels is None else self.labels.names
        return (
            f"AlignedStack(n={self.n}, shape={self.shape}, dtype={self.dtype}, frame={self.frame!r}, "
            f"labels={labels}, pixels={type(self.pixels).__module__}.{type(self.pixels).__name__})"
        )

    # -------------------------------------------------------------------------------------------- access

    def indices(self, indices: Indices) -> np.ndarray:
        """Normalise ``indices`` (int, slice, ints, boolean mask; negatives allowed) to an int array.

        Raises
        ------
        IndexError
            If an index is out of range or not an integer.
        """
        return np.atleast_1d(np.arange(self.n)[indices]).astype(np.intp, copy=False)

    def get(self, indices: Indices) -> np.ndarray:
        """Pixels of some images, in this stack's frame.

        Parameters
        ----------
        indices : int, slice, sequence of int, numpy.ndarray
            Which images; an int gives a batch of one.

        Returns
        -------
        numpy.ndarray, shape (k, H, W, C)
            A new in-memory array (never a view of :attr:`pixels`).

        Raises
        ------
        StackError
            If a floating-point image holds NaN or Inf (names the image id and its file), or an image cannot be
            decoded (names the file).
        IndexError
            On an out-of-range index.
        """
        idx = self.indices(indices)
        pixels = _take(self.pixels, idx)
        self._check_finite(pixels, idx)
        if self.frame == "left":
            flip = self.laterality[idx] == "R"
            pixels[flip] = pixels[flip][:, :, ::-1]
        return pixels

    def _check_finite(self, pixels: np.ndarray, idx: np.ndarray) -> None:
        if not np.issubdtype(pixels.dtype, np.floating) or pixels.size == 0:
            return
        finite = np.isfinite(pixels).reshape(len(pixels), -1).all(axis=1)
        if finite.all():
            return
        bad = idx[~finite]
        more = f" ({len(bad) - 1} more image(s) in this batch too)" if len(bad) > 1 else ""
        raise StackError(f"image {self.image_ids[bad[0]]!r} ({self.sources[bad[0]]}) contains NaN or Inf values{more}")

    def iter_chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Walk the stack in consecutive chunks.

        Parameters
        ----------
        size : int
            Images per chunk (the last one may be smaller).

        Yields
        ------
        indices : numpy.ndarray of int
        pixels : numpy.ndarray, shape (len(indices), H, W, C)
            As returned by :meth:`get`.
        """
        if size < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        for start in range(0, self.n, size):
            idx = np.arange(start, min(start + size, self.n))
            yield idx, self.get(idx)

    def mean_image(self, max_images: int = 256) -> np.ndarray:
        """Mean of up to ``max_images`` evenly spaced images in this frame (an "anatomy" backdrop).

        Parameters
        ----------
        max_images : int
            Cap on the number of images read.

        Returns
        -------
        numpy.ndarray, shape (H, W, C), float32

        Raises
        ------
        StackError
            If the stack is empty, or as :meth:`get`.
        """
        if self.n == 0:
            raise StackError("cannot average an empty stack")
        idx = np.unique(np.linspace(0, self.n - 1, num=min(self.n, max(1, max_images))).round().astype(np.intp))
        total = np.zeros(self.shape[1:], np.float64)
        for chunk in np.array_split(idx, math.ceil(len(idx) / _MEAN_CHUNK)):
            total += self.get(chunk).sum(axis=0, dtype=np.float64)
        return (total / len(idx)).astype(np.float32)

    # -------------------------------------------------------------------------------------------- frames

    def to_left_eye(self) -> AlignedStack:
        """This stack in the left-eye frame: :meth:`get` mirrors right eyes. Lazy; shares :attr:`pixels`.

        Returns
        -------
        AlignedStack
            ``self`` if already in the left-eye frame (never flips twice), else a new stack with ``frame="left"``.
        """
        return self if self.frame == "left" else replace(self, frame="left")

    def in_frame(self, frame: str) -> AlignedStack:
        """This stack with :meth:`get` returning pixels in ``frame`` (``"left"`` or ``"stored"``). Lazy.

        Raises
        ------
        StackError
            Unknown frame.
        """
        if frame not in FRAMES:
            raise StackError(f"frame must be one of {FRAMES}, got {frame!r}")
        return self if self.frame == frame else replace(self, frame=frame)

    def to_stored_frame(self, maps: np.ndarray, indices: Indices | None = None) -> np.ndarray:
        """Map per-image maps from the left-eye frame back to each image's stored orientation.

        Parameters
        ----------
        maps : array-like, shape (k, ..., H, W)
            One map per image (any trailing width), in the left-eye frame.
        indices : int, slice, sequence of int, optional
            The images ``maps`` belong to (``k = len(indices)``); default all ``n`` images.

        Returns
        -------
        numpy.ndarray
            A new array: maps of right eyes mirrored along the last axis, others copied.

        Raises
        ------
        StackError
            If ``maps`` has fewer than 3 dimensions or its length differs from the number of images.
        """
        return self._mirror_right_eyes(maps, indices)

    def to_left_frame(self, maps: np.ndarray, indices: Indices | None = None) -> np.ndarray:
        """Map per-image maps from the stored orientation to the left-eye frame (inverse of
        :meth:`to_stored_frame`; the same mirroring, which is its own inverse).

        Parameters
        ----------
        maps : array-like, shape (k, ..., H, W)
        indices : int, slice, sequence of int, optional

        Returns
        -------
        numpy.ndarray

        Raises
        ------
        StackError
            As :meth:`to_stored_frame`.
        """
        return self._mirror_right_eyes(maps, indices)

    def _mirror_right_eyes(self, maps: np.ndarray, indices: Indices | None) -> np.ndarray:
        laterality = self.laterality if indices is None else self.laterality[self.indices(indices)]
        out = np.array(maps, copy=True)
        if out.ndim < 3 or len(out) != len(laterality):
            raise StackError(f"maps must have shape ({len(laterality)}, ..., H, W), got {out.shape}")
        flip = laterality == "R"
        out[flip] = out[flip][..., ::-1]
        return out

    # -------------------------------------------------------------------------------------------- subsets

    def subset(self, indices: Indices) -> AlignedStack:
        """Some images (in the given order) as a new stack, still lazy and in the same frame.

        Parameters
        ----------
        indices : int, slice, sequence of int, numpy.ndarray

        Returns
        -------
        AlignedStack

        Raises
        ------
        StackError
            If an image is selected twice.
        """
        idx = self.indices(indices)
        return AlignedStack(
            pixels=_lazy_take(self.pixels, idx),
            image_ids=[self.image_ids[i] for i in idx],
            laterality=self.laterality[idx],
            labels=None if self.labels is None else self.labels.subset(idx),
            sources=[self.sources[i] for i in idx],
            frame=self.frame,
        )


# ------------------------------------------------------------------------------------------------ array access


def is_dask_array(array: Any) -> bool:
    """Whether ``array`` is a dask array (lazy, computed with ``.compute()``)."""
    return hasattr(array, "compute") and hasattr(array, "chunks")


def _as_run(idx: np.ndarray) -> slice | None:
    """``idx`` as a slice when it is a run of consecutive increasing indices (fast on every array type)."""
    if len(idx) == 0:
        return slice(0, 0)
    if np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return None


def _take(pixels: Any, idx: np.ndarray) -> np.ndarray:
    """Images ``idx`` of any supported array type, as a new in-memory numpy array."""
    run = _as_run(idx)
    key = idx if run is None else run
    if is_dask_array(pixels):
        return np.array(pixels[key].compute())
    if isinstance(pixels, np.ndarray):
        return np.array(pixels[key])
    if run is None and hasattr(pixels, "oindex"):  # zarr
        return np.array(pixels.oindex[idx])
    if run is not None:
        return np.array(pixels[run])
    return np.stack([np.asarray(pixels[int(i)]) for i in idx])


def _lazy_take(pixels: Any, idx: np.ndarray) -> Any:
    """Images ``idx`` without loading anything that is not already in memory."""
    run = _as_run(idx)
    in_memory = isinstance(pixels, np.ndarray) and not isinstance(pixels, np.memmap)
    if in_memory or is_dask_array(pixels):
        return pixels[idx if run is None else run]
    if run is not None and isinstance(pixels, np.memmap):
        return pixels[run]
    import dask.array as da

    meta = np.empty((0, 0, 0, 0), np.dtype(pixels.dtype))
    return da.from_array(pixels, chunks=(1, *pixels.shape[1:]), meta=meta)[idx]
