"""The PEPPR panel driven end to end in a real viewer, plus a screenshot of the overlay with the panel (Xvfb)."""

from pathlib import Path

import numpy as np
import pytest

from napari_global_xai._qt.explain_widget import ExplainWidget
from napari_global_xai._qt.peppr_widget import PepprWidget
from napari_global_xai.peppr import pixel_ranking, removed_mask

from _timeouts import HANG_GUARD_MS


ARTIFACTS = Path(__file__).resolve().parents[1] / "_artifacts"


def _run(dock, qtbot, timeout=HANG_GUARD_MS):
    with qtbot.waitSignal(dock.run_panel.stopped, timeout=timeout):
        assert dock.start() is not None


@pytest.fixture
def viewer_with_maps(sample_dock, qtbot):
    viewer, explain = sample_dock(ExplainWidget, show=True)
    explain.method.value = "gradcam"
    with qtbot.waitSignals([explain.run_panel.stopped, explain.feeder.done], timeout=HANG_GUARD_MS):
        assert explain.start() is not None
    panel = PepprWidget(viewer)
    viewer.window.add_dock_widget(panel, name="PEPPR", area="right", tabify=True)
    viewer.window.resize(1600, 1000)
    panel.map_layer.reset_choices()
    return viewer, explain, panel


def test_peppr_panel_runs_plots_and_shows_erased_images(viewer_with_maps, qtbot, tmp_path):
    viewer, _explain, panel = viewer_with_maps
    panel.map_layer.value = viewer.layers["global disc_swelling · gradcam · positive"]
    assert list(panel.labels.value) == ["disc_swelling"]
    panel.fractions.value = "0, 0.02, 0.05, 0.1, 0.3, 1"
    panel.random_seeds.value = 2
    _run(panel, qtbot)
    fractions, erase, restore = panel.curve_data()
    np.testing.assert_allclose(fractions, [0, 0.02, 0.05, 0.1, 0.3, 1])
    assert erase[0] == pytest.approx(restore[-1])  # both are the unmodified images
    assert erase[2] < erase[0] - 0.2, erase  # erasing 5 % of pixels in map order destroys disc_swelling
    row = panel.headline()
    assert row["label"] == "disc_swelling" and row["gap"] > row["random_gap"]
    # the plot shows exactly these curves
    lines = {tuple(np.round(line.get_ydata(), 6)) for line in panel.plot.axes.get_lines()}
    assert tuple(np.round(erase, 6)) in lines and tuple(np.round(restore, 6)) in lines
    # picking a fraction updates the erased / restored layers, linked to the stack slider
    panel.fraction.value = 0.05
    erased = viewer.layers["erased · disc_swelling"]
    restored = viewer.layers["restored · disc_swelling"]
    assert erased.data.shape == (64, 384, 512, 3) and erased.metadata["fraction"] == pytest.approx(0.05)
    img = np.asarray(erased.data[3])
    top = removed_mask(pixel_ranking(panel.result_map()), (384, 512), "erase", 0.05)
    assert top.sum() == round(0.05 * 384 * 512)
    fill_value = img[top].reshape(-1, 3)
    assert np.ptp(fill_value[:, 0]) <= 1  # the top 5 % pixels hold one constant fill (the training mean)
    assert abs(int(fill_value[0, 0]) - round(panel.model.card.mean[0] * 255)) <= 1
    original = np.asarray(viewer.layers["uwf_sample"].data[3])
    np.testing.assert_array_equal(img[~top][:, :2], original[~top][:, :2])  # kept pixels untouched (red, green)
    assert (np.ptp(np.asarray(restored.data[3])[~top], axis=0) <= 1).all()  # everything else is the fill
    panel.fraction.value = 0.3
    assert erased.metadata["fraction"] == pytest.approx(0.3)
    paths = panel.export(tmp_path)
    assert {p.name for p in paths.values()} == {"peppr_curves.csv", "peppr_summary.json", "peppr.png"}


def test_screenshot_of_overlay_and_panel(viewer_with_maps, qtbot):
    viewer, _explain, panel = viewer_with_maps
    for layer in viewer.layers:
        layer.visible = False
    viewer.layers["mean anatomy (uwf_sample)"].visible = True
    overall = viewer.layers["global overall · gradcam · positive"]
    overall.visible = True
    panel.map_layer.value = overall
    panel.fractions.value = "0, 0.05, 0.1, 0.3, 1"
    panel.random_seeds.value = 2
    _run(panel, qtbot)
    assert panel.headline()["label"] == "macro"
    viewer.layers["erased · overall"].visible = False
    viewer.layers["restored · overall"].visible = False
    viewer.reset_view()
    overall.visible = False
    qtbot.wait(300)
    anatomy_only = viewer.screenshot(canvas_only=True, flash=False).astype(float)
    overall.visible = True
    qtbot.wait(300)
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    ARTIFACTS.mkdir(exist_ok=True)
    from PIL import Image

    Image.fromarray(canvas).save(ARTIFACTS / "overlay_canvas.png")
    window = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(window).save(ARTIFACTS / "overlay_with_peppr_panel.png")
    assert canvas.std() > 10  # not blank
    assert window.shape[1] > canvas.shape[1]  # the docks are in the window shot

    # the overlay is visible where the map is high: map data coordinates to canvas pixels with the camera
    h, w = canvas.shape[:2]
    zoom, (cy, cx) = viewer.camera.zoom, viewer.camera.center[-2:]

    def added_light(y, x):
        r, c = int(round((y - cy) * zoom + h / 2)), int(round((x - cx) * zoom + w / 2))
        patch = (canvas[r - 2:r + 3, c - 2:c + 3, :3].astype(float) - anatomy_only[r - 2:r + 3, c - 2:c + 3, :3])
        return patch.sum(-1).mean()

    data = overall.data
    hot = np.unravel_index(np.argmax(data), data.shape)
    fov_cold = np.unravel_index(np.argmin(np.where(data > 0, data, np.inf)), data.shape)
    assert added_light(*hot) > 150, added_light(*hot)
    assert added_light(*hot) > 5 * max(added_light(*fov_cold), 1.0)
