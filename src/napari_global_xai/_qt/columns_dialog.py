"""Column-mapping dialog: which column of a labels CSV is the image id, the laterality and each model label.

Shown by the docks when :func:`~napari_global_xai.data.csv_layout.inspect_csv` is unsure (no id column, or model
labels without a column); it starts from what the detection found and returns the options of
:func:`~napari_global_xai.data.read_labels_csv` (``id_column``, ``laterality_column``, ``label_map``).
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout

__all__ = ["ColumnsDialog", "NONE"]

#: The choice "no column" in every dropdown.
NONE = "(none)"


class ColumnsDialog(QDialog):
    """Dropdowns over the CSV's columns for the image id, the laterality and each model label.

    Parameters
    ----------
    layout : CsvLayout
        What the detection found (its choices preselected, its notes shown).
    label_names : list of str
        The model's labels, one dropdown each; ``(none)`` leaves a label without ground truth (its global map then
        uses predicted positives).
    parent : QWidget, optional
    """

    def __init__(self, layout, label_names, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Columns of {layout.path.name}")
        self.layout_found = layout
        self.label_names = list(label_names)
        columns = [c for c in layout.columns if c]
        self.id_combo = self._combo(columns, layout.id_column, allow_none=False)
        self.laterality_combo = self._combo(columns, layout.laterality_column)
        self.label_combos = {name: self._combo(columns, layout.label_columns.get(name)) for name in self.label_names}
        self.message = QLabel("; ".join(layout.notes) or "columns detected; check and confirm")
        self.message.setWordWrap(True)
        form = QFormLayout()
        form.addRow("image id", self.id_combo)
        form.addRow("laterality (L/R, OS/OD)", self.laterality_combo)
        for name, combo in self.label_combos.items():
            form.addRow(f"label {name}", combo)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        box = QVBoxLayout(self)
        box.addWidget(self.message)
        box.addLayout(form)
        box.addWidget(buttons)

    @staticmethod
    def _combo(columns, current, allow_none=True) -> QComboBox:
        combo = QComboBox()
        combo.addItems(([NONE] if allow_none else []) + columns)
        combo.setCurrentText(current if current else (NONE if allow_none else columns[0] if columns else ""))
        return combo

    def problem(self) -> str | None:
        """Why the current choice cannot be used (no id column, one column used twice), or None."""
        chosen = [("image id", self.id_combo.currentText()), ("laterality", self.laterality_combo.currentText())]
        chosen += [(f"label {name}", combo.currentText()) for name, combo in self.label_combos.items()]
        used: dict[str, str] = {}
        if not self.id_combo.currentText() or self.id_combo.currentText() == NONE:
            return "choose the image id column"
        for role, column in chosen:
            if column == NONE:
                continue
            if column in used:
                return f"column {column!r} is chosen for both {used[column]} and {role}"
            used[column] = role
        return None

    def accept(self) -> None:
        """Close with the choice, unless it cannot be used (then say why and stay open)."""
        problem = self.problem()
        if problem:
            self.message.setText(problem)
            return
        super().accept()

    def options(self) -> dict:
        """The choice as keyword arguments of :func:`~napari_global_xai.data.read_labels_csv`.

        Returns
        -------
        dict
            ``id_column``, ``laterality_column`` (None for ``(none)``) and ``label_map`` ``{CSV column: model
            label}`` for every label given a column.
        """
        laterality = self.laterality_combo.currentText()
        return {
            "id_column": self.id_combo.currentText(),
            "laterality_column": None if laterality == NONE else laterality,
            "label_map": {
                combo.currentText(): name for name, combo in self.label_combos.items() if combo.currentText() != NONE
            },
        }
