"""Every dock fits a 1,280 × 800 laptop screen (scroll areas, advanced options collapsed), and the PEPPR figure is
readable in its own window: table text ≥ 9 pt, thumbnails ≥ 96 px, the saved PNG complete. Screenshots of each dock
at 1,280 × 800 go to tests/_artifacts/docks (and docs/docks with GLOBAL_XAI_UPDATE_DOCS=1)."""

import importlib
import os
from pathlib import Path

import numpy as np
import pytest

from _timeouts import HANG_GUARD_MS

ARTIFACTS = Path(__file__).resolve().parents[1] / "_artifacts" / "docks"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "docks"
SCREEN = (1280, 800)
#: What a dock may ask of the screen: the window's height less napari's menu bar, title and status bar.
MAX_DOCK_HEIGHT = 760
#: A dock's sensible widest minimum (the canvas keeps the rest of 1,280 px).
MAX_DOCK_WIDTH = 560


def _dock_contributions() -> list[tuple[str, type]]:
    """(display name, widget class) of every widget contribution in napari.yaml."""
    from npe2 import PluginManager

    pm = PluginManager.instance()
    try:
        manifest = pm.get_manifest("napari-global-xai")
    except KeyError:
        pm.discover()
        manifest = pm.get_manifest("napari-global-xai")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    docks = []
    for widget in manifest.contributions.widgets:
        module, name = commands[widget.command].split(":")
        docks.append((widget.display_name, getattr(importlib.import_module(module), name)))
    return docks


