"""PEPPR (Progressive Erasing Plus Progressive Restoration) and per-image deletion/insertion.

One module one job:

``engine``    :class:`CurveEngine` on :class:`napari_global_xai.perturb.MaskedScorer`; :func:`erase_restore_curves`,
              :func:`deletion_insertion`
``curves``    result types (:class:`Curves`, :class:`PerImageCurves`, :class:`PepprResult`), :func:`curve_area`,
              :func:`restoration_point`
``summary``   :func:`summarise`, the report table, label specificity, :func:`collect_maps`
``pipeline``  :func:`run_peppr` (a :class:`~napari_global_xai.config.PepprConfig`; the old keywords still work),
              :func:`run_peppr_pipeline`, :func:`run_peppr_from_files`, :func:`peppr_truth` (the frame decided once)
``report``    CSV / JSON / PNG outputs; ``filled``: erased / restored images; ``view``: the PEPPR figure

The public names of the former single ``peppr`` module are re-exported here (rankings and fills from
:mod:`napari_global_xai.perturb`, ``auroc`` / ``activate`` from :mod:`napari_global_xai.metrics`).
"""

from ..config import CONSTANT_FILLS, DEFAULT_FRACTIONS, MODES
from ..control import Cancelled
from ..metrics import activate, auroc
from ..perturb.blend import apply_fill, blend
from ..perturb.rankings import complete_fractions, fraction_counts, pixel_ranking, random_ranking, removed_mask
from .curves import Curves, PepprResult, PerImageCurves, curve_area, restoration_point
from .engine import CurveEngine, deletion_insertion, erase_restore_curves
from .pipeline import peppr_truth, run_peppr, run_peppr_from_files, run_peppr_pipeline
from .summary import collect_maps, summarise

__all__ = [
    "DEFAULT_FRACTIONS",
    "complete_fractions",
    "MODES",
    "CONSTANT_FILLS",
    "Cancelled",
    "Curves",
    "PerImageCurves",
    "PepprResult",
    "CurveEngine",
    "pixel_ranking",
    "random_ranking",
    "fraction_counts",
    "removed_mask",
    "apply_fill",
    "blend",
    "activate",
    "auroc",
    "curve_area",
    "restoration_point",
    "summarise",
    "erase_restore_curves",
    "deletion_insertion",
    "run_peppr",
    "collect_maps",
    "run_peppr_pipeline",
    "run_peppr_from_files",
    "peppr_truth",
]
