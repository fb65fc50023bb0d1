"""Open image stacks lazily as :class:`~napari_global_xai.data.stack.AlignedStack`; write multi-page TIFF stacks.

Inputs
------
* a multi-page TIFF, ``(n, H, W)`` or ``(n, H, W, C)`` (a single 2-D / RGB page is a stack of one);
* a folder of PNG / JPEG / TIFF / DICOM images (``IMAGE_EXTENSIONS``: ``.png .jpg .jpeg .tif .tiff .dcm .dicom`` in
  any case, and files without an extension that carry the DICOM magic ``DICM`` at byte 128), in natural order
  (``img2`` before ``img10``);
* a DICOM file, single- or multi-frame.

Only headers are read up front; pixels are read on demand (a memory map for uncompressed contiguous TIFF, else one
lazy read per image). Image ids are file stems, or ``<stem>_<page:04d>`` for images of multi-image files (or the ids
stored by :func:`write_stack_tiff`). Inputs are only ever opened for reading.

This module aligns the images (one size, channel count and dtype) and attaches labels; the files themselves are
read in :mod:`.image_files`, and TIFF stacks are written by :mod:`.tiff_stack` (both re-exported here).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .conform import describe_sizes
from .errors import StackError
from .image_files import IMAGE_EXTENSIONS, _file_frames, _Frame, _input_files, _lazy_stack, _tiff_view
from .image_files import dicom_laterality as dicom_laterality  # re-exported: its home was this module
from .labels import InputNotice, LabelsTable, preview, read_labels_csv
from .stack import AlignedStack
from .tiff_stack import _ALLOWED_CHANNELS, read_tiff_metadata, write_stack_tiff

__all__ = ["read_stack", "write_stack_tiff", "read_tiff_metadata", "IMAGE_EXTENSIONS"]


# ------------------------------------------------------------------------------------------------ alignment


def _require_uniform(frames: list[_Frame], key: Callable[[_Frame], Hashable], what: str, hint: str = "") -> Hashable:
    """The majority value of ``key`` over ``frames``; StackError naming the frames that differ from it."""
    counts = Counter(key(frame) for frame in frames)
    majority, _ = counts.most_common(1)[0]
    offenders = [f"{frame.name}: {key(frame)}" for frame in frames if key(frame) != majority]
    if offenders:
        raise StackError(
            f"images differ in {what}: {preview(offenders, show=str)} vs {majority} in the other "
            f"{counts[majority]} image(s){hint}"
        )
    return majority


def _target_channels(frames: list[_Frame], channels: int | None) -> int:
    if bad := [
        f"{frame.name}: {frame.page.shape[2]} channels"
        for frame in frames
        if frame.page.shape[2] not in _ALLOWED_CHANNELS
    ]:
        raise StackError(f"unsupported channel count (expected 1, 3 or 4): {preview(bad, show=str)}")
    colour = [frame for frame in frames if frame.page.shape[2] > 1]
    if channels not in (None, 1, 3):
        raise StackError(f"channels must be 1 or 3, got {channels!r}")
    if channels == 1 and colour:
        raise StackError(
            f"channels=1 but {len(colour)} image(s) are colour: {preview([frame.name for frame in colour], show=str)}"
        )
    return channels or (3 if colour else 1)


def _target_dtype(frames: list[_Frame], dtype: Any) -> np.dtype:
    found = Counter(frame.page.dtype for frame in frames)
    if dtype is not None and all(np.issubdtype(d, np.unsignedinteger) for d in found):
        # a bit depth for integer images; float images keep their values (and their NaN check on read)
        return np.dtype(dtype)
    if len(found) == 1:
        return next(iter(found))
    if all(np.issubdtype(d, np.unsignedinteger) for d in found):
        return max(found, key=lambda d: d.itemsize)
    _require_uniform(
        frames, lambda frame: frame.page.dtype, "data type", hint="; pass dtype=... to convert every image to one type"
    )
    raise AssertionError  # pragma: no cover - _require_uniform raised


def _notify_conversions(frames: list[_Frame], shape: tuple[int, int, int], dtype: np.dtype) -> None:
    """One :class:`InputNotice` per kind of conversion applied to some images."""
    n = len(frames)
    alpha = [f for f in frames if f.page.shape[2] == 4]
    grey = [f for f in frames if f.page.shape[2] == 1 and shape[2] == 3]
    depth = [f for f in frames if f.page.dtype != dtype]
    sized = [f for f in frames if f.page.shape[:2] != shape[:2]]
    notes = []
    if alpha:
        notes.append(f"alpha channel dropped from {len(alpha)} of {n} image(s)")
    if grey:
        notes.append(f"{len(grey)} of {n} grey image(s) replicated to RGB")
    if depth:
        found = Counter(f"{f.page.dtype.itemsize * 8}-bit" for f in depth).most_common()
        kinds = ", ".join(f"{bits} ({count})" for bits, count in found)
        notes.append(
            f"{len(depth)} of {n} image(s) converted to {dtype.itemsize * 8}-bit {dtype} by full range (from {kinds})"
        )
    if sized:
        ratio = shape[0] / shape[1]
        stretched = any(abs(f.page.shape[0] / f.page.shape[1] - ratio) > 0.01 * ratio for f in sized)
        notes.append(
            f"{len(sized)} of {n} image(s) resized to {shape[0]}×{shape[1]} (bilinear"
            f"{', aspect ratio changed' if stretched else ''}; sizes found: "
            f"{describe_sizes([f.page.shape[:2] for f in sized])})"
        )
    for note in notes:
        warnings.warn(note, InputNotice, stacklevel=4)


def _common_layout(
    frames: list[_Frame], resize: tuple[int, int] | str | None, channels: int | None = None, dtype: Any = None
) -> tuple[tuple[int, int, int], np.dtype]:
    """Shared ``(H, W, C)`` and dtype of the stack.

    ``C`` is 3 when any image is colour (RGBA loses alpha, grey is replicated) or ``channels`` asks for it, else 1;
    the dtype is ``dtype``, else the images' own, else (mixed unsigned integer types) the widest; ``H, W`` come
    from ``resize`` (``"common"``: the most common size), else all images must share one size.

    Raises
    ------
    StackError
        On unsupported channel counts, mixed non-integer types, or sizes that differ (without ``resize``); the
        message names the offending files.
    """
    target_channels = _target_channels(frames, channels)
    target_dtype = _target_dtype(frames, dtype)
    if resize == "common":
        resize = Counter(frame.page.shape[:2] for frame in frames).most_common(1)[0][0]
    elif resize is None:
        resize = _require_uniform(
            frames,
            lambda frame: frame.page.shape[:2],
            "size (H, W)",
            hint="; pass resize=(H, W) (CLI: --resize H W) to resample every image to one size",
        )
    return (*resize, target_channels), np.dtype(target_dtype)


def _checked_resize(resize: Sequence[int] | str | None) -> tuple[int, int] | str | None:
    if resize is None or (isinstance(resize, str) and resize == "common"):
        return resize
    try:
        height, width = (int(s) for s in resize)
    except (TypeError, ValueError):
        height = width = 0
    if min(height, width) < 1:
        raise StackError(f"resize must be (H, W) with positive integer sizes or 'common', got {resize!r}")
    return height, width


def _check_unique_ids(frames: list[_Frame]) -> None:
    counts = Counter(frame.image_id for frame in frames)
    if clashes := [frame.source.name for frame in frames if counts[frame.image_id] > 1]:
        raise StackError(f"several images would get the same id (file stem): {preview(clashes, 10, show=str)}")


# ------------------------------------------------------------------------------------------------ labels


def _labels_beside(path: Path) -> Path | None:
    """The labels CSV found by convention beside a stack, if any."""
    if path.is_dir():
        candidates = [path / "labels.csv"]
    else:
        candidates = [path.with_suffix(".csv"), path.with_name(f"{path.stem}.labels.csv")]
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def _resolve_labels(
    labels: str | os.PathLike | LabelsTable | bool | None, path: Path, image_ids: list[str], columns: dict[str, Any]
) -> LabelsTable | None:
    if labels is False:
        return None
    if isinstance(labels, LabelsTable):
        table = labels.aligned_to(image_ids, source="labels table")
        if columns.get("label_names") is not None:
            table = table.matched_to(columns["label_names"], columns.get("label_map"), source="labels table")
        return table
    csv_path = Path(labels) if labels is not None else _labels_beside(path)
    return None if csv_path is None else read_labels_csv(csv_path, image_ids, **columns)


def _laterality(frames: list[_Frame], table: LabelsTable | None) -> np.ndarray | None:
    """The table's laterality, with blanks filled from the files' headers (DICOM); None when neither has any."""
    from_files = [frame.laterality for frame in frames]
    from_table = None if table is None or table.laterality is None else list(table.laterality)
    if from_table is None:
        return np.array(from_files, dtype="<U1") if any(from_files) else None
    return np.array([t or f for t, f in zip(from_table, from_files)], dtype="<U1")


# ------------------------------------------------------------------------------------------------ public API


def read_stack(
    path: str | os.PathLike,
    labels: str | os.PathLike | LabelsTable | bool | None = None,
    resize: Sequence[int] | str | None = None,
    channels_last: bool = True,
    *,
    channels: int | None = None,
    dtype: Any = None,
    label_names: Sequence[str] | None = None,
    id_column: str | None = None,
    laterality_column: str | None = None,
    label_map: Any = None,
) -> AlignedStack:
    """Open an image stack lazily (only headers are read here).

    Parameters
    ----------
    path : str or path-like
        A multi-page TIFF, a DICOM file (single- or multi-frame), a single PNG/JPEG/TIFF image, or a folder of
        PNG / JPEG / TIFF / DICOM images (natural order; other files, e.g. CSV / JSON and hidden files, ignored).
    labels : str, path-like or LabelsTable, optional
        A labels CSV or table, matched to the image ids (or file names). Default: a CSV beside the stack if there is
        one -- ``x.csv`` or ``x.labels.csv`` for a file ``x.tif``, ``labels.csv`` inside a folder; ``False``: no
        labels, even if a CSV lies beside the stack. Laterality comes
        from the table; where it has none, from the DICOM header (ImageLaterality, else Laterality).
    resize : (int, int) or "common", optional
        ``(H, W)``: resample every image of another size to it (bilinear, dtype kept); ``"common"``: to the most
        common size. Without it all images must share one size.
    channels_last : bool
        For a TIFF whose series is 4-D: True reads it as ``(n, H, W, C)``; False as ``(n, C, H, W)`` (channels
        stored as consecutive grayscale pages), returned as ``(n, H, W, C)``.
    channels : {1, 3}, optional
        Channels of every image. Default: 3 if any image is colour, else 1. RGBA images always lose their alpha
        channel; grey images in a colour stack (or with ``channels=3``) are replicated to RGB.
    dtype : numpy dtype, optional
        Bit depth of unsigned-integer images, rescaled by full range (16-bit ``v`` -> 8-bit ``round(v / 257)``);
        floating-point images keep their type and values (so NaN/Inf are still refused on read). Default: the
        images' own; mixed unsigned types become the widest.
    label_names, id_column, laterality_column, label_map
        How to read the labels CSV: see :func:`~napari_global_xai.data.labels.read_labels_csv` (for a
        :class:`LabelsTable`, ``label_names`` / ``label_map`` apply :meth:`LabelsTable.matched_to`).

    Returns
    -------
    AlignedStack
        In the stored frame; ``pixels`` a read-only memmap (uncompressed contiguous TIFF, no conversion), else a
        dask array with one lazy read (and conversion) per image. Grayscale stacks have ``C = 1``.

    Warns
    -----
    InputNotice
        One line per kind of conversion (alpha dropped, grey to RGB, bit depth, resize) and the images it touched.

    Raises
    ------
    StackError
        On a missing path, an empty folder, unreadable / corrupt files, unsupported channel counts (2 or more than
        4), images that differ in size (without ``resize``), mixed non-integer dtypes, or clashing image ids; the
        message names the offending files. A file whose pixels are corrupt behind a good header raises StackError
        naming it when its pixels are read (:meth:`AlignedStack.get`).
    LabelsError
        If the labels do not match the images (see :func:`~napari_global_xai.data.labels.read_labels_csv`).
    """
    path = Path(path)
    size = _checked_resize(resize)
    files = _input_files(path)
    frames = [frame for file, kind in files for frame in _file_frames(file, kind, channels_last)]
    _check_unique_ids(frames)
    shape, target = _common_layout(frames, size, channels, dtype)
    image_ids = [frame.image_id for frame in frames]
    columns = {
        "label_names": label_names,
        "id_column": id_column,
        "laterality_column": laterality_column,
        "label_map": label_map,
    }
    table = _resolve_labels(labels, path, image_ids, {k: v for k, v in columns.items() if v is not None})
    _notify_conversions(frames, shape, target)
    pixels = _tiff_view(frames, shape, target) if len(files) == 1 and files[0][1] == "tiff" else None
    if pixels is None:
        pixels = _lazy_stack(frames, shape, target)
    return AlignedStack(
        pixels,
        image_ids,
        laterality=_laterality(frames, table),
        labels=table,
        sources=[str(frame.source) for frame in frames],
    )
