"""The study table of an explain run: one row per image with its metadata, ground truth, prediction and outcome.

Columns (in this order; every name is a Python identifier, so the filter of :mod:`.where` can name it):

``image``, ``index``
    Image id and position in the stack (the viewer's image axis).
metadata
    Every other column of the labels CSV (``laterality``, ``split``, ``age``, ``site``, ...), typed as the CSV reader
    types them (:func:`napari_global_xai.data.labels.read_labels_csv`); names with other characters get ``_``.
per target label ``L``
    ``truth_L`` (1 / 0, -1 unknown), ``prob_L`` (the model's probability), ``pred_L`` (1 when ``prob_L`` ≥ the
    threshold), ``outcome_L`` (``TP``, ``FP``, ``FN``, ``TN``; empty where the truth is unknown) and ``map_L``
    (true when the run stored the image's map for ``L``).
the focus label (``CohortConfig.label``)
    ``truth``, ``prob``, ``pred``, ``outcome``, ``map``: the same for that label, so ``outcome == 'FP'`` reads as
    "the focus label's false positives".

Qt-free and torch-free.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["OUTCOMES", "StudyTable", "study_table", "outcomes", "labels_csv_of", "column_key"]

#: The outcomes of a prediction against the truth, in display order.
OUTCOMES = ("TP", "FP", "FN", "TN")
_PER_LABEL = ("truth", "prob", "pred", "outcome", "map")


def outcomes(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """``TP`` / ``FP`` / ``FN`` / ``TN`` per row (``""`` where the truth is unknown, i.e. not 0 or 1)."""
    truth = np.asarray(truth)
    predicted = np.asarray(predicted, bool)
    out = np.full(truth.shape, "", dtype="<U2")
    known = (truth == 0) | (truth == 1)
    positive = truth == 1
    out[known & positive & predicted] = "TP"
    out[known & ~positive & predicted] = "FP"
    out[known & positive & ~predicted] = "FN"
    out[known & ~positive & ~predicted] = "TN"
    return out


@dataclass
class StudyTable:
    """The study table (module notes).

    Attributes
    ----------
    image_ids : list of str
    labels : list of str
        The run's target labels.
    columns : dict of str to numpy.ndarray
        Each ``(n,)``, in display order.
    threshold : float
    focus : str or None
        The label of the short columns.
    labels_csv : str
        Where the truth and metadata came from (empty: none).
    """

    image_ids: list[str]
    labels: list[str]
    columns: dict
    threshold: float
    focus: str | None = None
    labels_csv: str = ""

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def has_truth(self, label: str) -> bool:
        return bool(np.isin(self.columns[f"truth_{column_key(label)}"], (0, 1)).any())

    def outcome_counts(self, label: str, rows: np.ndarray | None = None) -> dict[str, int]:
        """``{TP: .., FP: .., FN: .., TN: ..}`` of ``label`` over ``rows`` (a bool mask; default every row)."""
        values = self.columns[f"outcome_{column_key(label)}"]
        if rows is not None:
            values = values[rows]
        return {o: int((values == o).sum()) for o in OUTCOMES}

    def cell(self, row: int, name: str) -> str:
        """A cell as text (4 significant digits for probabilities)."""
        value = self.columns[name][row]
        if isinstance(value, (float, np.floating)):
            return "" if np.isnan(value) else f"{value:.4g}"
        return str(value)

    def to_csv(self, selected: np.ndarray | None = None) -> str:
        """The table as CSV text, with an ``in_cohort`` column (1 / 0) when ``selected`` is given."""
        names = [n for n in self.columns if n not in _PER_LABEL]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names + (["in_cohort"] if selected is not None else []))
        for row in range(len(self)):
            extra = [int(selected[row])] if selected is not None else []
            writer.writerow([self.cell(row, n) for n in names] + extra)
        return buffer.getvalue()


def column_key(name: str) -> str:
    """A column name as an identifier the filter can name (other characters become ``_``)."""
    out = re.sub(r"\W", "_", str(name).strip())
    return out if out and not out[0].isdigit() else f"c_{out}"


def labels_csv_of(run) -> Path | None:
    """The labels CSV found by convention beside the explain run's stack (its first input), if any."""
    from ..data.readers import _labels_beside

    for item in (run.provenance.get("inputs") or [])[:1]:
        path = Path(str(item.get("path", "")))
        if path.exists():
            return _labels_beside(path)
    return None


def study_table(run, labels_csv=None, threshold: float = 0.5, focus: str | None = None) -> StudyTable:
    """The study table of an explain run (an :class:`~napari_global_xai.explain.result.ExplainFolder`).

    Parameters
    ----------
    run : ExplainFolder
    labels_csv : path, optional
        Labels CSV with the images' truth and metadata; default the CSV beside the run's stack
        (:func:`labels_csv_of`), else none (truth unknown, no metadata).
    threshold : float
    focus : str, optional
        The label of the short columns; must be a target label.

    Raises
    ------
    UsageError
        ``focus`` is not among the run's target labels.
    LabelsError
        The CSV cannot be read or its rows do not match the run's images.
    """
    from ..data.labels import read_labels_csv
    from ..errors import UsageError

    targets = list(run.targets)
    if focus is not None and focus not in targets:
        raise UsageError(f"--label: {focus!r} is not among the explained labels ({', '.join(targets)})")
    ids = list(run.image_ids)
    n = len(ids)
    path = Path(labels_csv) if labels_csv is not None else labels_csv_of(run)
    table = read_labels_csv(path, ids, label_names=run.model_labels) if path is not None else None
    columns: dict[str, np.ndarray] = {"image": np.asarray(ids, dtype=str), "index": np.arange(n)}
    if table is not None:
        for name, values in (("laterality", table.laterality), ("split", table.split)):
            if values is not None:
                columns[name] = np.asarray(values)
        for name, values in table.metadata.items():
            columns.setdefault(column_key(name), np.asarray(values))
    probabilities = np.asarray(run.probabilities, np.float64)
    computed = np.asarray(run.computed, bool)
    for j, label in enumerate(targets):
        truth = np.full(n, -1, np.int64)
        if table is not None and label in table.names:
            truth = table.values[:, table.names.index(label)].astype(np.int64)
        prob = probabilities[:, list(run.model_labels).index(label)]
        pred = prob >= float(threshold)
        key = column_key(label)
        columns[f"truth_{key}"] = truth
        columns[f"prob_{key}"] = prob
        columns[f"pred_{key}"] = pred.astype(np.int64)
        columns[f"outcome_{key}"] = outcomes(truth, pred)
        columns[f"map_{key}"] = computed[:, j]
    if focus is not None:
        key = column_key(focus)
        for part in _PER_LABEL:
            columns[part] = columns[f"{part}_{key}"]
    return StudyTable(ids, targets, columns, float(threshold), focus, str(path) if path is not None else "")
