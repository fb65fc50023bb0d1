"""The PEPPR figure: curves of one or more maps, a summary table and a filmstrip of erased / restored images.

One drawing path serves the napari PEPPR panel (its themed canvas), the HTML/PDF report (Agg canvas) and tests:

* :class:`PepprView` holds the curves and table rows a figure needs; built from a live
  :class:`~napari_global_xai.peppr.PepprResult` (:func:`view_from_result`), live or read back from its folder
  (:meth:`~napari_global_xai.peppr.result.PepprResult.open`), so a report can be made later without the model.
* :class:`Filmstrip` holds thumbnails of one image erased and restored at each fraction, in the map's order and in a
  random order, computed with the curve engine's own ranking, masks and fills (:func:`compute_filmstrip`), or read
  from the erased / restored TIFFs a PEPPR run wrote (:func:`filmstrip_from_folder`).
* :func:`~napari_global_xai.peppr.drawing.draw_peppr_figure` draws both into a figure the caller owns and returns
  the artists the panel links to (curve axes, the fraction marker, the filmstrip image and its tiles, the column
  frames).

Qt-free; matplotlib's object API only (no pyplot state).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..control import RunControl

__all__ = [
    "PepprView",
    "Filmstrip",
    "FigureHandles",
    "view_from_result",
    "compute_filmstrip",
    "filmstrip_from_folder",
    "TABLE_COLUMNS",
    "thumbnail",
    "display_rgb",
    "nearest_index",
    "strip_fractions",
    "MAX_STRIP_COLUMNS",
]

#: Most filmstrip columns: more would shrink the thumbnails below readable at a laptop's width.
MAX_STRIP_COLUMNS = 8

#: Columns of the compact summary table (header, row key, format).
TABLE_COLUMNS = (
    ("map", "map", "s"),
    ("label", "label", "s"),
    ("A_erase", "A_erase", ".3f"),
    ("A_restore", "A_restore", ".3f"),
    ("gap", "gap", "+.3f"),
    ("random gap", "random_gap", "+.3f"),
    ("p*", "p_star", ".2f"),
)


@dataclass
class PepprView:
    """What the PEPPR figure shows.

    Attributes
    ----------
    fractions : numpy.ndarray, (F,)
    metric : str
        ``"auroc"`` or ``"mean_probability"``.
    fill : str
    n_images : int
    rows : list of dict
        The result's table rows (``map``, ``label``, ``A_erase``, ``A_restore``, ``gap``, ``random_gap``,
        ``p_star``, ...), one per (map, headline label).
    curves : dict
        ``{(map, mode, label): (F,) array}`` of the map-order curves.
    random : dict
        ``{(mode, label): (n_seeds, F) array}`` of the random-order curves.
    """

    fractions: np.ndarray
    metric: str
    fill: str
    n_images: int
    rows: list
    curves: dict
    random: dict = field(default_factory=dict)

    def curve(self, map_name: str, mode: str, label: str) -> np.ndarray:
        return self.curves[(map_name, mode, label)]

    def random_band(self, mode: str, label: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Mean and sample sd over seeds of the random-order curve, or None without random curves."""
        runs = self.random.get((mode, label))
        if runs is None or len(runs) == 0:
            return None
        sd = runs.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(runs.shape[1])
        return runs.mean(axis=0), sd


@dataclass
class Filmstrip:
    """Thumbnails of one image erased and restored at every fraction.

    Attributes
    ----------
    fractions : numpy.ndarray, (F,)
    rows : list of (str, numpy.ndarray)
        ``(title, (F, h, w, 3) uint8)`` per strip, e.g. ``"map · erase"``, ``"random · restore"``.
    image_index : int
    map_name : str
    """

    fractions: np.ndarray
    rows: list
    image_index: int = 0
    map_name: str = ""


