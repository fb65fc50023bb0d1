"""The group comparison's pipeline: :func:`run_compare` (image-wise maps and a grouping value per map in, a
:class:`~napari_global_xai.analyses.compare_result.CompareResult` out), called by ``global-xai compare`` and the
*Compare groups* dock. The maps come from an explain output folder
(:func:`~napari_global_xai.analyses.explain_inputs.label_maps`) or from arrays.

Follows the run contract of :mod:`napari_global_xai.control`: takes a :class:`~napari_global_xai.control.RunControl`,
returns a result dataclass with ``.cancelled`` (what finished before a cancel stays usable and is written), checks its
output folder before any long work (:func:`~napari_global_xai.analyses.explain_inputs.check_out_dir`) and writes its
files atomically. Text for a terminal is the CLI's job.
"""

from __future__ import annotations

import numpy as np

from ..analysis_config import CompareConfig
from ..control import RunControl
from .compare_result import CompareResult
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
    stored_normalisation: str | None = None,
    out_dir=None,
    control: RunControl | None = None,
) -> CompareResult:
    """Group difference map with its permutation test (and where significant pixels lie).

    Parameters
    ----------
    maps : numpy.ndarray, (n, H, W)
        Image-wise maps (:func:`label_maps`).
    values : sequence, (n,)
        Grouping value per map (a metadata column, or a label's 0/1 status).
    config : CompareConfig, optional
        Groups or threshold of the split (:func:`napari_global_xai.analyses.compare.split_groups`), what is compared
        (``normalisation``: :mod:`.compare_normalise`), the Gaussian smoothing of every map before the test
        (``smooth_sigma``: :func:`.compare_normalise.smooth_maps`), permutations, alpha and seed
        (:func:`napari_global_xai.analyses.compare.compare_groups`); default ``CompareConfig()``.
    column : str
        Name of the grouping column, for the group names and messages.
    device : str
        Where the permutation test's matmuls run (:data:`napari_global_xai.config.DEVICES`; ``"auto"`` picks
        CUDA/MPS when present).
    regions : numpy.ndarray, (H, W) int, optional
        Region label image for the summary.
    stored_normalisation : {"mass", "max", "none"}, optional
        The explain run's per-image normalisation, when known; otherwise read from the maps.
    out_dir : path, optional
        Writes the compare folder (:class:`~napari_global_xai.analyses.compare_result.CompareResult.write`).
    control : RunControl, optional
        Progress (stages ``"permutations"``, ``"refining"``) and cancel (also while smoothing).

    Returns
    -------
    CompareResult
        With ``by_region`` (the per-region summary, when ``regions`` is given) and, in ``metadata``, the
        normalisation, what a lower pixel means under it, the smoothing σ (``smooth_sigma``, pixels) and the
        total-evidence test; the difference map and group means are of the smoothed maps; after a cancel,
        ``cancelled=True`` and the permutations finished so far (a valid, coarser test).

    Raises
    ------
    InputError
        ``normalisation="raw"`` on maps normalised per image (one line: how to get raw maps, or use shares).
    Cancelled
        Cancelled while smoothing or before the first batch of permutations finished.
    """
    from .compare import compare_groups, significance_by_region, split_groups
    from .compare_normalise import MEANINGS, prepare_maps, smooth_maps, smoothing_sigma, total_evidence

    config = config or CompareConfig()
    control = control or RunControl()
    split = split_groups(values, groups=config.groups, threshold=config.threshold, column=column)
    if regions is not None and np.shape(regions) != np.shape(maps)[1:]:
        raise ValueError(f"region image {np.shape(regions)} does not match the maps {np.shape(maps)[1:]}")
    compared = prepare_maps(maps, config.normalisation, stored_normalisation)
    out = check_out_dir(out_dir)
    sigma = smoothing_sigma(np.shape(maps), config.smooth_sigma)
    compared = smooth_maps(compared, sigma, control)
    result = compare_groups(
        compared,
        split,
        n_permutations=config.n_permutations,
        alpha=config.alpha,
        seed=config.seed,
        device=device,
        max_permutations=config.max_permutations,
        control=control,
    )
    result.metadata.update(
        normalisation=config.normalisation,
        meaning=MEANINGS[config.normalisation],
        smooth_sigma=sigma,
        total_evidence=total_evidence(maps, split, config.normalisation, config.n_permutations, config.seed),
    )
    result.by_region = significance_by_region(result, regions, region_names) if regions is not None else None
    if out is not None:
        result.write(out, anatomy)
    return result
