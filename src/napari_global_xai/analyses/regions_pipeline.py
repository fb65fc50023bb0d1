"""The regions analysis's pipeline: :func:`run_regions` (image-wise maps per label in, a :class:`RegionsResult` out),
called by ``global-xai regions`` and the *Regions* dock. The maps come from an explain output folder
(:func:`~napari_global_xai.analyses.explain_inputs.label_maps`) or from arrays.

Follows the run contract of :mod:`napari_global_xai.control`: takes a :class:`~napari_global_xai.control.RunControl`,
returns a result dataclass with ``.cancelled`` (what finished before a cancel stays usable and is written), checks its
output folder before any long work (:func:`~napari_global_xai.analyses.explain_inputs.check_out_dir`) and writes its
files atomically. Text for a terminal is the CLI's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..analysis_config import RegionsConfig
from ..control import RunControl
from ..figures import save_figure
from .explain_inputs import check_out_dir

__all__ = ["RegionsResult", "run_regions"]


@dataclass
class RegionsResult:
    """What :func:`run_regions` returns.

    Attributes
    ----------
    regions : numpy.ndarray, (H, W) int
        Region label image (detected, or the one given).
    region_names : dict int -> str
    landmarks : Landmarks or None
        Disc and fovea (None when a region image was given).
    tables : list of RegionTable
        One per label finished.
    cancelled : bool
        True when a cancel stopped the run before every label had its table.
    out_dir : pathlib.Path or None
    """

    regions: np.ndarray
    region_names: dict | None
    landmarks: object | None
    tables: list = field(default_factory=list)
    cancelled: bool = False
    out_dir: Path | None = None


def run_regions(
    maps_by_label: dict[str, np.ndarray],
    config: RegionsConfig | None = None,
    *,
    anatomy=None,
    regions=None,
    region_names=None,
    disc=None,
    fovea=None,
    out_dir=None,
    control: RunControl | None = None,
) -> RegionsResult:
    """Region label image (detected or given) and the region table of each label's global map.

    Parameters
    ----------
    maps_by_label : dict str -> numpy.ndarray (n, H, W)
        Image-wise maps per label (their mean is the label's global map).
    config : RegionsConfig, optional
        Bootstrap over images (resamples, seed); default ``RegionsConfig()``.
    anatomy : numpy.ndarray, (H, W[, C]), optional
        Mean anatomy in the left-eye frame; needed unless ``regions`` is given.
    regions : numpy.ndarray, (H, W) int, optional
        A user's region label image (then nothing is detected).
    region_names : dict int -> str, optional
    disc, fovea : (row, col), optional
        Given landmark positions (skip their detection).
    out_dir : path, optional
        Writes ``regions.tif`` (labels, names in the description), ``region_table.csv``,
        ``regions_<label>.png`` (bar chart) and ``regions_summary.json`` (also after a cancel).
    control : RunControl, optional
        Progress (stage ``"regions"``, one step per label) and cancel.

    Returns
    -------
    RegionsResult
        On cancel, the labels finished so far and ``cancelled=True`` (the region image is always complete).
    """
    from .regions import (
        REGION_NAMES,
        build_regions,
        draw_region_table,
        find_landmarks,
        region_table,
    )

    config = config or RegionsConfig()
    control = control or RunControl()
    out = check_out_dir(out_dir)
    if not maps_by_label:
        raise ValueError("no image-wise maps given")
    shape = next(iter(maps_by_label.values())).shape[1:]
    landmarks = None
    if regions is None:
        if anatomy is None:
            raise ValueError("give a mean anatomy (to find disc and fovea) or a region mask")
        if tuple(np.shape(anatomy)[:2]) != tuple(shape):
            raise ValueError(f"anatomy {np.shape(anatomy)[:2]} does not match the maps {tuple(shape)}")
        landmarks = find_landmarks(anatomy, disc=disc, fovea=fovea)
        regions = build_regions(landmarks)
        region_names = {i + 1: n for i, n in enumerate(REGION_NAMES)}
    elif tuple(np.shape(regions)) != tuple(shape):
        raise ValueError(f"region mask {np.shape(regions)} does not match the maps {tuple(shape)}")
    tables = []
    cancelled = False
    for k, (label, maps) in enumerate(maps_by_label.items()):
        if control.cancelled():
            cancelled = True
            break
        tables.append(
            region_table(maps, regions, names=region_names, n_boot=config.n_boot, seed=config.seed, label=label)
        )
        control.report(k + 1, len(maps_by_label), "regions")
    if out is not None:
        from .regions import write_region_mask, write_region_table

        write_region_mask(out / "regions.tif", regions, region_names, landmarks)
        write_region_table(out / "region_table.csv", tables)
        for t in tables:
            save_figure(out / f"regions_{t.label}.png", draw_region_table, t, size=(7, 6))
        from ..io_utils import save_json

        save_json(
            out / "regions_summary.json",
            {
                "disc": list(landmarks.disc) if landmarks else None,
                "fovea": list(landmarks.fovea) if landmarks else None,
                "landmarks": landmarks.source if landmarks else "region mask given",
                "highest_enrichment": {t.label: t.best() for t in tables},
                "cancelled": cancelled,
            },
        )
    return RegionsResult(regions, region_names, landmarks, tables, cancelled, out)