@dataclass
class FigureHandles:
    """Artists of a drawn PEPPR figure that an interactive canvas links to.

    The filmstrip is one image (``strip_image`` in ``strip_ax``): its thumbnails tiled a row per strip and a column
    per fraction, with gutters; ``tile`` is ``(h, w, step_y, step_x)`` in its pixels (a thumbnail's size and the
    distance between thumbnails), ``frames`` one highlight rectangle per fraction column.
    """

    curves_ax: object = None
    table_ax: object = None
    marker: object = None
    strip_ax: object = None
    strip_image: object = None
    tile: tuple = ()
    frames: list = field(default_factory=list)

    def tile_at(self, x: float, y: float) -> tuple[int, int]:
        """``(strip row, fraction column)`` of the filmstrip thumbnail at data point ``(x, y)`` of ``strip_ax`` (a
        gutter counts with the thumbnail before it)."""
        h, _w, step_y, step_x = self.tile
        last_row = (self.strip_image.get_array().shape[0] - h) // step_y
        row = min(max(int((y + 0.5) // step_y), 0), last_row)
        column = min(max(int((x + 0.5) // step_x), 0), len(self.frames) - 1)
        return row, column

    def thumb_size_px(self, renderer) -> tuple[float, float]:
        """``(width, height)`` of one filmstrip thumbnail as drawn by ``renderer``, in pixels."""
        shown = self.strip_image.get_window_extent(renderer)
        rows, columns = self.strip_image.get_array().shape[:2]
        h, w = self.tile[:2]
        return shown.width * w / columns, shown.height * h / rows


# ----------------------------------------------------------------------------------------------- building views


def view_from_result(result) -> PepprView:
    """A :class:`PepprView` of a :class:`~napari_global_xai.peppr.PepprResult` (all its maps and labels)."""
    curves = {}
    for name in result.maps:
        for mode in ("erase", "restore"):
            for label in list(result.labels) + ["macro"]:
                curves[(name, mode, label)] = np.asarray(result.curves[name].curve(mode, label), float)
    random = {}
    for mode in ("erase", "restore"):
        for label in list(result.labels) + ["macro"]:
            if result.random:
                random[(mode, label)] = np.array([c.curve(mode, label) for c in result.random], float)
    return PepprView(
        np.asarray(result.fractions, float),
        result.metric,
        result.fill,
        result.n_images,
        [dict(r) for r in result.table],
        curves,
        random,
    )


# ------------------------------------------------------------------------------------------------- thumbnails


def thumbnail(image: np.ndarray, max_side: int) -> np.ndarray:
    """Area-average an ``(H, W[, C])`` image down so its longer side is at most ``max_side`` (integer factor)."""
    img = np.asarray(image)
    factor = int(np.ceil(max(img.shape[:2]) / max_side))
    if factor <= 1:
        return img
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    img = img[:h, :w].astype(np.float32)
    small = img.reshape(h // factor, factor, w // factor, factor, *img.shape[2:]).mean(axis=(1, 3))
    return small


def display_rgb(images: np.ndarray) -> np.ndarray:
    """``(..., H, W, c)`` model-channel pixels → uint8 RGB for display (2 channels: red, green; 1: grey)."""
    x = np.asarray(images, np.float32)
    c = x.shape[-1]
    if c == 1:
        x = np.repeat(x, 3, axis=-1)
    elif c == 2:
        x = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)
    x = x[..., :3]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def compute_filmstrip(
    model,
    image: np.ndarray,
    global_map: np.ndarray,
    fractions: Sequence[float],
    fill: str = "zero",
    *,
    random_seed: int = 0,
    max_side: int = 96,
    image_index: int = 0,
    map_name: str = "",
    control: RunControl | None = None,
) -> Filmstrip:
    """Thumbnails of one image erased and restored at each fraction, in the map's order and one random order.

    Parameters
    ----------
    model : LoadedModel or None
        Gives the input channels and normalisation the fill is applied in (as in the curve engine).
    image : numpy.ndarray, (H, W, C)
        Raw harmonised pixels (the frame the map lives in).
    global_map : numpy.ndarray, (H, W)
    fractions : sequence of float
    fill : {"zero", "black", "blur", "impute"}
    random_seed : int
        Seed of the random order (the first random-order seed of a PEPPR run is 0).
    max_side : int
        Longer side of a thumbnail in pixels.
    control : RunControl, optional
        Its cancel is checked between strips; a cancelled call returns the strips finished so far.

    Returns
    -------
    Filmstrip
        Rows ``map · erase``, ``map · restore``, ``random · erase``, ``random · restore``.

    Notes
    -----
    The filled images are made at full resolution with the curve engine's masks and fills
    (:func:`napari_global_xai.perturb.pixel_ranking`, :func:`~napari_global_xai.perturb.random_ranking`,
    :func:`napari_global_xai.peppr.filled.filled_images`), one strip at a time, and only then area-averaged to
    thumbnails: filling a downscaled image would show masks the model never saw. One image and 4 × F fills cost a
    fraction of a second (blur fill: about a second) and run in the panel's worker thread.
    """
    from ..perturb.rankings import pixel_ranking, random_ranking
    from .filled import filled_images

    img = np.asarray(image)[None]
    h, w = img.shape[1:3]
    orders = (("map", pixel_ranking(np.asarray(global_map, float))), ("random", random_ranking((h, w), random_seed)))
    rows = []
    for order, ranking in orders:
        for mode in ("erase", "restore"):
            if control is not None and control.cancelled():
                return Filmstrip(np.asarray(fractions, float), rows, image_index, map_name)
            filled = filled_images(model, img, ranking, fractions, fill, mode)[0]  # (F, H, W, c)
            thumbs = np.stack([thumbnail(display_rgb(f).astype(np.float32), max_side) for f in filled])
            rows.append((f"{order} · {mode}", np.clip(np.rint(thumbs), 0, 255).astype(np.uint8)))
    return Filmstrip(np.asarray(fractions, float), rows, image_index, map_name)


def filmstrip_from_folder(folder: str | Path, image_index: int = 0, max_side: int = 160) -> Filmstrip | None:
    """The map-order filmstrip of one image from the first pair of erased / restored TIFFs of a PEPPR folder
    (:func:`~napari_global_xai.peppr.result.filled_pairs`).

    Returns None when the folder has no such pair.
    """
    import tifffile

    from .result import filled_pairs

    for name, erased, restored in filled_pairs(folder):
        rows, fractions = [], None
        for mode, path in (("erase", erased), ("restore", restored)):
            with tifffile.TiffFile(path) as tif:
                data = tif.asarray()  # (n, F, c, H, W) or fewer axes
                info = json.loads((tif.imagej_metadata or {}).get("Info", "{}"))
            fractions = np.asarray(info.get("fractions", []), float)
            data = data.reshape(-1, len(fractions), *data.shape[-3:]) if data.ndim >= 4 else data[None, None]
            image = np.moveaxis(data[min(image_index, len(data) - 1)], 1, -1)  # (F, H, W, c)
            thumbs = np.stack([thumbnail(display_rgb(f).astype(np.float32), max_side) for f in image])
            rows.append((f"map · {mode}", np.clip(np.rint(thumbs), 0, 255).astype(np.uint8)))
        return Filmstrip(fractions, rows, image_index, name)
    return None


def nearest_index(values: Sequence[float], x: float) -> int:
    """Index of the value nearest ``x`` (first of ties)."""
    return int(np.argmin(np.abs(np.asarray(values, float) - float(x))))


def strip_fractions(
    grid: Sequence[float], wanted: Sequence[float] = (), max_columns: int = MAX_STRIP_COLUMNS
) -> np.ndarray:
    """The filmstrip's fractions: points of the curves' ``grid`` only, so every thumbnail is a point on the curves.

    The whole grid when it has at most ``max_columns`` points; else its endpoints and the grid points nearest to
    each of ``wanted`` (e.g. :attr:`~napari_global_xai.config.PepprConfig.filled_fractions`), then evenly spread
    grid points up to ``max_columns``.
    """
    grid = np.asarray(grid, float)
    if len(grid) <= max_columns:
        return grid.copy()
    chosen = {0, len(grid) - 1} | {nearest_index(grid, w) for w in wanted}
    for i in np.linspace(0, len(grid) - 1, max_columns).round().astype(int):
        if len(chosen) >= max_columns:
            break
        chosen.add(int(i))
    index = sorted(chosen)
    if len(index) > max_columns:  # many wanted fractions: keep the last endpoint
        index = index[: max_columns - 1] + index[-1:]
    return grid[index]
