"""The PEPPR panel driven end to end in a real viewer: curves, table and filmstrip linked both ways, several maps
compared in one plot, and screenshots of the panel (Xvfb)."""

import os
from pathlib import Path

import numpy as np
import pytest

from napari_global_xai._qt.explain_widget import ExplainWidget
from napari_global_xai._qt.peppr_figure import MIN_THUMB_PX
from napari_global_xai._qt.peppr_widget import THUMB_SIDE, PepprWidget
from napari_global_xai.peppr.view import thumbnail
from napari_global_xai.perturb.rankings import pixel_ranking, removed_mask

from _timeouts import HANG_GUARD_MS

ARTIFACTS = Path(__file__).resolve().parents[1] / "_artifacts"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _run(dock, qtbot, timeout=HANG_GUARD_MS):
    """Run PEPPR and wait for the result and the first filmstrip."""
    with qtbot.waitSignals([dock.run_panel.stopped, dock.filmstrip_ready], timeout=timeout):
        assert dock.start() is not None


def _explain(explain, qtbot, method):
    """Run the Explain dock and wait for its layers; a failed run fails here with its status line (no hang)."""
    explain.method.value = method
    with qtbot.waitSignal(explain.run_panel.stopped, timeout=HANG_GUARD_MS):
        assert explain.start() is not None
    status = explain.run_panel.status.text()
    assert not status.startswith("error"), status
    qtbot.waitUntil(lambda: not explain.feeder.busy, timeout=HANG_GUARD_MS)


@pytest.fixture
def viewer_with_maps(sample_dock, qtbot, dock_title):
    # the window is shown only for the screenshot: a shown window repaints (through software OpenGL under Xvfb) on
    # every progress report and layer, which cost these tests most of their time on a loaded machine
    viewer, explain = sample_dock(ExplainWidget)
    _explain(explain, qtbot, "gradcam")
    panel = PepprWidget(viewer)
    viewer.window.add_dock_widget(panel, name=dock_title(PepprWidget), area="right", tabify=True)
    viewer.window.resize(1700, 1100)
    panel.map_layers.reset_choices()
    return viewer, explain, panel


def _go_to_image(viewer, index):
    """Move the stack slider (the third axis from the right; image-wise maps add a label axis in front)."""
    viewer.dims.set_current_step(viewer.dims.ndim - 3, index)


def _click(panel, ax, x, y):
    """A left click at data coordinates ``(x, y)`` of ``ax``, through the canvas's own event dispatch."""
    from matplotlib.backend_bases import MouseEvent

    canvas = panel.plot.canvas
    px, py = ax.transData.transform((x, y))
    canvas.callbacks.process("button_press_event", MouseEvent("button_press_event", canvas, px, py, button=1))


