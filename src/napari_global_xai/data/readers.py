"""Open image stacks lazily as :class:`~napari_global_xai.data.stack.AlignedStack`; write multi-page TIFF stacks.

Inputs
------
* a multi-page TIFF, ``(n, H, W)`` or ``(n, H, W, C)`` (a single 2-D / RGB page is a stack of one);
* a folder of PNG / JPEG / TIFF / DICOM images (``.png .jpg .jpeg .tif .tiff .dcm`` in any case, and files without
  an extension that carry the DICOM magic ``DICM`` at byte 128), in natural order (``img2`` before ``img10``);
* a DICOM file, single- or multi-frame.

Only headers are read up front; pixels are read on demand (a memory map for uncompressed contiguous TIFF, else one
lazy read per image). Image ids are file stems, or ``<stem>_<page:04d>`` for images of multi-image files (or the ids
stored by :func:`write_stack_tiff`). Inputs are only ever opened for reading.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..io_utils import atomic_path
from .conform import conform_image, describe_sizes
from .errors import StackError
from .labels import InputNotice, LabelsTable, preview, read_labels_csv
from .stack import AlignedStack, is_dask_array

__all__ = ["read_stack", "write_stack_tiff", "read_tiff_metadata", "IMAGE_EXTENSIONS"]

_PIL_EXTENSIONS = (".png", ".jpg", ".jpeg")
_TIFF_EXTENSIONS = (".tif", ".tiff")
_DICOM_EXTENSIONS = (".dcm",)
#: File name extensions read from a folder (case-insensitive).
IMAGE_EXTENSIONS = _PIL_EXTENSIONS + _TIFF_EXTENSIONS + _DICOM_EXTENSIONS
_KIND_NAMES = {"pil": "PNG/JPEG", "tiff": "TIFF", "dicom": "DICOM"}
_ALLOWED_CHANNELS = (1, 3, 4)
_DICOM_MAGIC_OFFSET, _DICOM_MAGIC = 128, b"DICM"
#: PIL mode -> (mode to convert to on decode or None, channels, dtype).
_PIL_MODES: dict[str, tuple[str | None, int, str]] = {
    "1": ("L", 1, "u1"),
    "L": (None, 1, "u1"),
    "LA": (None, 2, "u1"),
    "P": ("RGB", 3, "u1"),
    "PA": ("RGBA", 4, "u1"),
    "RGB": (None, 3, "u1"),
    "RGBA": (None, 4, "u1"),
    "CMYK": ("RGB", 3, "u1"),
    "YCbCr": ("RGB", 3, "u1"),
    "I;16": (None, 1, "u2"),
    "I;16L": (None, 1, "u2"),
    "I;16B": (None, 1, "u2"),
    "I": (None, 1, "i4"),
    "F": (None, 1, "f4"),
}


class _Page(NamedTuple):
    """One image as described by its file's header."""

    key: int | tuple[int, ...]  # page / frame index in the file; a tuple stacks several pages as channels
    shape: tuple[int, int, int]  # (H, W, C) as stored
    dtype: np.dtype
    layout: str  # axes of a decoded array: "YX", "YXS" (channels last) or "SYX" (channels first)


@dataclass(frozen=True)
class _Frame:
    """One image of the stack: where it lives and what its header says."""

    source: Path
    kind: str  # "pil", "tiff" or "dicom"
    image_id: str
    page: _Page
    laterality: str = ""  # from the file's header (DICOM ImageLaterality / Laterality), "" if unknown

    @property
    def name(self) -> str:
        """The file name, plus the image id for images inside multi-image files (for messages)."""
        single = self.image_id == self.source.stem
        return self.source.name if single else f"{self.source.name} ({self.image_id})"


# ------------------------------------------------------------------------------------------------ listing files


def _natural_key(name: str) -> tuple[list[object], str]:
    """Sort key putting ``img2`` before ``img10``."""
    parts = re.split(r"(\d+)", name.lower())
    return [int(part) if part.isdigit() else part for part in parts], name


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(_DICOM_MAGIC_OFFSET)
            return handle.read(len(_DICOM_MAGIC)) == _DICOM_MAGIC
    except OSError:
        return False


def _file_kind(path: Path) -> str | None:
    """``"pil"``, ``"tiff"``, ``"dicom"``, or None for files that are not images."""
    suffix = path.suffix.lower()
    if suffix in _PIL_EXTENSIONS:
        return "pil"
    if suffix in _TIFF_EXTENSIONS:
        return "tiff"
    if suffix in _DICOM_EXTENSIONS or (not suffix and _has_dicom_magic(path)):
        return "dicom"
    return None


