"""The cohort dock: the study table filters, a row click moves the image slider, the cohort's maps arrive as layers,
and the dock fits a 1,280 × 800 screen."""

import importlib.util
from pathlib import Path

import numpy as np

from napari_global_xai._qt.cohort_widget import CohortWidget, load_study

from _timeouts import HANG_GUARD_MS

# the explain run and the independent mean of the core's tests (tests/ is no package)
_spec = importlib.util.spec_from_file_location("cohort_core_tests", Path(__file__).parents[1] / "test_cohort.py")
_core = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_core)
N, _explain, _independent = _core.N, _core._explain, _core._independent


def test_cohort_dock(tmp_path, make_napari_viewer, qtbot, one_torch_thread):
    out, csv = _explain(tmp_path)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((N, 20, 30), np.float32), name="stack")
    dock = CohortWidget(viewer)
    dock.results.setText(str(out))
    dock.labels_csv.setText(str(csv))
    dock._loaded(load_study(out, csv, 0.5))
    assert dock.model.rowCount() == N and "image" in dock.table.names
    dock.where.setText("site == 'A'")
    dock._refilter()
    assert dock.model.rowCount() == N // 2
    dock.view.clicked.emit(dock.model.index(3, 0))
    assert viewer.dims.current_step[0] == 6  # the 4th shown row is image 6
    dock.reference.setCurrentText("global")
    dock._start()
    qtbot.waitUntil(lambda: not dock.panel.running, timeout=HANG_GUARD_MS)
    qtbot.waitUntil(lambda: not dock.feeder.busy, timeout=HANG_GUARD_MS)
    label = dock.label.currentText()
    cohort = [layer for layer in viewer.layers if "cohort: " in layer.name]
    assert len(cohort) == 1 and label in cohort[0].name
    # shown on the Explain layers' scale: the stored mean x the factor map_scale gives, its unit in metadata
    from napari_global_xai._layers import MAP_SCALE_KEY

    scale = cohort[0].metadata[MAP_SCALE_KEY]
    expected = _independent(out, csv, label, range(0, N, 2))[0]
    assert scale["unit"].startswith("share of the map's mass per pixel") and scale["factor"] >= 1
    np.testing.assert_allclose(cohort[0].data, expected * scale["factor"], rtol=1e-5, atol=1e-9 * scale["factor"])
    dock.resize(420, 700)
    assert dock.minimumSizeHint().height() <= 800 and dock.sizeHint().height() <= 800