def test_panel_links_curves_filmstrip_slider_and_layers(viewer_with_maps, qtbot, tmp_path):
    viewer, _explain, panel = viewer_with_maps
    panel.select_maps(viewer.layers["disc_swelling · gradcam"])
    assert list(panel.labels.value) == ["disc_swelling"]
    panel.fractions.value = "0, 0.05, 0.3, 1"
    panel.random_seeds.value = 1
    _go_to_image(viewer, 3)
    _run(panel, qtbot)
    fractions, erase, restore = panel.curve_data()
    np.testing.assert_allclose(fractions, [0, 0.05, 0.3, 1])
    assert erase[0] == pytest.approx(restore[-1])  # both are the unmodified images
    assert erase[1] < erase[0] - 0.2, erase  # erasing 5 % of pixels in map order destroys disc_swelling
    row = panel.headline()
    assert row["label"] == "disc_swelling" and row["gap"] > row["random_gap"]
    # the plot shows exactly these curves, and the table beside it the summary row
    lines = {tuple(np.round(line.get_ydata(), 6)) for line in panel.handles.curves_ax.get_lines()}
    assert tuple(np.round(erase, 6)) in lines and tuple(np.round(restore, 6)) in lines
    cells = {c.get_text().get_text() for c in panel.handles.table_ax.tables[0].get_celld().values()}
    assert {"A_erase", "p*", f"{row['A_erase']:.3f}", f"{row['gap']:+.3f}"} <= cells
    assert panel.handles.curves_ax.get_legend() is None  # legend outside the curves' axes

    # the filmstrip: image 3 (the stack slider), 4 strips x 4 fractions, made with the engine's masks and fill
    strip = panel.strip
    assert strip.image_index == 3 and [t for t, _ in strip.rows] == [
        "map · erase",
        "map · restore",
        "random · erase",
        "random · restore",
    ]
    original = np.asarray(viewer.layers["uwf_sample"].data[3])
    fill = round(panel.model.card.mean[0] * 255)
    expected = thumbnail(
        np.where(
            removed_mask(pixel_ranking(panel.result_map()), (384, 512), "erase", 0.05)[..., None],
            [fill, round(panel.model.card.mean[1] * 255), 0],
            original * [1, 1, 0],
        ).astype(np.float32),
        THUMB_SIDE,
    )
    assert np.abs(strip.rows[0][1][1].astype(float) - np.rint(expected)).max() <= 1  # map · erase at 0.05
    for r in range(4):
        thumbs = strip.rows[r][1]
        assert thumbs.shape == (4, 128, 170, 3)
        untouched = thumbs[0] if r % 2 == 0 else thumbs[-1]  # erase at 0 / restore at 1: the image itself
        assert np.abs(untouched.astype(float) - np.rint(thumbnail(original * [1, 1, 0], THUMB_SIDE))).max() <= 1
        filled = thumbs[-1] if r % 2 == 0 else thumbs[0]  # everything filled: the training mean
        assert np.ptp(filled[..., 0]) <= 1 and abs(int(filled[0, 0, 0]) - fill) <= 1

    # the figure in its own window, readable: filmstrip fractions on the curves, table ≥ 9 pt, thumbnails ≥ 96 px
    assert panel.figure_window.isVisible() and panel.show_figure.enabled
    assert set(strip.fractions) <= set(panel.result.fractions)
    panel.plot.canvas.draw()
    renderer = panel.plot.canvas.get_renderer()
    cells = panel.handles.table_ax.tables[0].get_celld().values()
    assert min(c.get_text().get_fontsize() for c in cells) >= 9
    assert max(panel.handles.thumb_size_px(renderer)) >= MIN_THUMB_PX  # the longer side

    # click a curve point: fraction, marker, filmstrip highlight and layers follow
    _click(panel, panel.handles.curves_ax, 0.28, 0.6)
    assert panel.fraction.value == pytest.approx(0.3)
    assert panel.highlighted() == 2
    assert list(panel.handles.marker.get_xdata()) == pytest.approx([0.3, 0.3])
    erased = viewer.layers["erased · disc_swelling"]
    assert erased.metadata["fraction"] == pytest.approx(0.3)
    # click a thumbnail (random · restore, fraction 0)
    h, w, step_y, _step_x = panel.handles.tile
    _click(panel, panel.handles.strip_ax, w / 2, 3 * step_y + h / 2)
    assert panel.fraction.value == pytest.approx(0.0) and panel.highlighted() == 0
    # move the slider: marker on the curves and highlight move
    panel.fraction.value = 0.06
    assert list(panel.handles.marker.get_xdata()) == pytest.approx([0.06, 0.06]) and panel.highlighted() == 1
    panel.fraction.value = 0.05
    restored = viewer.layers["restored · disc_swelling"]
    assert erased.data.shape == (64, 384, 512, 3) and erased.metadata["fraction"] == pytest.approx(0.05)
    img = np.asarray(erased.data[3])
    top = removed_mask(pixel_ranking(panel.result_map()), (384, 512), "erase", 0.05)
    assert top.sum() == round(0.05 * 384 * 512)
    fill_value = img[top].reshape(-1, 3)
    assert np.ptp(fill_value[:, 0]) <= 1 and abs(int(fill_value[0, 0]) - fill) <= 1
    np.testing.assert_array_equal(img[~top][:, :2], original[~top][:, :2])  # kept pixels untouched (red, green)
    assert (np.ptp(np.asarray(restored.data[3])[~top], axis=0) <= 1).all()  # everything else is the fill
    # the filmstrip follows the stack slider
    with qtbot.waitSignal(panel.filmstrip_ready, timeout=HANG_GUARD_MS):
        _go_to_image(viewer, 7)
    assert panel.strip.image_index == 7 and panel.highlighted() == 1
    paths = panel.export(tmp_path)
    assert {p.name for p in paths.values()} == {"peppr_curves.csv", "peppr_summary.json", "peppr.png"}
    assert panel.save_panel_figure(tmp_path / "panel.png").stat().st_size > 10_000


