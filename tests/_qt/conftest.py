"""Shared viewer set-up for the dock tests: the sample stack opened, a dock added with the stack selected."""

import pytest


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
