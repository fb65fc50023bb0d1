"""Shared viewer set-up for the dock tests: the sample stack opened, a dock added with the stack selected."""

import pytest


@pytest.fixture(autouse=True)
def no_worker_outlives_its_test():
    """Set up before the test's viewer, so torn down after it: wait for the thread workers still running (a closing
    viewer moves its sliders, and a dock may start one then). napari's own event loop does this when it quits
    (``aboutToQuit``); tests never quit it, and a worker alive at interpreter exit aborts the process."""
    yield
    from napari.qt.threading import WorkerBase

    from _timeouts import HANG_GUARD_MS

    WorkerBase.await_workers(HANG_GUARD_MS)


def menu_title(dock_class) -> str:
    """The dock title napari gives a widget opened from the Plugins menu: ``"<display name> (<plugin>)"``."""
    from napari.plugins import menu_item_template
    from npe2 import PluginManager

    pm = PluginManager.instance()
    try:
        manifest = pm.get_manifest("napari-global-xai")
    except KeyError:
        pm.discover()
        manifest = pm.get_manifest("napari-global-xai")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    for widget in manifest.contributions.widgets:
        if commands.get(widget.command, "").endswith(":" + dock_class.__name__):
            return menu_item_template.format(manifest.name, widget.display_name)
    return dock_class.__name__


@pytest.fixture
def dock_title():
    """:func:`menu_title` as a fixture (test modules do not import the conftest)."""
    return menu_title


@pytest.fixture
def sample_dock(make_napari_viewer):
    """``sample_dock(DockClass, show=False) -> (viewer, dock)`` with the sample stack selected in the dock, titled as
    when opened from the Plugins menu."""

    def make(dock_class, show=False, **dock_kwargs):
        viewer = make_napari_viewer(show=show)
        viewer.open_sample("napari-global-xai", "uwf_sample")
        dock = dock_class(viewer)
        viewer.window.add_dock_widget(dock, name=menu_title(dock_class), **dock_kwargs)
        dock.image_layer.reset_choices()
        dock.image_layer.value = viewer.layers["uwf_sample"]
        return viewer, dock

    return make


@pytest.fixture
def show_for_screenshot(qtbot):
    """``show_for_screenshot(viewer, size=(1500, 1000), dock_width=460)``: show a viewer that ran hidden, at ``size``
    with its right-hand docks ``dock_width`` px wide.

    Dock tests run their jobs in a hidden window: a shown one repaints (through software OpenGL under Xvfb) on every
    progress report and new layer, which cost them most of their time on a loaded machine. A window shown only at
    the end lays its docks out squeezed, so they are given their width here.
    """
    from qtpy.QtCore import Qt

    def show(viewer, size=(1500, 1000), dock_width=460):
        window = viewer.window
        window.show()
        window.resize(*size)
        qt_window = window._qt_window
        right = [
            dock
            for dock in window._wrapped_dock_widgets.values()
            if qt_window.dockWidgetArea(dock) == Qt.DockWidgetArea.RightDockWidgetArea
        ]
        qt_window.resizeDocks(right, [dock_width] * len(right), Qt.Orientation.Horizontal)
        qtbot.wait(100)

    return show