def test_every_dock_fits_a_laptop_screen(make_napari_viewer, qtbot):
    from PIL import Image
    from qtpy.QtWidgets import QApplication
    from superqt import QCollapsible

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-global-xai", "uwf_sample")
    window = viewer.window._qt_window
    docks = _dock_contributions()
    assert len(docks) >= 7
    update_docs = bool(os.environ.get("GLOBAL_XAI_UPDATE_DOCS"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if update_docs:
        DOCS.mkdir(parents=True, exist_ok=True)
    for name, dock_class in docks:
        widget = dock_class(viewer)
        dock = viewer.window.add_dock_widget(widget, name=name, area="right")
        if hasattr(widget, "image_layer"):
            widget.image_layer.reset_choices()
        window.resize(*SCREEN)
        QApplication.processEvents()
        qtbot.wait(50)
        hint = dock.minimumSizeHint()
        assert hint.height() <= MAX_DOCK_HEIGHT, f"{name} asks for {hint.height()} px of height"
        assert hint.width() <= MAX_DOCK_WIDTH, f"{name} asks for {hint.width()} px of width"
        size = window.size()
        assert (size.width(), size.height()) == SCREEN, f"with {name} open the window grew to {size}"
        for group in widget.findChildren(QCollapsible):  # advanced options start collapsed
            assert not group.isExpanded() and group.content().height() == 0, name
        shot = viewer.screenshot(canvas_only=False, flash=False)
        file = name.lower().replace(" ", "_") + ".png"
        Image.fromarray(shot).save(ARTIFACTS / file)
        if update_docs:
            Image.fromarray(shot).save(DOCS / file)
        assert shot.shape[1] >= SCREEN[0] - 20 and shot.std() > 10
        viewer.window.remove_dock_widget(dock)


def _view_and_strip(n_maps=2, n_fractions=6):
    """A PEPPR view of ``n_maps`` long-named maps with two random seeds, and a filmstrip on its grid."""
    from napari_global_xai.peppr.view import Filmstrip, PepprView, strip_fractions

    f = np.linspace(0, 1, 15)
    rows, curves = [], {}
    for m in range(n_maps):
        name = f"overall · method_with_a_long_name_{m}"
        rows.append(
            {"map": name, "label": "macro", "A_erase": 0.61, "A_restore": 0.83, "gap": 0.22, "random_gap": 0.01}
            | {"p_star": 0.12}
        )
        curves[(name, "erase", "macro")] = 1 - f * 0.4
        curves[(name, "restore", "macro")] = 0.6 + f * 0.4
    random = {(mode, "macro"): np.stack([0.8 + 0.0 * f, 0.81 + 0.0 * f]) for mode in ("erase", "restore")}
    view = PepprView(f, "auroc", "zero", 64, rows, curves, random)
    cols = strip_fractions(f, (0.05, 0.1, 0.2, 0.5), max_columns=n_fractions)
    thumbs = np.full((len(cols), 144, 192, 3), 90, np.uint8)
    titles = ("map · erase", "map · restore", "random · erase", "random · restore")
    return view, Filmstrip(cols, [(t, thumbs) for t in titles], 3, rows[0]["map"])


def _inside(extent, bbox, slack=1.0) -> bool:
    return (
        extent.x0 >= bbox.x0 - slack
        and extent.x1 <= bbox.x1 + slack
        and extent.y0 >= bbox.y0 - slack
        and extent.y1 <= bbox.y1 + slack
    )


@pytest.mark.parametrize("size_px", [(1040, 860), (1100, 935)])  # the figure window's smallest canvas; the PNG
def test_peppr_figure_is_readable_and_complete(size_px):
    """At the figure window's smallest size and in the saved PNG: table text ≥ 9 pt, every column (``p*`` too)
    inside the figure, thumbnails ≥ 96 px, filmstrip fractions on the curves, random curves styled apart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from napari_global_xai._qt.peppr_figure import MIN_THUMB_PX
    from napari_global_xai.peppr.drawing import draw_peppr_figure

    dpi = 100 if size_px[0] == 1040 else 110
    fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    view, strip = _view_and_strip()
    handles = draw_peppr_figure(fig, view, strip, 0.1)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    table = handles.table_ax.tables[0]
    cells = table.get_celld()
    assert min(c.get_text().get_fontsize() for c in cells.values()) >= 9
    header = {c.get_text().get_text(): c for (r, _), c in cells.items() if r == 0}
    assert "p*" in header and _inside(header["p*"].get_window_extent(renderer), fig.bbox)
    assert _inside(table.get_window_extent(renderer), fig.bbox)
    assert max(handles.thumb_size_px(renderer)) >= MIN_THUMB_PX  # the longer side
    # filmstrip fractions are points of the curves
    assert set(np.round(strip.fractions, 9)) <= set(np.round(view.fractions, 9))
    # random-order curves: apart from the map curves and from each other
    lines = [ln for ln in handles.curves_ax.get_lines() if ln.get_label() and not ln.get_label().startswith("_")]
    random = [ln for ln in lines if ln.get_label().startswith("random")]
    maps = [ln for ln in lines if not ln.get_label().startswith("random")]
    assert len(random) == 2 and maps

    def style(line):
        return (line.get_linestyle(), str(line.get_color()), line.get_marker())

    assert style(random[0]) != style(random[1])
    assert random[0].get_linestyle() != random[1].get_linestyle()
    assert str(random[0].get_color()) != str(random[1].get_color())
    for line in random:
        assert line.get_linestyle() not in {m.get_linestyle() for m in maps}
        assert line.get_marker() in ("None", "", None)


def test_strip_fractions_are_points_of_the_curves():
    from napari_global_xai.config import DEFAULT_FRACTIONS, PepprConfig
    from napari_global_xai.peppr.view import MAX_STRIP_COLUMNS, strip_fractions

    config = PepprConfig()
    cols = strip_fractions(config.fractions, config.filled_fractions)
    assert set(cols) <= set(DEFAULT_FRACTIONS) and len(cols) <= MAX_STRIP_COLUMNS
    assert cols[0] == 0 and cols[-1] == 1 and {0.05, 0.1, 0.2, 0.5} <= set(cols)
    assert list(strip_fractions([0, 0.05, 0.3, 1])) == [0, 0.05, 0.3, 1]
    # the written erased / restored images too: off-grid filled fractions move onto the grid
    coarse = PepprConfig(fractions=(0, 0.05, 0.3, 1))
    assert set(coarse.filled_fractions) <= set(coarse.fractions)


def test_progress_says_unit_percent_and_time_left():
    from napari_global_xai.control import ProgressClock, format_duration

    now = [100.0]
    clock = ProgressClock(clock=lambda: now[0])
    first = clock.text(0, 4673, "peppr")
    assert "image forwards" in first and "estimating time left" in first
    now[0] += 40.0
    text = clock.text(2017, 4673, "peppr")
    assert text.startswith("peppr: 2,017 / 4,673 image forwards · 43 % · about ")
    assert text.endswith(" left") and format_duration(2656 * 40 / 2017) in text  # mean rate since the stage began
    assert clock.text(0, 1, "preparing layers") == "preparing layers…"  # a one-step stage by its name
    assert (
        format_duration(59) == "59 s"
        and format_duration(125) == "2 min 05 s"
        and format_duration(7800) == ("2 h 10 min")
    )


def test_run_panel_and_terminal_bar_show_unit_and_time_left(qtbot, capsys):
    from napari_global_xai._qt._runner import RunPanel
    from napari_global_xai.cli._common import _TerminalProgress

    panel = RunPanel("Run")
    qtbot.addWidget(panel)
    panel._on_progress(0, 64, "explain")
    panel._on_progress(16, 64, "explain")  # within the repaint interval: shown with the next repaint
    qtbot.waitUntil(lambda: "16 / 64" in panel.status.text(), timeout=HANG_GUARD_MS)
    text = panel.status.text()
    assert "16 / 64 images" in text and "25 %" in text and ("left" in text or "estimating" in text)
    bar = _TerminalProgress()
    bar(0, 4673, "peppr")
    bar(2017, 4673, "peppr")
    bar.close()
    err = capsys.readouterr().err
    assert "image forwards" in err and " left]" in err


def test_a_burst_of_progress_reports_is_one_repaint_and_the_last_report_is_shown(qtbot, monkeypatch):
    """Hundreds of reports within the repaint interval: the first is shown at once, the rest together (the last
    one), so a fast worker does not keep the main thread repainting; the outcome is never covered by a late one."""
    from napari_global_xai._qt import _runner

    panel = _runner.RunPanel("Run")
    qtbot.addWidget(panel)
    shown = []
    panel.bar.valueChanged.connect(shown.append)
    monkeypatch.setattr(_runner.time, "monotonic", lambda: 1000.0)  # every report inside one interval
    for done in range(1, 301):
        panel.progress_callback(done, 300, "explain")
    qtbot.waitUntil(lambda: panel.bar.value() == 300, timeout=HANG_GUARD_MS)
    assert shown == [1, 300] and "300 / 300 images" in panel.status.text()
    panel._on_progress(10, 300, "explain")  # pending when the run ends: dropped, the outcome stays
    panel._on_returned(None)
    panel.status.setText("done")
    qtbot.wait(2 * int(_runner.PROGRESS_INTERVAL_S * 1000))
    assert panel.status.text() == "done" and panel.bar.value() == panel.bar.maximum()


def test_pieces_handed_over_later_never_reach_a_closed_dock(make_napari_viewer, qtbot):
    """The feeder's layers and ``after`` calls are the dock's children: a dock deleted while they wait runs none
    of them (a pending call used to touch the closed PEPPR dock's deleted slider)."""
    from qtpy.QtWidgets import QWidget

    from napari_global_xai._qt._runner import BREATH_MS, LayerFeeder, after

    viewer = make_napari_viewer()
    calls = []
    kept, closed = QWidget(), QWidget()
    LayerFeeder(viewer, kept).feed([(np.zeros((4, 4)), {"name": "kept"}, "image")])
    LayerFeeder(viewer, closed).feed([(np.zeros((4, 4)), {"name": "gone"}, "image")])
    after(kept, BREATH_MS, lambda: calls.append("kept"))
    after(closed, BREATH_MS, lambda: calls.append("gone"))
    closed.deleteLater()
    qtbot.waitUntil(lambda: "kept" in calls and "kept" in viewer.layers, timeout=HANG_GUARD_MS)
    qtbot.wait(4 * BREATH_MS)
    assert calls == ["kept"] and [layer.name for layer in viewer.layers] == ["kept"]
    kept.deleteLater()


def test_sanity_parameters_follow_the_methods(make_napari_viewer):
    from napari_global_xai._qt.sanity_widget import SanityWidget

    dock = SanityWidget(make_napari_viewer())
    assert dock.params.value.startswith("ig.")
    dock.methods.value = ["gradcam"]  # ig deselected: its parameters leave the field, the run is not refused
    assert "ig." not in dock.params.value
    config = dock.config()
    assert [c.method for c in config.methods] == ["gradcam"]
    dock.params.value = "gradcam.layer=None"
    dock.methods.value = ["gradcam", "ig"]  # ig back: what was typed for it comes back, gradcam's entry stays
    assert "ig.n_steps=8" in dock.params.value and "gradcam.layer=None" in dock.params.value
    assert {c.method for c in dock.config().methods} == {"gradcam", "ig"}


def test_compare_overlay_leaves_the_anatomy_readable():
    from napari_global_xai._qt.compare_widget import DIFFERENCE_OPACITY, difference_colormap

    cmap = difference_colormap()
    centre = cmap.map(np.array([0.5]))[0]
    weak = cmap.map(np.array([0.6, 0.4]))
    strong = cmap.map(np.array([0.0, 1.0]))
    assert centre[3] == pytest.approx(0.0)  # no difference: the fundus shows untouched
    assert (weak[:, 3] < 0.35).all()  # weak differences: mostly anatomy
    assert (strong[:, 3] * DIFFERENCE_OPACITY > 0.6).all()  # strong ones: clearly coloured
    assert strong[0, 2] > strong[0, 0] and strong[1, 0] > strong[1, 2]  # blue for B higher, red for A higher


def test_global_map_colour_bar_names_its_unit():
    from napari_global_xai.figures import map_scale

    factor, label = map_scale("mass", 0.000175)
    assert factor == pytest.approx(1e4) and label == "share of the map's mass per pixel, × 10⁻⁴"
    assert "peak" in map_scale("max", 0.5)[1] and "raw" in map_scale("none", 3.0)[1]
