"""Pipelines of the three analyses, called by both the CLI and the docks (like the explain job's pipeline).

Each follows the run contract of :mod:`napari_global_xai.control`: it takes a
:class:`~napari_global_xai.control.RunControl`, returns a result dataclass with ``.cancelled`` (what finished before
a cancel stays usable and is written), checks its output folder before any long work
(:func:`napari_global_xai.io_utils.check_output_folder`), and writes its files atomically. Text for a terminal is
the CLI's job. Image-wise maps come from an explain output folder (:func:`read_explain_outputs`) or from arrays.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..control import RunControl
from .explain_inputs import (
    ExplainOutputs,
    check_out_dir,
    label_maps,
    read_csv_column,
    read_explain_outputs,
    read_landmarks_csv,
)

__all__ = [
    "ExplainOutputs",
    "RegionsResult",
    "check_out_dir",
    "label_maps",
    "read_csv_column",
    "read_explain_outputs",
    "read_landmarks_csv",
    "run_compare",
    "run_regions",
    "run_sanity",
]


# ------------------------------------------------------------------------------------------------- sanity


def run_sanity(
    stack,
    model,
    configs,
    *,
    indices=None,
    n_images: int = 4,
    label: str | None = None,
    depth: int | None = None,
    independent: bool = False,
    seed: int = 0,
    field_of_view_only: bool = True,
    out_dir=None,
    control: RunControl | None = None,
):
    """Model-parameter randomisation check of saliency methods on a sample of a stack.

    Parameters
    ----------
    stack : AlignedStack
    model : LoadedModel
    configs : list of ExplainConfig
        Methods to check (each with its parameters and post-processing).
    indices : sequence of int, optional
        Images; default ``n_images`` evenly spaced images.
    label : str, optional
        Label explained in every image; default each image's most probable label under the original model.
    depth, independent, seed
        See :func:`napari_global_xai.analyses.sanity.run_sanity_check`.
    field_of_view_only : bool
        Compare maps only inside the field of view of the sample's mean image
        (:func:`napari_global_xai.analyses.regions.field_of_view`).
    out_dir : path, optional
        Writes ``sanity.csv``, ``sanity.json`` (verdicts) and ``sanity.png`` (also after a cancel).
    control : RunControl, optional
        Progress (stage ``"sanity"``) and cancel.

    Returns
    -------
    SanityResult
        With ``cancelled=True`` and the randomisation steps finished so far after a cancel.

    Raises
    ------
    Cancelled
        Cancelled before the original maps were complete (nothing to compare with).
    """
    from ..explain.engine import predict_probabilities
    from .sanity import run_sanity_check

    control = control or RunControl()
    out = check_out_dir(out_dir)
    if not configs:
        raise ValueError("give at least one method to check")
    model.check_input(stack.shape)
    from ..data.conform import model_frame

    frame_stack = model_frame(stack, model.card)
    if indices is None:
        indices = np.unique(np.linspace(0, len(stack) - 1, num=min(n_images, len(stack))).round().astype(int))
    indices = np.asarray(indices, int)
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= len(stack):
        raise ValueError(f"image indices must lie in 0..{len(stack) - 1}")
    images = frame_stack.get(indices)
    if label is not None:
        if label not in model.labels:
            raise ValueError(f"unknown label {label!r}; the model's labels are {model.labels}")
        targets = np.full(len(indices), model.labels.index(label))
    else:
        targets = predict_probabilities(model, images).argmax(axis=1)
    from .regions import field_of_view

    try:
        mask = field_of_view(images.mean(axis=0))[0] if field_of_view_only else None
    except ValueError:  # blank images: compare every pixel
        mask = None
    result = run_sanity_check(
        model,
        images,
        configs,
        targets,
        depth=depth,
        independent=independent,
        seed=seed,
        mask=mask,
        control=control,
    )
    result.image_indices = [int(i) for i in indices]
    if out is not None:
        _write_sanity(out, result, [stack.image_ids[i] for i in indices])
    return result


def _write_sanity(out: Path, result, image_ids) -> None:
    import io

    from ..io_utils import atomic_write_text, save_json
    from .sanity import draw_sanity

    rows = result.to_rows()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "sanity.csv", buf.getvalue())
    save_json(
        out / "sanity.json",
        {
            "verdicts": result.verdicts,
            "images": image_ids,
            "targets": result.targets,
            "layers_top_down": result.layers,
            "cancelled": result.cancelled,
            "final_spearman": {m: result.final_spearman(m) for m in result.methods},
        },
    )
    _save_figure(out / "sanity.png", draw_sanity, result, size=(13, 4.5))


def _save_figure(path: Path, draw, *args, size=(8, 5)) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..io_utils import atomic_path

    fig = Figure(figsize=size, dpi=110)
    FigureCanvasAgg(fig)
    draw(fig, *args)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


# ------------------------------------------------------------------------------------------------ compare


def run_compare(
    maps: np.ndarray,
    values,
    *,
    column: str = "",
    groups=None,
    threshold: float | None = None,
    n_permutations: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    device="cpu",
    regions: np.ndarray | None = None,
    region_names: dict | None = None,
    anatomy=None,
    out_dir=None,
    control: RunControl | None = None,
):
    """Group difference map with its permutation test (and where significant pixels lie).

    Parameters
    ----------
    maps : numpy.ndarray, (n, H, W)
        Image-wise maps (:func:`label_maps`).
    values : sequence, (n,)
        Grouping value per map (a metadata column, or a label's 0/1 status).
    column, groups, threshold
        See :func:`napari_global_xai.analyses.compare.split_groups`.
    n_permutations, alpha, seed, device
        See :func:`napari_global_xai.analyses.compare.compare_groups`.
    regions : numpy.ndarray, (H, W) int, optional
        Region label image for the summary.
    out_dir : path, optional
        Writes ``compare_difference.tif``, ``compare_neglog10p.tif``, ``compare_significant.tif`` (FDR, 1: A > B,
        2: B > A), ``compare_significant_fwe.tif``, ``compare_summary.json`` and ``compare.png``.
    control : RunControl, optional
        Progress (stage ``"permutations"``) and cancel.

    Returns
    -------
    CompareResult
        With ``by_region`` (the per-region summary, when ``regions`` is given); after a cancel, ``cancelled=True``
        and the permutations finished so far (a valid, coarser test).

    Raises
    ------
    Cancelled
        Cancelled before the first batch of permutations finished.
    """
    from .compare import compare_groups, significance_by_region, split_groups

    control = control or RunControl()
    split = split_groups(values, groups=groups, threshold=threshold, column=column)
    if regions is not None and np.shape(regions) != np.shape(maps)[1:]:
        raise ValueError(f"region image {np.shape(regions)} does not match the maps {np.shape(maps)[1:]}")
    out = check_out_dir(out_dir)
    result = compare_groups(
        maps,
        split,
        n_permutations=n_permutations,
        alpha=alpha,
        seed=seed,
        device=device,
        control=control,
    )
    result.by_region = significance_by_region(result, regions, region_names) if regions is not None else None
    if out is not None:
        _write_compare(out, result, result.by_region, anatomy)
    return result


def _write_compare(out: Path, result, by_region, anatomy) -> None:
    import tifffile

    from ..io_utils import atomic_path, save_json
    from .compare import draw_compare

    for name, data in (
        ("difference", result.difference.astype(np.float32)),
        ("neglog10p", result.neg_log10_p.astype(np.float32)),
        ("significant", result.significant),
        ("significant_fwe", result.significant_fwe),
    ):
        with atomic_path(out / f"compare_{name}.tif") as tmp:
            tifffile.imwrite(tmp, data, description=json.dumps({"groups": list(result.split.names), "frame": "left"}))
    save_json(out / "compare_summary.json", {**result.summary(), "by_region": by_region})
    _save_figure(out / "compare.png", draw_compare, result, anatomy, size=(11, 4.5))


# ------------------------------------------------------------------------------------------------ regions


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
    *,
    anatomy=None,
    regions=None,
    region_names=None,
    disc=None,
    fovea=None,
    n_boot: int = 1000,
    seed: int = 0,
    out_dir=None,
    control: RunControl | None = None,
) -> RegionsResult:
    """Region label image (detected or given) and the region table of each label's global map.

    Parameters
    ----------
    maps_by_label : dict str -> numpy.ndarray (n, H, W)
        Image-wise maps per label (their mean is the label's global map).
    anatomy : numpy.ndarray, (H, W[, C]), optional
        Mean anatomy in the left-eye frame; needed unless ``regions`` is given.
    regions : numpy.ndarray, (H, W) int, optional
        A user's region label image (then nothing is detected).
    region_names : dict int -> str, optional
    disc, fovea : (row, col), optional
        Given landmark positions (skip their detection).
    n_boot, seed
        Bootstrap over images.
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
        tables.append(region_table(maps, regions, names=region_names, n_boot=n_boot, seed=seed, label=label))
        control.report(k + 1, len(maps_by_label), "regions")
    if out is not None:
        from .regions import write_region_mask, write_region_table

        write_region_mask(out / "regions.tif", regions, region_names, landmarks)
        write_region_table(out / "region_table.csv", tables)
        for t in tables:
            _save_figure(out / f"regions_{t.label}.png", draw_region_table, t, size=(7, 6))
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
