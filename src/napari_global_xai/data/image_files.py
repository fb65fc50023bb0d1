"""Image files of a stack, one format at a time (PNG/JPEG via PIL, TIFF, DICOM): finding them (a file or a folder
in natural order), reading their headers into :class:`_Frame` records, and decoding their pixels on demand (one lazy
read per image, or a memory map / zarr view of a whole uncompressed TIFF). Inputs are only ever opened for reading."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .conform import conform_image
from .errors import StackError
from .tiff_stack import _description

_PIL_EXTENSIONS = (".png", ".jpg", ".jpeg")
_TIFF_EXTENSIONS = (".tif", ".tiff")
_DICOM_EXTENSIONS = (".dcm", ".dicom")
#: The one list of input image extensions (case-insensitive): files read from a folder or given alone (the CLI,
#: :func:`~napari_global_xai.data.read_stack`, the napari reader). Files without an extension are read as DICOM
#: when they carry its magic.
IMAGE_EXTENSIONS = _PIL_EXTENSIONS + _TIFF_EXTENSIONS + _DICOM_EXTENSIONS
#: Single files the napari reader opens as a stack (the manifest's ``filename_patterns``, with ``*.zarr`` for results
#: stores; a test keeps them equal): the multi-image formats. A lone PNG/JPEG is one image, left to napari's reader.
STACK_FILE_EXTENSIONS = _TIFF_EXTENSIONS + _DICOM_EXTENSIONS
_KIND_NAMES = {"pil": "PNG/JPEG", "tiff": "TIFF", "dicom": "DICOM"}
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
        series = tif.series[0] if tif.series else None
        series_shape, series_axes = (tuple(series.shape), series.axes) if series is not None else ((), "")
        stored_ids = _description(tif).get("image_ids")
    _check_stack_dimensions(path, pages, series_shape, series_axes)
    if not channels_last:
        pages = _pages_as_channels(pages, series_shape) or pages
    return pages, stored_ids


def _check_stack_dimensions(path: Path, pages: list[_Page], series_shape: tuple[int, ...], axes: str) -> None:
    """Refuse a TIFF whose images are arranged in more dimensions than a stack: one axis of images, plus one of
    channels for grayscale pages (``(n, C, H, W)``). A 6-D ``(2, 2, 3, H, W, 3)`` file would otherwise be read as 12
    images with nothing said.

    Raises
    ------
    StackError
        The message names the file, its shape and axes, and the layout to save instead.
    """
    if not pages or not series_shape:
        return
    extra = len(series_shape) - len(pages[0].layout)  # axes above one page's own (YX, YXS or SYX)
    channel_axis = extra == 2 and all(page.layout == "YX" for page in pages)  # (n, C, H, W): pages as channels
    if extra <= 1 or channel_axis:
        return
    raise StackError(
        f"{path}: a {len(series_shape)}-D image (shape {series_shape}, axes {axes!r}) has more dimensions than a "
        "stack of images (n, H, W[, C]); save it as one image per page (n pages of H×W or H×W×C), e.g. reshape "
        "it to (n, H, W, C) before writing"
    )


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
        source = _TiffZarrSource(path)
        return da.from_array(source, chunks=source.chunks, asarray=False, fancy=False)
    except Exception:
        return None


class _TiffZarrSource:
    """tifffile's zarr view of a compressed TIFF's first series that pickles as its file name.

    The view holds an open file handle and a lock, so a dask array made directly over it cannot travel to another
    process (a Dask worker); this source opens the view on first read in each process and pickles only
    ``(path, shape, dtype, chunks)``, so a lazy stack read from a compressed TIFF can be shipped by reference.
    """

    def __init__(self, path, shape=None, dtype=None, chunks=None):
        self.path = str(path)
        self._view = None
        if shape is None:
            view = self._open()
            shape, dtype, chunks = view.shape, view.dtype, view.chunks
        self.shape, self.dtype, self.chunks = tuple(shape), np.dtype(dtype), tuple(chunks)
        self.ndim = len(self.shape)

    def _open(self):
        if self._view is None:
            import weakref

            import tifffile
            import zarr

            store = tifffile.imread(self.path, aszarr=True)
            weakref.finalize(self, store.close)  # the file closes with this source, not at a garbage collection
            self._view = zarr.open_array(store, mode="r")
        return self._view

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self._open()[key])

    def __reduce__(self):
        return type(self), (self.path, self.shape, self.dtype.str, self.chunks)

    def __dask_tokenize__(self):
        stat = Path(self.path).stat()
        return (type(self).__name__, self.path, stat.st_size, stat.st_mtime_ns)


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