def _input_files(path: Path) -> list[tuple[Path, str]]:
    """``(file, kind)`` of every image file of the input, in natural order."""
    if not path.exists():
        raise StackError(f"{path}: no such file or folder")
    if path.is_dir():
        files = [
            (entry, _file_kind(entry)) for entry in path.iterdir() if entry.is_file() and not entry.name.startswith(".")
        ]
        files = sorted(((entry, kind) for entry, kind in files if kind), key=lambda item: _natural_key(item[0].name))
        if not files:
            raise StackError(f"{path}: folder has no images (looked for {', '.join(IMAGE_EXTENSIONS)} and DICOM files)")
        return files
    kind = _file_kind(path)
    if kind is None:
        raise StackError(f"{path}: not a supported image file (expected {', '.join(IMAGE_EXTENSIONS)} or DICOM)")
    return [(path, kind)]


# ------------------------------------------------------------------------------------------------ headers


def _pil_header(path: Path, channels_last: bool) -> tuple[list[_Page], None]:
    from PIL import Image

    with Image.open(path) as image:
        mode, (width, height) = image.mode, image.size
    if mode not in _PIL_MODES:
        raise StackError(f"{path}: unsupported image mode {mode!r}")
    _, channels, dtype = _PIL_MODES[mode]
    layout = "YX" if channels == 1 else "YXS"
    return [_Page(0, (height, width, channels), np.dtype(dtype), layout)], None


def _tiff_page(page: Any, index: int, path: Path) -> _Page:
    axes, shape = page.axes, tuple(int(s) for s in page.shape)
    if page.dtype is None or axes not in ("YX", "YXS", "SYX"):
        raise StackError(f"{path}: page {index} has an unsupported layout (axes {axes!r}, shape {shape})")
    height, width, channels = {"YX": (*shape, 1), "YXS": shape, "SYX": (*shape[1:], shape[0])}[axes]
    return _Page(index, (height, width, channels), np.dtype(page.dtype).newbyteorder("="), axes)


def _pages_as_channels(pages: list[_Page], series_shape: tuple[int, ...]) -> list[_Page] | None:
    """Group grayscale pages of an ``(n, C, H, W)`` series into C-channel images, or None when it is not one."""
    if len(series_shape) != 4 or any(page.layout != "YX" for page in pages):
        return None
    count, channels = series_shape[:2]
    if count * channels != len(pages) or len({page.shape for page in pages}) != 1:
        return None
    height, width, _ = pages[0].shape
    return [
        _Page(tuple(range(i * channels, (i + 1) * channels)), (height, width, channels), pages[0].dtype, "SYX")
        for i in range(count)
    ]


def _tiff_header(path: Path, channels_last: bool) -> tuple[list[_Page], list[str] | None]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        pages = [_tiff_page(page, i, path) for i, page in enumerate(tif.pages)]
        series_shape = tuple(tif.series[0].shape) if tif.series else ()
        stored_ids = _description(tif).get("image_ids")
    if not channels_last:
        pages = _pages_as_channels(pages, series_shape) or pages
    return pages, stored_ids


def _dicom_dtype(dataset: Any) -> np.dtype:
    if "FloatPixelData" in dataset:
        return np.dtype("f4")
    if "DoubleFloatPixelData" in dataset:
        return np.dtype("f8")
    bits = int(dataset.BitsAllocated)
    signed = int(dataset.get("PixelRepresentation", 0)) == 1
    return np.dtype(f"{'i' if signed else 'u'}{max(1, bits // 8)}")


