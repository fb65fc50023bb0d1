"""Shared viewer set-up for the dock tests: the sample stack opened, a dock added with the stack selected."""

import pytest


@pytest.fixture
def sample_dock(make_napari_viewer):
    """``sample_dock(DockClass, show=False) -> (viewer, dock)`` with the sample stack selected in the dock."""

    def make(dock_class, show=False, **dock_kwargs):
        viewer = make_napari_viewer(show=show)
        viewer.open_sample("napari-global-xai", "uwf_sample")
        dock = dock_class(viewer)
        viewer.window.add_dock_widget(dock, name=dock_class.__name__, **dock_kwargs)
        dock.image_layer.reset_choices()
        dock.image_layer.value = viewer.layers["uwf_sample"]
        return viewer, dock

    return make
