"""Cohort dock: browse an explain run's study table, pick a cohort, and see its global maps beside the reference's.

The table (:func:`napari_global_xai.cohort.table.study_table`: image, metadata, truth / probability / prediction /
outcome per label) is shown in a ``QTableView`` over a small model; the rows shown are those passing the filters
(outcome, probability range of the chosen label, and a free filter in the grammar of
:mod:`napari_global_xai.cohort.where`). Clicking a row moves the viewer's image slider to that image. *Cohort maps*
runs :func:`napari_global_xai.cohort.pipeline.run_cohort` in a thread worker (the shown rows, or only the rows
selected in the table) and adds three layers: the cohort's map, the reference's and their difference.

PEPPR or Compare on the cohort: *Export cohort CSV…* writes the study table with an ``in_cohort`` column (1 / 0);
the Compare dock (column ``in_cohort``, groups ``1`` and ``0``) and ``global-xai compare --csv … --column
in_cohort`` read it. Everything sits in a scroll area, so the dock fits a 1,280 × 800 screen.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QAbstractTableModel, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..analysis_config import COHORT_REFERENCES, CohortConfig
from ._layout import scroll_body
from ._runner import LayerFeeder, RunPanel

__all__ = ["CohortWidget", "StudyTableModel", "cohort_layers", "load_study", "image_axis"]

ANY = "(any)"
#: Rows of the table shown at least (its minimum height), so the form and the table share a laptop screen.
TABLE_ROWS = 8


class StudyTableModel(QAbstractTableModel):
    """The rows ``shown`` (image indices) of a :class:`~napari_global_xai.cohort.table.StudyTable`."""

    def __init__(self, table=None, parent=None):
        super().__init__(parent)
        self.table = table
        self.shown = np.arange(len(table)) if table is not None else np.zeros(0, int)

    def set_rows(self, table, shown: np.ndarray) -> None:
        self.beginResetModel()
        self.table, self.shown = table, np.asarray(shown, int)
        self.endResetModel()

    def rowCount(self, parent=None):  # noqa: N802 - Qt's name
        return 0 if parent is not None and parent.isValid() else len(self.shown)

    def columnCount(self, parent=None):  # noqa: N802 - Qt's name
        return 0 if (parent is not None and parent.isValid()) or self.table is None else len(self.table.names)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        return self.table.cell(int(self.shown[index.row()]), self.table.names[index.column()])

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt's name
        if role != Qt.ItemDataRole.DisplayRole or self.table is None:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self.table.names[section]
        return str(section + 1)


def load_study(path, labels_csv, threshold: float, control=None):
    """The explain folder and its study table (every label's columns, no focus: the dock filters per label)."""
    from ..cohort.table import study_table
    from ..explain.result import open_explain

    run = open_explain(path)
    return run, study_table(run, labels_csv or None, threshold)


def image_axis(viewer) -> int:
    """The viewer's image axis: the one named ``image`` (the store's layers name it), else the axis before y, x."""
    labels = [str(a) for a in viewer.dims.axis_labels]
    return labels.index("image") if "image" in labels else max(0, viewer.dims.ndim - 3)


def cohort_layers(result) -> list[tuple]:
    """Layer data tuples: the cohort's map, the reference's and their difference, for each plane, on the Explain
    layers' scale (stored values × :func:`~napari_global_xai.figures.map_scale`'s factor, its unit in metadata)."""
    from .._layers import MAP_SCALE_KEY, map_layer_name
    from ..figures import map_scale

    out = []
    where = result.config.where or "every image"
    for p, name in enumerate(result.planes):
        cohort, reference, diff = (
            np.asarray(a[p], np.float64) for a in (result.cohort, result.reference, result.difference)
        )
        finite = np.concatenate([cohort[np.isfinite(cohort)], reference[np.isfinite(reference)]])
        factor, unit = map_scale(result.normalisation, float(np.percentile(finite, 99.9)) if finite.size else 1.0)
        cohort, reference, diff = (np.nan_to_num(a * factor).astype(np.float32) for a in (cohort, reference, diff))
        top = float(np.percentile(finite * factor, 99.9)) if finite.size else 1.0
        dtop = float(np.percentile(np.abs(diff), 99.9))
        meta = {"cohort": where, MAP_SCALE_KEY: {"factor": factor, "unit": unit}}
        common = {"blending": "additive", "metadata": meta}
        out += [
            (
                cohort,
                {
                    "name": map_layer_name("global", result.method, name, f"cohort: {where}"),
                    "colormap": "inferno",
                    "contrast_limits": (0.0, top or 1.0),
                    **common,
                },
                "image",
            ),
            (
                reference,
                {
                    "name": map_layer_name("global", result.method, name, f"reference: {result.config.reference}"),
                    "colormap": "inferno",
                    "contrast_limits": (0.0, top or 1.0),
                    "visible": False,
                    **common,
                },
                "image",
            ),
            (
                diff,
                {
                    "name": map_layer_name("global", result.method, name, "cohort − reference"),
                    "colormap": "bwr",
                    "contrast_limits": (-(dtop or 1.0), dtop or 1.0),
                    "opacity": 0.7,
                    "blending": "translucent",
                    "visible": False,
                    "metadata": meta,
                },
                "image",
            ),
        ]
    return out


class CohortWidget(QWidget):
    """The cohort explorer dock (module notes)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.run = None
        self.table = None
        layout = QVBoxLayout(scroll_body(self))
        form = QFormLayout()
        self.results = QLineEdit()
        self.results.setPlaceholderText("explain results folder (or its image_maps.zarr)")
        browse = QPushButton("…")
        browse.clicked.connect(lambda: self._browse(self.results, folder=True))
        form.addRow("Results", _row(self.results, browse))
        self.labels_csv = QLineEdit()
        self.labels_csv.setPlaceholderText("labels CSV (default: beside the explained stack)")
        browse_csv = QPushButton("…")
        browse_csv.clicked.connect(lambda: self._browse(self.labels_csv, folder=False))
        form.addRow("Labels CSV", _row(self.labels_csv, browse_csv))
        self.threshold = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05, value=0.5)
        form.addRow("Threshold", self.threshold)
        layout.addLayout(form)
        self.load_panel = RunPanel("Load study table")
        self.load_panel.set_start(self._load)
        layout.addWidget(self.load_panel)

        filters = QFormLayout()
        self.label = QComboBox()
        self.outcome = QComboBox()
        self.outcome.addItems([ANY, "TP", "FP", "FN", "TN"])
        self.prob_min = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05, value=0.0)
        self.prob_max = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05, value=1.0)
        self.where = QLineEdit()
        self.where.setPlaceholderText("e.g. site == 'B' and age >= 60")
        self.only_selected = QCheckBox("only the rows selected in the table")
        self.reference = QComboBox()
        self.reference.addItems(list(COHORT_REFERENCES))
        filters.addRow("Label", self.label)
        filters.addRow("Outcome", self.outcome)
        filters.addRow("Probability", _row(self.prob_min, QLabel("to"), self.prob_max))
        filters.addRow("Filter", self.where)
        filters.addRow("Judge against", self.reference)
        filters.addRow("", self.only_selected)
        layout.addLayout(filters)
        for signal in (self.label.currentIndexChanged, self.outcome.currentIndexChanged):
            signal.connect(self._refilter)
        for spin in (self.prob_min, self.prob_max):
            spin.valueChanged.connect(self._refilter)
        self.where.editingFinished.connect(self._refilter)
        self.count = QLabel("no study loaded")
        self.count.setWordWrap(True)
        layout.addWidget(self.count)

        self.model = StudyTableModel()
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setMinimumHeight(TABLE_ROWS * 24)
        self.view.clicked.connect(self._jump)
        layout.addWidget(self.view, 1)

        self.panel = RunPanel("Cohort maps")
        self.panel.set_start(self._start)
        layout.addWidget(self.panel)
        export = QPushButton("Export cohort CSV… (for Compare / PEPPR)")
        export.clicked.connect(self._export)
        layout.addWidget(export)
        self.feeder = LayerFeeder(self.viewer, self)

    # --- the study --------------------------------------------------------------------------------------------
    def _browse(self, field: QLineEdit, folder: bool) -> None:
        path = (
            QFileDialog.getExistingDirectory(self, "Explain results folder")
            if folder
            else QFileDialog.getOpenFileName(self, "Labels CSV", filter="CSV (*.csv)")[0]
        )
        if path:
            field.setText(path)

    def _load(self) -> None:
        self.load_panel.launch(
            load_study,
            self._loaded,
            path=self.results.text().strip(),
            labels_csv=self.labels_csv.text().strip(),
            threshold=float(self.threshold.value()),
        )

    def _loaded(self, loaded) -> None:
        self.run, self.table = loaded
        self.label.blockSignals(True)
        self.label.clear()
        self.label.addItems(list(self.table.labels))
        self.label.blockSignals(False)
        self._refilter()

    def filter_text(self) -> str | None:
        """The shown rows' filter in the grammar of :mod:`napari_global_xai.cohort.where` (None: every row)."""
        from ..cohort.table import column_key

        key = column_key(self.label.currentText())
        parts = []
        if self.outcome.currentText() != ANY:
            parts.append(f"outcome_{key} == '{self.outcome.currentText()}'")
        if self.prob_min.value() > 0 or self.prob_max.value() < 1:
            parts.append(f"{self.prob_min.value():g} <= prob_{key} <= {self.prob_max.value():g}")
        if self.where.text().strip():
            parts.append(f"({self.where.text().strip()})")
        return " and ".join(parts) or None

    def shown_rows(self) -> np.ndarray:
        from ..cohort.where import select_rows

        return np.nonzero(select_rows(self.filter_text(), self.table.columns, len(self.table)))[0]

    def _refilter(self) -> None:
        if self.table is None:
            return
        try:
            shown = self.shown_rows()
        except ValueError as exc:
            self.count.setText(str(exc))
            return
        self.model.set_rows(self.table, shown)
        self.count.setText(f"{len(shown)} of {len(self.table)} images shown")

    def _jump(self, index) -> None:
        row = int(self.model.shown[index.row()])
        axis = image_axis(self.viewer)
        if self.viewer.dims.ndim > 2:
            self.viewer.dims.set_current_step(axis, row)

    def cohort_rows(self) -> np.ndarray:
        """The cohort: the shown rows, or only those selected in the table."""
        if self.only_selected.isChecked():
            picked = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
            return self.model.shown[picked]
        return self.model.shown

    # --- the maps ---------------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self.run is None:
            self.panel.status.setText("load a study table first")
            return
        rows = self.cohort_rows()
        if not len(rows):
            self.panel.status.setText("the cohort is empty: change the filters or the selection")
            return
        config = CohortConfig(
            where=self.filter_text(),
            label=self.label.currentText() or None,
            threshold=float(self.threshold.value()),
            reference=self.reference.currentText(),
        )
        self.panel.launch(
            _cohort_job,
            self._show,
            results=self.run,
            config=config,
            table_rows=rows,
            labels_csv=self.labels_csv.text().strip() or None,
        )

    def _show(self, result) -> None:
        self.last_result = result
        self.feeder.feed(cohort_layers(result))
        n = result.cohort_count[0] if result.cohort_count else 0
        self.panel.status.setText(
            f"cohort: {result.n_selected} images, {n} maps · judged against {result.reference_text}"
        )

    def _export(self) -> None:
        if self.table is None:
            return
        path = QFileDialog.getSaveFileName(self, "Cohort CSV", "cohort.csv", filter="CSV (*.csv)")[0]
        if path:
            from ..io_utils import atomic_write_text

            selected = np.zeros(len(self.table), bool)
            selected[self.cohort_rows()] = True
            atomic_write_text(path, self.table.to_csv(selected))


def _cohort_job(results, config, table_rows, labels_csv, control=None):
    from ..cohort.pipeline import run_cohort

    return run_cohort(results, config, labels_csv=labels_csv, rows=table_rows, control=control)


def _row(*widgets) -> QWidget:
    holder = QWidget()
    row = QHBoxLayout(holder)
    row.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        row.addWidget(widget, 1 if isinstance(widget, QLineEdit) else 0)
    return holder