def dicom_laterality(dataset: Any) -> str:
    """``"L"``, ``"R"`` or ``""`` from ImageLaterality (0020,0062), else Laterality (0020,0060); ``B`` / ``U``
    (both / unknown) and other values give ``""``."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(dataset.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return ""


def _dicom_header(path: Path, channels_last: bool) -> tuple[list[_Page], None]:
    import pydicom

    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    rows, columns = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
    if not rows or not columns:
        raise StackError(f"{path}: DICOM file holds no image (no Rows/Columns)")
    channels = int(dataset.get("SamplesPerPixel") or 1)
    frames = int(dataset.get("NumberOfFrames") or 1)
    layout = "YX" if channels == 1 else "YXS"
    dtype = _dicom_dtype(dataset)
    return [_Page(i, (rows, columns, channels), dtype, layout) for i in range(frames)], dicom_laterality(dataset)


#: kind -> header reader returning the pages and, for TIFF, stored ids (list) or, for DICOM, the laterality (str).
_HEADER_READERS: dict[str, Callable[[Path, bool], tuple[list[_Page], list[str] | str | None]]] = {
    "pil": _pil_header,
    "tiff": _tiff_header,
    "dicom": _dicom_header,
}


def _image_ids(path: Path, count: int, stored_ids: object) -> list[str]:
    if isinstance(stored_ids, list) and len(stored_ids) == count:
        return [str(image_id) for image_id in stored_ids]
    if count == 1:
        return [path.stem]
    return [f"{path.stem}_{i:04d}" for i in range(count)]


def _file_frames(path: Path, kind: str, channels_last: bool) -> list[_Frame]:
    """The images of one file, from its header only.

    Raises
    ------
    StackError
        If the header cannot be read or describes no image; the message names the file.
    """
    try:
        pages, stored_ids = _HEADER_READERS[kind](path, channels_last)
    except StackError:
        raise
    except Exception as exc:
        raise StackError(f"{path}: not a readable {_KIND_NAMES[kind]} image ({type(exc).__name__}: {exc})") from exc
    if not pages:
        raise StackError(f"{path}: holds no image")
    laterality = stored_ids if isinstance(stored_ids, str) else ""
    ids = _image_ids(path, len(pages), None if isinstance(stored_ids, str) else stored_ids)
    return [_Frame(path, kind, image_id, page, laterality) for image_id, page in zip(ids, pages)]


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


# ------------------------------------------------------------------------------------------------ pixel reads


def _decode_pil(frame: _Frame) -> np.ndarray:
    from PIL import Image

    with Image.open(frame.source) as image:
        convert_to = _PIL_MODES[image.mode][0]
        return np.array(image.convert(convert_to) if convert_to else image)


def _decode_tiff(frame: _Frame) -> np.ndarray:
    import tifffile

    return tifffile.imread(frame.source, key=frame.page.key)


def _decode_dicom(frame: _Frame) -> np.ndarray:
    try:
        from pydicom.pixels import pixel_array  # pydicom >= 3: decodes one frame only
    except ImportError:
        import pydicom

        dataset = pydicom.dcmread(frame.source)
        array = dataset.pixel_array
        return array[frame.page.key] if int(dataset.get("NumberOfFrames") or 1) > 1 else array
    return pixel_array(frame.source, index=frame.page.key)


_DECODERS: dict[str, Callable[[_Frame], np.ndarray]] = {
    "pil": _decode_pil,
    "tiff": _decode_tiff,
    "dicom": _decode_dicom,
}


def _as_hwc(image: np.ndarray, layout: str) -> np.ndarray:
    if image.ndim == 2:
        return image[..., None]
    return np.moveaxis(image, 0, -1) if layout == "SYX" else image


def _load_frame(frame: _Frame, shape: tuple[int, int, int], dtype: np.dtype) -> np.ndarray:
    """Decode one image to ``shape`` / ``dtype`` (channels, bit depth and size converted as needed).

    Raises
    ------
    StackError
        If the file cannot be decoded or no longer matches its header; names the file.
    """
    try:
        image = _DECODERS[frame.kind](frame)
    except Exception as exc:
        raise StackError(
            f"{frame.source}: cannot decode image {frame.image_id!r} ({type(exc).__name__}: {exc})"
        ) from exc
    image = _as_hwc(np.asarray(image), frame.page.layout)
    if image.shape != frame.page.shape:
        raise StackError(
            f"{frame.source}: decoded image {frame.image_id!r} has shape {image.shape}, header said "
            f"{frame.page.shape} (was the file changed?)"
        )
    return conform_image(image, shape, dtype)


def _lazy_stack(frames: list[_Frame], shape: tuple[int, int, int], dtype: np.dtype) -> Any:
    """A dask array ``(n, *shape)`` that reads image ``i`` only when block ``i`` is computed."""
    import dask.array as da

    def read_block(block_id: tuple[int, ...]) -> np.ndarray:
        return _load_frame(frames[block_id[0]], shape, dtype)[None]

    chunks = ((1,) * len(frames), *((size,) for size in shape))
    return da.map_blocks(
        read_block,
        chunks=chunks,
        dtype=dtype,
        meta=np.empty((0, 0, 0, 0), dtype),
        name=f"read-stack-{uuid.uuid4().hex}",
    )


def _tiff_whole_file(path: Path) -> Any | None:
    """The file's first series as a read-only memmap, else a zarr-backed dask array, else None."""
    import tifffile

    try:
        return tifffile.memmap(path, mode="r")
    except Exception:  # compressed, non-contiguous, ... : not memory-mappable
        pass
    try:
        import zarr  # noqa: F401  (tifffile's zarr store needs it)
    except ImportError:
        return None
    import dask.array as da

    try:
        return da.from_zarr(tifffile.imread(path, aszarr=True))
    except Exception:
        return None


