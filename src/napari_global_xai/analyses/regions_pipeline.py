"""The regions analysis's pipeline: :func:`run_regions` (image-wise maps per label in, a :class:`RegionsResult` out),
called by ``global-xai regions`` and the *Regions* dock. The maps come from an explain output folder
(:func:`~napari_global_xai.analyses.explain_inputs.label_maps`) or from arrays.

Follows the run contract of :mod:`napari_global_xai.control`: takes a :class:`~napari_global_xai.control.RunControl`,
returns a result dataclass with ``.cancelled`` (what finished before a cancel stays usable and is written), checks its
output folder before any long work (:func:`~napari_global_xai.analyses.explain_inputs.check_out_dir`) and writes its
folder through :meth:`~napari_global_xai.analyses.regions_result.RegionsResult.write` (the one place naming its
files). Text for a terminal is the CLI's job.
"""

from __future__ import annotations

import numpy as np

from ..analysis_config import RegionsConfig
from ..control import RunControl
from ..errors import InputError
from .explain_inputs import check_out_dir
from .regions_result import RegionsResult

__all__ = ["run_regions"]


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
        Written by :meth:`RegionsResult.write` (``regions.tif``, ``region_table.csv``, ``regions_<label>.png``,
        ``regions_summary.json``; also after a cancel).
    control : RunControl, optional
        Progress (stage ``"regions"``, one step per label) and cancel.

    Returns
    -------
    RegionsResult
        On cancel, the labels finished so far and ``cancelled=True`` (the region image is always complete). Disc
        and fovea both given are used even when not plausible; ``result.landmarks.problems`` says why.

    Raises
    ------
    InputError
        A detected disc or fovea that is not plausible (:func:`~.landmarks.landmark_problems`): one line naming the
        first problem and how to give them by hand. Raised before any table is computed.

    Notes
    -----
    The tables are taken inside the field of view (see :func:`~.regions.region_table`): the detected one of the
    mean anatomy; with a region image, its ``outside_fov`` region's complement, else the mean anatomy's when given,
    else none (then every share is over the whole image, and the result says so).
    """
    from .regions import REGION_NAMES, build_regions, field_of_view, find_landmarks, region_table

    config = config or RegionsConfig()
    control = control or RunControl()
    out = check_out_dir(out_dir)
    if not maps_by_label:
        raise ValueError("no image-wise maps given")
    shape = next(iter(maps_by_label.values())).shape[1:]
    landmarks = fov = None
    fov_source = "none"
    if regions is None:
        if anatomy is None:
            raise ValueError("give a mean anatomy (to find disc and fovea) or a region mask")
        if tuple(np.shape(anatomy)[:2]) != tuple(shape):
            raise ValueError(f"anatomy {np.shape(anatomy)[:2]} does not match the maps {tuple(shape)}")
        landmarks = find_landmarks(anatomy, disc=disc, fovea=fovea)
        if landmarks.problems and (disc is None or fovea is None):  # something was detected
            from .landmarks import HOW_TO_GIVE_LANDMARKS

            more = f" (and {len(landmarks.problems) - 1} more)" if len(landmarks.problems) > 1 else ""
            raise InputError(
                f"the optic disc and fovea found are not plausible: {landmarks.problems[0]}{more}; "
                + HOW_TO_GIVE_LANDMARKS
            )
        regions = build_regions(landmarks)
        region_names = {i + 1: n for i, n in enumerate(REGION_NAMES)}
        fov, fov_source = landmarks.fov, "mean anatomy"
    else:
        if tuple(np.shape(regions)) != tuple(shape):
            raise ValueError(f"region mask {np.shape(regions)} does not match the maps {tuple(shape)}")
        outside = [i for i, n in (region_names or {}).items() if n == "outside_fov"]
        if outside:
            fov, fov_source = ~np.isin(regions, outside), "region mask"
        elif anatomy is not None:
            fov, fov_source = field_of_view(anatomy)[0], "mean anatomy"
    tables = []
    cancelled = False
    for k, (label, maps) in enumerate(maps_by_label.items()):
        if control.cancelled():
            cancelled = True
            break
        tables.append(
            region_table(
                maps, regions, names=region_names, n_boot=config.n_boot, seed=config.seed, label=label, fov=fov
            )
        )
        control.report(k + 1, len(maps_by_label), "regions")
    result = RegionsResult(regions, region_names, landmarks, tables, cancelled, out, fov_source)
    if out is not None:
        result.write(out)
    return result
