"""Regions dock: optic disc, fovea and anatomical regions as an editable labels layer, and the region table.

A run finds disc and fovea on the stack's mean anatomy (or takes them from a points layer: first point = disc,
second = fovea), builds the regions (or uses a labels layer the user chose, e.g. the regions layer after editing)
and tabulates each label's global-map mass, area and enrichment with bootstrap intervals; the chosen label's table
is drawn as a bar chart.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, SpinBox
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ..analysis_config import RegionsConfig
from ._analyses_common import (
    REGIONS_KEY,
    image_maps_layers,
    launch_from_inputs,
    maps_of_layer,
)
from ._layer_pickers import stack_from_layer, stack_layers
from ._layout import advanced_group, scroll_body
from ._runner import LayerFeeder, RunPanel

__all__ = ["REGIONS_KEY", "RegionsWidget", "regions_job"]


def regions_job(maps_by_label, config, anatomy, regions=None, region_names=None, disc=None, fovea=None, control=None):
    """Worker body: landmarks, regions, tables, and the layer data tuples. ``maps_by_label`` may read each label's maps
    when looked up (:meth:`~._analyses_common.LayerMaps.by_label`): here, in the worker."""
    from ..analyses.regions_pipeline import run_regions

    result = run_regions(
        maps_by_label,
        config,
        anatomy=anatomy,
        regions=regions,
        region_names=region_names,
        disc=disc,
        fovea=fovea,
        control=control,
    )
    regions, names, landmarks, tables = result.regions, result.region_names, result.landmarks, result.tables
    layers = []
    if landmarks is not None:
        layers.append(
            (
                np.asarray(regions, np.int32),
                {"name": "anatomical regions", "opacity": 0.35, "metadata": {REGIONS_KEY: names}},
                "labels",
            )
        )
        layers.append(
            (
                np.array([landmarks.disc, landmarks.fovea]),
                {
                    "name": "disc & fovea",
                    "size": 9,
                    "face_color": "cyan",
                    "features": {"landmark": ["optic disc", "fovea"]},
                },
                "points",
            )
        )
    return regions, names, landmarks, tables, layers


class RegionsWidget(QWidget):
    """Dock: anatomical regions and how much of each global map they hold."""

    def __init__(self, napari_viewer):
        super().__init__()
        from napari_matplotlib.base import BaseNapariMPLWidget

        self.viewer = napari_viewer
        self.image_layer = ComboBox(label="image stack (anatomy)", choices=self._stack_layers)
        self.maps_layer = ComboBox(label="image-wise maps", choices=lambda _w=None: image_maps_layers(self.viewer))
        self.points = ComboBox(label="disc, fovea points (optional)", choices=self._points_layers, nullable=True)
        self.regions = ComboBox(label="own regions (labels layer)", choices=self._labels_layers, nullable=True)
        self.n_boot = SpinBox(label="bootstrap resamples", value=RegionsConfig().n_boot, min=0, max=20000, step=100)
        self.shown = ComboBox(label="chart of", choices=[])
        self.form = Container(widgets=[self.image_layer, self.maps_layer, self.shown])
        self.advanced = Container(widgets=[self.points, self.regions, self.n_boot])
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._reset_layer_choices)
        self.shown.changed.connect(lambda _v: self.draw())
        self.run_panel = RunPanel("Find regions and tabulate")
        self.run_panel.set_start(self.start)
        self.feeder = LayerFeeder(napari_viewer, self)
        self.plot = BaseNapariMPLWidget(napari_viewer)
        self.plot.setMinimumHeight(260)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["region", "mass share", "area share", "enrichment [CI]"])
        self.table.setMaximumHeight(200)
        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(self.form.native)
        layout.addWidget(advanced_group(self.advanced))
        layout.addWidget(self.run_panel)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.table)
        self.tables, self.landmarks = [], None

    def _reset_layer_choices(self, _event=None):
        for w in (self.image_layer, self.maps_layer, self.points, self.regions):
            w.reset_choices()

    def _stack_layers(self, _w=None):
        return stack_layers(self.viewer)

    def _points_layers(self, _w=None):
        from napari.layers import Points

        return [layer for layer in self.viewer.layers if isinstance(layer, Points)]

    def _labels_layers(self, _w=None):
        from napari.layers import Labels

        return [layer for layer in self.viewer.layers if isinstance(layer, Labels)]

    def inputs(self) -> dict:
        if self.image_layer.value is None or self.maps_layer.value is None:
            raise ValueError("open a stack and run the Explain dock first (its image-wise maps layer is the input)")
        # lazy: the job reads each label's maps in its worker, one label at a time (labels without a map are left out)
        maps = maps_of_layer(self.maps_layer.value).by_label()
        disc = fovea = None
        if self.points.value is not None:
            pts = np.asarray(self.points.value.data)[:, -2:]
            if len(pts) != 2:
                raise ValueError(f"the points layer needs exactly 2 points (disc, then fovea); it has {len(pts)}")
            disc, fovea = tuple(pts[0]), tuple(pts[1])
        regions = names = None
        if self.regions.value is not None:
            regions = np.asarray(self.regions.value.data).astype(np.int64)
            names = self.regions.value.metadata.get(REGIONS_KEY)
        anatomy = stack_from_layer(self.image_layer.value).to_left_eye().mean_image()
        return {
            "maps_by_label": maps,
            "config": RegionsConfig(n_boot=self.n_boot.value),
            "anatomy": anatomy,
            "regions": regions,
            "region_names": names,
            "disc": disc,
            "fovea": fovea,
        }

    def start(self):
        return launch_from_inputs(self, regions_job)

    def _on_result(self, payload):
        _regions, _names, self.landmarks, self.tables, layers = payload
        if layers:
            self.feeder.feed(layers)
        self.shown.choices = [t.label for t in self.tables]
        self.draw()
        if self.landmarks is not None:
            d, f = (tuple(round(v) for v in p) for p in (self.landmarks.disc, self.landmarks.fovea))
            self.run_panel.status.setText(f"done: disc at {d}, fovea at {f} ({self.landmarks.source})")
        else:
            self.run_panel.status.setText("done: your regions")

    def current_table(self):
        return next((t for t in self.tables if t.label == self.shown.value), None)

    def draw(self):
        from ..analyses.regions import draw_region_table

        table = self.current_table()
        if table is None:
            return
        draw_region_table(self.plot.figure, table)
        self.plot.canvas.draw_idle()
        rows = [i for i, k in enumerate(table.kinds) if k == "region"]
        self.table.setRowCount(len(rows))
        for r, i in enumerate(rows):
            lo, hi = table.enrichment_ci[i]
            for c, text in enumerate(
                (
                    table.names[i],
                    f"{table.mass_share[i]:.3f}",
                    f"{table.area_share[i]:.3f}",
                    f"{table.enrichment[i]:.2f} [{lo:.2f}, {hi:.2f}]",
                )
            ):
                self.table.setItem(r, c, QTableWidgetItem(text))