def test_two_methods_in_one_plot_and_screenshots(viewer_with_maps, qtbot, show_for_screenshot):
    """Grad-CAM vs saliency overall maps compared in one plot; screenshots of the panel (tests/_artifacts; also
    docs/ for the README with GLOBAL_XAI_UPDATE_DOCS=1)."""
    from PIL import Image

    viewer, explain, panel = viewer_with_maps
    _explain(explain, qtbot, "saliency")
    panel.map_layers.reset_choices()
    panel.select_maps(viewer.layers["overall · gradcam"], viewer.layers["overall · saliency"])
    # one inner fraction (the one shown) unless the README's screenshots are refreshed: 2 maps + their reverses + 1
    # random order, 2 curves each, over 64 images cost 10 forward passes of the stack per inner fraction
    update_docs = bool(os.environ.get("GLOBAL_XAI_UPDATE_DOCS"))
    panel.fractions.value = "0, 0.05, 0.2, 0.5, 1" if update_docs else "0, 0.05, 1"
    panel.random_seeds.value = 1
    _go_to_image(viewer, 20)
    _run(panel, qtbot)
    rows = panel.headline_rows()
    assert [(r["map"], r["label"]) for r in rows] == [("overall · gradcam", "macro"), ("overall · saliency", "macro")]
    plotted = {tuple(np.round(line.get_ydata(), 6)) for line in panel.handles.curves_ax.get_lines()}
    for name in ("overall · gradcam", "overall · saliency"):
        _, erase, restore = panel.curve_data(name)
        assert tuple(np.round(erase, 6)) in plotted and tuple(np.round(restore, 6)) in plotted
    assert len(panel.handles.table_ax.tables[0].get_celld()) == 3 * 7  # header + two rows
    panel.fraction.value = 0.05
    for layer in viewer.layers:
        layer.visible = layer.name in ("mean anatomy (uwf_sample)", "overall · gradcam")
    show_for_screenshot(viewer, size=(1700, 1100))
    viewer.reset_view()
    qtbot.wait(500)
    ARTIFACTS.mkdir(exist_ok=True)
    window = viewer.screenshot(canvas_only=False, flash=False)
    panel_shot = panel.figure_window.grab().toImage()  # the figure's own window
    Image.fromarray(window).save(ARTIFACTS / "peppr_panel_window.png")
    panel_shot.save(str(ARTIFACTS / "peppr_panel.png"))
    if update_docs:  # refresh the README's screenshots on request only
        panel_shot.save(str(DOCS / "peppr_panel.png"))
        (DOCS / "docks").mkdir(exist_ok=True)
        panel_shot.save(str(DOCS / "docks" / "peppr_figure_window.png"))
        Image.fromarray(window).resize((window.shape[1] // 2, window.shape[0] // 2)).save(DOCS / "peppr_window.png")
    shot = np.asarray(Image.open(ARTIFACTS / "peppr_panel.png").convert("RGB")).astype(float)
    assert shot.shape[0] > 500 and shot.std() > 10
    # the filmstrip's highlight frame (yellow) is drawn in the panel
    yellow = (shot[..., 0] > 200) & (shot[..., 1] > 160) & (shot[..., 2] < 90)
    assert yellow.sum() > 100


def test_report_button_writes_the_report_in_a_worker(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """The panel's report button: folder and file asked, report written off the main thread."""
    import json

    from qtpy.QtWidgets import QFileDialog

    viewer = make_napari_viewer()
    panel = PepprWidget(viewer)
    results = tmp_path / "results"
    results.mkdir()
    (results / "concepts_table.json").write_text(json.dumps({"concepts": [{"name": "vessels", "tcav": 0.8}]}))
    out = tmp_path / "out" / "report.html"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(results)))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "HTML (*.html)")))
    assert panel._ask_report() is not None
    qtbot.waitUntil(lambda: out.with_suffix(".pdf").exists(), timeout=HANG_GUARD_MS)  # the PDF is written last
    text = out.read_text()
    assert "Concepts" in text and "vessels" in text and out.with_suffix(".pdf").exists()


