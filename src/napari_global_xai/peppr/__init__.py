"""PEPPR (Progressive Erasing Plus Progressive Restoration) and per-image deletion/insertion.

One module one job:

``engine``    :class:`CurveEngine` on :class:`napari_global_xai.perturb.MaskedScorer`; ``task``: its shipped chunk
              task (:class:`~.task.CurveChunkTask`)
``curve_functions``  :func:`erase_restore_curves`, :func:`deletion_insertion`
``curves``    curve types (:class:`Curves`, :class:`PerImageCurves`), :func:`curve_area`, :func:`restoration_point`
``result``    :class:`PepprResult`, what a run returns, and its folder (``write`` / ``open``, the file names)
``summary``   :func:`summarise`, the report table, label specificity, :func:`collect_maps`, the printable summary
``pipeline``  :func:`run_peppr` (a :class:`~napari_global_xai.config.PepprConfig` and a
              :class:`~napari_global_xai.control.RunControl`), :func:`run_peppr_pipeline`, :func:`run_peppr_from_files`,
              :func:`peppr_truth` (the frame decided once)
``report``    the PEPPR section of a report; ``filled``: erased / restored images; ``view``: the PEPPR figure data;
              ``drawing``: the PEPPR figure and the curves figure a run writes

Rankings and fills live in :mod:`napari_global_xai.perturb`, ``auroc`` / ``activate`` in
:mod:`napari_global_xai.metrics`, the fraction grid and fill choices in :mod:`napari_global_xai.config`.
"""

from .curve_functions import deletion_insertion, erase_restore_curves
from .curves import Curves, PerImageCurves, curve_area, restoration_point
from .engine import CurveEngine
from .pipeline import peppr_truth, run_peppr, run_peppr_from_files, run_peppr_pipeline
from .result import PepprResult
from .summary import collect_maps, summarise

__all__ = [
    "Curves",
    "PerImageCurves",
    "PepprResult",
    "CurveEngine",
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
