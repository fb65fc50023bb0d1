"""The column-mapping dialog: on its own, and opened by the Explain dock when the CSV's columns are unsure."""

import numpy as np
import pytest
from PIL import Image

from napari_global_xai._qt.columns_dialog import NONE, ColumnsDialog
from napari_global_xai.data import read_labels_csv
from napari_global_xai.data.csv_layout import inspect_csv

from _timeouts import HANG_GUARD_MS

LABELS = ["haemorrhage", "peripheral_lesion", "disc_swelling", "arcade_lesion", "any_disease"]  # the demo card's
CSV = (
    "scan;eye;Haemorrhage;disc;age;site\n"
    "img_0.png;OD;1;0;70;Dundee\nimg_1.png;OS;0;1;55;Perth\nimg_2.png;os;1;1;61;Perth\n"
)


@pytest.fixture
def csv_path(tmp_path):
    path = tmp_path / "archive.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def test_dialog_starts_from_the_detection_and_returns_reader_options(csv_path, qtbot):
    layout = inspect_csv(csv_path, LABELS)
    assert layout.unsure and layout.id_column is None and layout.laterality_column == "eye"
    dialog = ColumnsDialog(layout, LABELS)
    qtbot.addWidget(dialog)
    assert dialog.id_combo.currentText() == "scan"  # no id name found: the first column is offered
    assert dialog.laterality_combo.currentText() == "eye"
    assert dialog.label_combos["haemorrhage"].currentText() == "Haemorrhage"  # found despite the case
    assert dialog.label_combos["disc_swelling"].currentText() == NONE
    assert "no image id column" in dialog.message.text() and "'disc_swelling'" in dialog.message.text()

    dialog.label_combos["disc_swelling"].setCurrentText("eye")
    assert dialog.problem() == "column 'eye' is chosen for both laterality and label disc_swelling"
    dialog.accept()
    assert dialog.result() == 0 and dialog.message.text() == dialog.problem()  # stays open, says why
    dialog.label_combos["disc_swelling"].setCurrentText("disc")
    assert dialog.problem() is None
    options = dialog.options()
    assert options == {
        "id_column": "scan",
        "laterality_column": "eye",
        "label_map": {"Haemorrhage": "haemorrhage", "disc": "disc_swelling"},
    }
    table = read_labels_csv(csv_path, ["img_0", "img_1", "img_2"], LABELS, **options)
    assert table.names == ["haemorrhage", "disc_swelling"]
    np.testing.assert_array_equal(table.values, [[1, 0], [0, 1], [1, 1]])
    np.testing.assert_array_equal(table.laterality, ["R", "L", "L"])
    assert table.missing == ["peripheral_lesion", "arcade_lesion", "any_disease"]
    np.testing.assert_array_equal(table.metadata["age"], [70, 55, 61])


def test_explain_dock_asks_for_columns_and_reads_the_csv_with_them(csv_path, tmp_path, make_napari_viewer, qtbot):
    from napari_global_xai._qt.explain_widget import ExplainWidget

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(folder / f"img_{i}.png")
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-global-xai")
    widget = ExplainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    qtbot.waitUntil(lambda: not widget._devices_worker.is_running, timeout=HANG_GUARD_MS)
    widget.image_layer.reset_choices()
    widget.image_layer.value = viewer.layers["images"]

    widget.labels_csv.value = str(csv_path)  # unsure (no id column): the dialog opens
    dialog = widget.columns_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.label_combos["disc_swelling"].setCurrentText("disc")
    dialog.accept()
    assert widget.csv_options["id_column"] == "scan"

    launched = {}
    widget.run_panel.launch = lambda job, on_result, **kwargs: launched.update(kwargs) or object()
    assert widget.start() is not None, widget.run_panel.status.text()
    table = launched["stack"].labels
    assert table.names == ["haemorrhage", "disc_swelling"] and table.image_ids == ["img_0", "img_1", "img_2"]
    np.testing.assert_array_equal(table.column("disc_swelling"), [0, 1, 1])
    np.testing.assert_array_equal(launched["stack"].laterality, ["R", "L", "L"])
    assert list(table.metadata) == ["age", "site"]