def _tiff_view(frames: list[_Frame], shape: tuple[int, int, int], dtype: np.dtype) -> Any | None:
    """All pages of one TIFF file as an ``(n, H, W, C)`` lazy view when they need no per-image work, else None."""
    if any(frame.page.shape != shape or frame.page.dtype != dtype for frame in frames):
        return None
    array = _tiff_whole_file(frames[0].source)
    n, (height, width, channels) = len(frames), shape
    if array is None or array.size != n * height * width * channels or np.dtype(array.dtype) != dtype:
        return None
    if frames[0].page.layout == "SYX":
        return array.reshape(n, channels, height, width).transpose(0, 2, 3, 1)
    return array.reshape(n, height, width, channels)


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


def _description(tif: Any) -> dict[str, Any]:
    """The JSON metadata :func:`write_stack_tiff` stores in the first page (empty dict if none)."""
    shaped = tif.shaped_metadata
    return dict(shaped[0]) if shaped else {}


def read_tiff_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``image_ids`` and ``metadata`` stored by :func:`write_stack_tiff`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict
        ``{"image_ids": list of str or None, "metadata": dict or None}``.

    Raises
    ------
    StackError
        If the file is not a readable TIFF.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            stored = _description(tif)
    except Exception as exc:
        raise StackError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    return {"image_ids": stored.get("image_ids"), "metadata": stored.get("metadata")}


def _pages(pixels: Any, page_shape: tuple[int, ...], dtype: np.dtype) -> Iterator[np.ndarray]:
    """Pages of ``pixels`` one at a time (a dask array is computed page by page, never whole)."""
    for i in range(pixels.shape[0]):
        page = pixels[i]
        if is_dask_array(page):
            page = page.compute()
        yield np.ascontiguousarray(np.asarray(page, dtype=dtype).reshape(page_shape))


def write_stack_tiff(
    path: str | os.PathLike,
    pixels: Any,
    image_ids: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    compression: str | None = "zlib",
    compression_level: int | None = None,
) -> Path:
    """Write an image stack as a multi-page TIFF, atomically (the file appears whole or not at all).

    Parameters
    ----------
    path : str or path-like
        Target file; replaced if it exists.
    pixels : array-like, shape (n, H, W) or (n, H, W, C) with C in {1, 3, 4}
        numpy, memmap or dask array; written page by page.
    image_ids : sequence of str, optional
        Stored in the first page's description; :func:`read_stack` uses them as image ids.
    metadata : dict, optional
        JSON-serialisable; stored beside the ids (see :func:`read_tiff_metadata`).
    compression : str or None
        A tifffile compression (``"zlib"``, ``"jpeg"``, ...); None writes an uncompressed, memory-mappable file.
    compression_level : int, optional
        Codec level (zlib level, or JPEG quality).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    StackError
        On an empty stack, a bad shape or channel count, or ``image_ids`` of the wrong length.
    """
    import tifffile

    shape = tuple(int(s) for s in pixels.shape)
    if len(shape) == 3:
        shape += (1,)
    if len(shape) != 4 or shape[0] == 0 or shape[3] not in _ALLOWED_CHANNELS:
        raise StackError(
            f"{path}: pixels must be (n, H, W) or (n, H, W, C) with n >= 1 and C in "
            f"{_ALLOWED_CHANNELS}, got shape {tuple(pixels.shape)}"
        )
    n, height, width, channels = shape
    stored: dict[str, Any] = {"metadata": metadata}
    if image_ids is not None:
        if len(image_ids) != n:
            raise StackError(f"{path}: {len(image_ids)} image ids for {n} images")
        stored["image_ids"] = [str(image_id) for image_id in image_ids]
    page_shape = (height, width) if channels == 1 else (height, width, channels)
    dtype = np.dtype(pixels.dtype)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data=_pages(pixels, page_shape, dtype),
            shape=(n, *page_shape),
            dtype=dtype,
            photometric="minisblack" if channels == 1 else "rgb",
            extrasamples=("unassalpha",) if channels == 4 else None,
            compression=compression,
            metadata=stored,
            compressionargs={"level": compression_level} if compression_level is not None else None,
            bigtiff=n * height * width * channels * dtype.itemsize > 2**31,
        )
    return Path(path)
