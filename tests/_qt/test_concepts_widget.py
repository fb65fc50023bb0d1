"""The Concepts dock driven programmatically in a real viewer: layers, weight table, top images on row click."""

import numpy as np
import pytest

from napari_global_xai._qt._method_inputs import METHODS
from napari_global_xai._qt.concepts_widget import CONCEPT_MAP_KEY, ConceptsWidget
from napari_global_xai.models import DEMO_CARD_PATH

from _timeouts import HANG_GUARD_MS

pytestmark = pytest.mark.skipif(not DEMO_CARD_PATH.exists(), reason="demo model not trained")


def test_explain_dock_lists_the_cam_family():
    assert {"gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam"} <= set(METHODS)


def test_concepts_dock_adds_maps_fills_the_table_and_shows_top_images(sample_dock, qtbot):
    viewer, dock = sample_dock(ConceptsWidget)
    dock.k.value = 4
    with qtbot.waitSignals([dock.run_panel.stopped, dock.feeder.done], timeout=HANG_GUARD_MS):
        assert dock.start() is not None
    result = dock.result
    assert result is not None and not result.cancelled
    maps = [layer for layer in viewer.layers if CONCEPT_MAP_KEY in layer.metadata]
    assert len(maps) == 4
    for layer in maps:
        j = layer.metadata[CONCEPT_MAP_KEY]["concept"]
        np.testing.assert_array_equal(layer.data, result.global_maps[j])
    # the table is concept × label weights, as computed
    assert dock.table.rowCount() == 4 and dock.table.columnCount() == len(result.labels) + 1
    for j in range(4):
        for li in range(len(result.labels)):
            assert float(dock.table.item(j, li).text()) == pytest.approx(result.weights[j, li], abs=0.006)
    # clicking a concept's row: slider to its strongest image, a layer of its top images
    dock.table.cellClicked.emit(2, 0)
    top = [int(i) for i in result.top_images[2]]
    assert viewer.dims.current_step[0] == top[0]
    layer = viewer.layers["concept top images"]
    assert layer.metadata["napari_global_xai_top_images"]["images"] == top
    np.testing.assert_array_equal(layer.data, dock._stack.to_left_eye().get(top))  # the maps' frame
    assert any(name.startswith("mean anatomy") for name in [ly.name for ly in viewer.layers])
