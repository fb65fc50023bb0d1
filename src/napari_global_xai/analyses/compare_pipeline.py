"""The group comparison's pipeline: :func:`run_compare` (image-wise maps and a grouping value per map in, a
:class:`~napari_global_xai.analyses.compare.CompareResult` out), called by ``global-xai compare`` and the
*Compare groups* dock. The maps come from an explain output folder
(:func:`~napari_global_xai.analyses.explain_inputs.label_maps`) or from arrays.

Follows the run contract of :mod:`napari_global_xai.control`: takes a :class:`~napari_global_xai.control.RunControl`,
returns a result dataclass with ``.cancelled`` (what finished before a cancel stays usable and is written), checks its
output folder before any long work (:func:`~napari_global_xai.analyses.explain_inputs.check_out_dir`) and writes its
files atomically. Text for a terminal is the CLI's job.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..analysis_config import CompareConfig
from ..control import RunControl
from ..figures import save_figure
from .explain_inputs import check_out_dir

__all__ = ["run_compare"]


def run_compare(
    maps: np.ndarray,
    values,
    config: CompareConfig | None = None,
    *,
    column: str = "",
    device: str = "cpu",
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
    config : CompareConfig, optional
        Groups or threshold of the split (:func:`napari_global_xai.analyses.compare.split_groups`), permutations,
        alpha and seed (:func:`napari_global_xai.analyses.compare.compare_groups`); default ``CompareConfig()``.
    column : str
        Name of the grouping column, for the group names and messages.
    device : str
        Where the permutation test's matmuls run (:data:`napari_global_xai.config.DEVICES`; ``"auto"`` picks
        CUDA/MPS when present).
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

    config = config or CompareConfig()
    control = control or RunControl()
    split = split_groups(values, groups=config.groups, threshold=config.threshold, column=column)
    if regions is not None and np.shape(regions) != np.shape(maps)[1:]:
        raise ValueError(f"region image {np.shape(regions)} does not match the maps {np.shape(maps)[1:]}")
    out = check_out_dir(out_dir)
    result = compare_groups(
        maps,
        split,
        n_permutations=config.n_permutations,
        alpha=config.alpha,
        seed=config.seed,
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
    save_figure(out / "compare.png", draw_compare, result, anatomy, size=(11, 4.5))