@pytest.mark.parametrize("harmonise", [True, False])
def test_filled_layers_are_computed_in_the_run_frame_and_shown_in_the_viewer_frame(make_napari_viewer, harmonise):
    """The erased layer of a right eye: pixels removed in the frame the run read the images in (the maps' frame:
    left-eye for a harmonising card, as stored otherwise), shown in the viewer's left-eye frame."""
    from types import SimpleNamespace

    from sag._spot import H, W, spot_model

    from napari_global_xai.data import AlignedStack
    from napari_global_xai.data.conform import model_frame

    panel = PepprWidget(make_napari_viewer())
    pixels = np.random.default_rng(0).integers(0, 255, (2, H, W, 3), dtype=np.uint8)
    shown = AlignedStack(pixels, ["left eye", "right eye"], laterality=["L", "R"], frame="left")  # as a layer
    model = spot_model(harmonise)
    columns = np.tile(np.arange(W), H)
    ranking = np.argsort(columns, kind="stable")  # the run frame's left columns first
    panel.model, panel.result = model, SimpleNamespace(fill="zero")
    panel._stack = model_frame(shown, model.card)
    panel._rankings, panel._film_map = {"m": ranking}, "m"
    erased = np.asarray(panel.filled_stack("erase", 0.5))
    fill = round(model.card.mean[0] * 255)
    half = W // 2
    for i, eye in enumerate(["L", "R"]):
        removed_on_the_left = harmonise or eye == "L"  # a stored right eye is mirrored on screen
        gone, kept = (slice(0, half), slice(half, W)) if removed_on_the_left else (slice(half, W), slice(0, half))
        assert np.abs(erased[i][:, gone].astype(int) - fill).max() <= 1
        on_screen = shown.get([i])[0]  # the image as the viewer shows it (a right eye mirrored)
        np.testing.assert_array_equal(erased[i][:, kept], on_screen[:, kept])


def test_a_closed_dock_stops_following_the_viewer(make_napari_viewer, dock_title):
    """Closing the PEPPR dock (napari's close button takes it out of the window): moving the image slider no longer
    asks it for filmstrips, new map layers no longer reach its choices, and its figure window closes."""
    from types import SimpleNamespace

    from napari_global_xai._qt._layer_pickers import GLOBAL_MAP_KEY

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 8, 8), np.float32), name="stack")
    panel = PepprWidget(viewer)
    viewer.window.add_dock_widget(panel, name=dock_title(PepprWidget))
    requests = []
    panel.request_filmstrip = lambda: requests.append(viewer.dims.current_step[0])
    panel.result = SimpleNamespace()  # as after a run: the slider asks for the new image's filmstrip

    def add_map(name):
        viewer.add_image(np.zeros((8, 8), np.float32), name=name, metadata={GLOBAL_MAP_KEY: {}})
        return [layer.name for layer in panel.map_layers.choices]

    viewer.dims.set_current_step(0, 2)  # from the middle image (1)
    assert requests == [2] and add_map("a map") == ["a map"]
    panel.figure_window.open()
    viewer.window.remove_dock_widget(panel)
    viewer.dims.set_current_step(0, 3)
    assert requests == [2] and add_map("another map") == ["a map"] and not panel.figure_window.isVisible()
