"""The cohort job: a cohort's global maps from an explain run's stored image-wise maps, beside a reference.

``run_cohort(results, config, *, labels_csv=None, rows=None, out_dir=None, control=None) -> CohortResult``:

1. open the explain results folder lazily (:func:`napari_global_xai.explain.result.open_explain`) and build its
   study table (:func:`.table.study_table`: metadata, truth, probability, prediction and outcome per label);
2. select the cohort's rows (:func:`.where.select_rows` of ``config.where``, and ``rows`` when given);
3. reduce the selected images' stored maps in blocks (:func:`.reduce.cohort_reduce`): read a block from the store
   while the previous one is summed, leave out maps that were not computed or are zero everywhere (as the explain
   job does), and sum them exactly into a :class:`~napari_global_xai.aggregate.GlobalMapAccumulator` (the explain
   job's fixed-point mean; ``moments=False``: no std), so memory stays at a few blocks whatever the cohort's size;
4. take the reference (``config.reference``: the run's stored global maps, every image with a map, or the rest)
   and the difference cohort − reference; write the folder (:mod:`.result`) when ``out_dir`` is given.

A cancel (``control``) raises :class:`~napari_global_xai.control.Cancelled` with nothing written: a mean over part
of a cohort is no cohort's map. Qt-free and torch-free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..aggregate import GlobalMapAccumulator
from ..analysis_config import CohortConfig
from ..control import RunControl
from .reduce import cohort_reduce
from .result import CohortResult

__all__ = ["run_cohort"]


def _planes(mean: np.ndarray, overall: np.ndarray | None) -> np.ndarray:
    return np.asarray(mean if overall is None else np.concatenate([mean, overall[None]]), np.float64)


def run_cohort(
    results,
    config: CohortConfig | None = None,
    *,
    labels_csv=None,
    rows=None,
    out_dir=None,
    control: RunControl | None = None,
    anatomy: np.ndarray | None = None,
) -> CohortResult:
    """A cohort's global maps beside a reference (module notes).

    Parameters
    ----------
    results : path or ExplainFolder
        An explain results folder (or its store), or the folder already opened by ``open_explain``.
    config : CohortConfig, optional
        The filter, the label, the threshold and the reference.
    labels_csv : path, optional
        Labels CSV (truth and metadata); default the one beside the run's stack, if any.
    rows : sequence of int, optional
        Image indices the cohort is restricted to (e.g. rows picked in the dock), on top of ``config.where``.
    out_dir : path, optional
        Write the result folder there (:meth:`CohortResult.write`).
    control : RunControl, optional
    anatomy : numpy.ndarray, optional
        Mean anatomy (H, W[, C]) in the maps' frame, drawn under the maps of the PNG.

    Returns
    -------
    CohortResult

    Raises
    ------
    UsageError
        A bad filter, an unknown label, or a filter that selects no image.
    InputError
        No selected image has a stored map for the label(s) (the message says how to have them computed).
    Cancelled
        On a cancel (nothing written).
    """
    from ..analyses.explain_inputs import check_out_dir
    from ..errors import InputError, UsageError
    from ..explain.result import ExplainFolder, open_explain
    from ..provenance import provenance_record
    from ..store.reader import MapBlocks
    from .table import study_table
    from .where import select_rows

    config = config or CohortConfig()
    control = control or RunControl()
    out = check_out_dir(out_dir)
    run = results if isinstance(results, ExplainFolder) else open_explain(results)
    table = study_table(run, labels_csv, config.threshold, config.label)
    selected = select_rows(config.where, table.columns, len(table))
    if rows is not None:
        picked = np.zeros(len(table), bool)
        picked[np.asarray(list(rows), np.int64)] = True
        selected &= picked
    if not selected.any():
        raise UsageError(f"the filter {config.where!r} selects none of the {len(table)} images")
    labels = [config.label] if config.label else list(run.targets)
    label_index = [list(run.targets).index(name) for name in labels]
    have = np.asarray(run.computed, bool)[:, label_index]
    cohort_use = have & selected[:, None]
    if not cohort_use.any():
        raise InputError(
            f"{run.path}: none of the {int(selected.sum())} selected images has a stored map for "
            f"{', '.join(labels)} (the explain run computed maps for its subset {run.subset!r}; run it with "
            "--compute all to have every image's maps)"
        )
    stored = run.global_maps
    overall_labels = [n for n in stored.overall_labels if n in labels] or None
    groups = [cohort_use] + ([have & ~selected[:, None]] if config.reference in ("study", "rest") else [])
    maps = MapBlocks(run.store, run.attrs) if run.out_format == "zarr" else run.image_maps
    accs = cohort_reduce(maps, label_index, labels, groups, control, overall_labels)
    cohort = accs[0].result()
    with_overall = config.label is None
    if config.reference == "global":
        ref_mean = stored.mean[label_index]
        ref_overall = stored.overall if with_overall else None
        ref_count = stored.count[label_index]
        ref_text = f"the explain run's global maps (its subset {run.subset!r})"
    else:
        rest = accs[1]
        if config.reference == "study":
            rest = GlobalMapAccumulator(labels, cohort.mean.shape[1:], overall_labels, moments=False).merge(accs[0])
            rest.merge(accs[1])
        gm = rest.result()
        ref_mean, ref_overall, ref_count = gm.mean, gm.overall if with_overall else None, gm.count
        ref_text = (
            "every image of the study with a stored map"
            if config.reference == "study"
            else "the images outside the cohort with a stored map"
        )
    cohort_planes = _planes(cohort.mean, cohort.overall if with_overall else None)
    reference_planes = _planes(ref_mean, ref_overall)
    result = CohortResult(
        planes=labels + (["overall"] if with_overall else []),
        cohort=cohort_planes,
        reference=reference_planes,
        difference=cohort_planes - reference_planes,
        cohort_count=[int(c) for c in cohort.count],
        reference_count=[int(c) for c in ref_count],
        config=config,
        table=table,
        selected=selected,
        method=run.method,
        frame=run.frame,
        normalisation=str((run.provenance.get("config") or {}).get("normalisation", "")),
        results=str(Path(run.path).resolve()),
        reference_text=ref_text,
        provenance=provenance_record(config=config, results=str(run.path), labels_csv=table.labels_csv),
    )
    if out is not None:
        result.write(out, anatomy=anatomy)
    return result
