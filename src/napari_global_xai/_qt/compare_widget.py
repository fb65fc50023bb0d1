"""Compare dock: where do two groups of images differ in their image-wise maps (permutation test).

Takes the Explain dock's image-wise maps layer and a CSV column (any metadata column, or a label's 0/1 status),
runs :func:`napari_global_xai.analyses.compare_pipeline.run_compare` in a thread worker and shows the difference map
with a diverging colormap, −log10 p, and the FDR-significant pixels as a labels layer (1: A > B, 2: B > A).
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    SpinBox,
)
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..analysis_config import COMPARE_NORMALISATIONS, COMPARE_SMOOTH_FRACTION, CompareConfig
from ..config import DEFAULT_DEVICE
from ._analyses_common import (
    REGIONS_KEY,
    image_maps_layers,
    labels_of_layer,
    launch_from_inputs,
    maps_of_layer,
)
from ._layer_pickers import stack_from_layer, stack_layers
from ._layout import advanced_group, scroll_body
from ._model_inputs import optional_path
from ._runner import LayerFeeder, RunPanel

__all__ = ["CompareWidget", "compare_job", "csv_columns", "difference_colormap"]

OVERALL = "(each image's mean)"


def csv_columns(path) -> list[str]:
    """Header of a CSV (empty list when unreadable)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return [c.strip() for c in next(csv.reader(handle), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


#: Opacity of the difference overlay: with :func:`difference_colormap` the anatomy shows through where the groups
#: agree and under weak differences.
DIFFERENCE_OPACITY = 0.9
#: Outline width (pixels) of the significant regions, drawn as contours so the anatomy inside stays visible.
SIGNIFICANT_CONTOUR = 2


def difference_colormap():
    """A diverging colormap that is transparent at zero: blue (B higher) ← clear → red (A higher).

    Alpha rises with the size of the difference (0 at the centre, 0.85 at the contrast limits), so the fundus under
    the overlay stays readable wherever the groups differ little; ``bwr`` at opacity 0.8 washed it out everywhere.
    """
    from napari.utils.colormaps import Colormap

    colors = [
        [0.05, 0.35, 1.0, 0.85],
        [0.25, 0.55, 1.0, 0.45],
        [1.0, 1.0, 1.0, 0.0],
        [1.0, 0.45, 0.2, 0.45],
        [1.0, 0.15, 0.05, 0.85],
    ]
    return Colormap(colors, controls=[0.0, 0.3, 0.5, 0.7, 1.0], name="difference (clear at 0)")


def compare_job(maps, label, values, config, column, regions=None, region_names=None, control=None):
    """Worker body: read ``label``'s maps (``maps``: the layer's lazy :class:`~._analyses_common.LayerMaps`), the test
    (on the default device), then the layer data tuples."""
    from ..analyses.compare_pipeline import run_compare

    maps = maps.read(label)[0]
    result = run_compare(
        maps,
        values,
        config,
        column=column,
        device=DEFAULT_DEVICE,
        regions=regions,
        region_names=region_names,
        control=control,
    )
    lim = float(np.abs(result.difference).max()) or 1.0
    a, b = result.split.names
    meta = {"napari_global_xai_compare": result.summary()}
    layers = [
        (
            result.difference.astype(np.float32),
            {
                "name": f"difference {a} − {b}",
                "colormap": difference_colormap(),
                "contrast_limits": (-lim, lim),
                "opacity": DIFFERENCE_OPACITY,
                "blending": "translucent",
                "metadata": meta,
            },
            "image",
        ),
        (result.neg_log10_p.astype(np.float32), {"name": "−log10 p", "colormap": "magma", "visible": False}, "image"),
        (
            result.significant,
            {
                "name": f"significant (FDR {config.alpha:g}): 1 = {a} higher, 2 = {b} higher",
                "opacity": 0.9,
                "metadata": {"napari_global_xai_contour": SIGNIFICANT_CONTOUR},
            },
            "labels",
        ),
    ]
    return result, result.by_region, layers


class CompareWidget(QWidget):
    """Dock: group difference map with permutation test, FDR and family-wise corrected."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.image_layer = ComboBox(label="image stack (ids)", choices=self._stack_layers)
        self.maps_layer = ComboBox(label="image-wise maps", choices=self._maps_layers)
        self.label = ComboBox(label="label", choices=self._labels)
        self.csv = FileEdit(label="CSV with the grouping column", mode="r", filter="*.csv", nullable=True, value=None)
        self.column = ComboBox(label="column", choices=self._columns)
        self.groups = LineEdit(label="groups A, B (empty = the two values)", value="")
        self.threshold = LineEdit(label="numeric threshold (empty = median)", value="")
        defaults = CompareConfig()
        self.n_permutations = SpinBox(
            label="permutations", value=defaults.n_permutations, min=100, max=100000, step=100
        )
        self.alpha = FloatSpinBox(label="alpha (FDR and FWE)", value=defaults.alpha, min=0.001, max=0.5, step=0.01)
        self.normalisation = ComboBox(
            label="compare",
            choices=COMPARE_NORMALISATIONS,
            value=defaults.normalisation,
            tooltip="raw: attributions as the method made them (Explain with normalisation 'none'); shares: each "
            "map divided by its total (a group that concentrates its evidence is lower elsewhere by construction)",
        )
        self.smooth = LineEdit(
            label=f"smoothing σ px (empty = 1/{round(1 / COMPARE_SMOOTH_FRACTION)} of the shorter side, 0 = none)",
            value="" if defaults.smooth_sigma is None else f"{defaults.smooth_sigma:g}",
            tooltip="every map, of both groups, is smoothed with this Gaussian before the test: tames pixel-level, "
            "heavy-tailed maps such as Integrated Gradients', at the price of resolution",
        )
        self.regions = ComboBox(label="regions (labels layer)", choices=self._labels_layers, nullable=True)
        self.form = Container(
            widgets=[self.image_layer, self.maps_layer, self.label, self.csv, self.column, self.normalisation]
        )
        self.advanced = Container(
            widgets=[self.groups, self.threshold, self.n_permutations, self.alpha, self.smooth, self.regions]
        )
        self.csv.changed.connect(lambda _v: self.column.reset_choices())
        self.maps_layer.changed.connect(lambda _v: self.label.reset_choices())
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.form.reset_choices)
            event.connect(self.advanced.reset_choices)
        self.run_panel = RunPanel("Compare groups")
        self.run_panel.set_start(self.start)
        self.feeder = LayerFeeder(napari_viewer, self)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.feeder.done.connect(self._outline_significant)
        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(self.form.native)
        layout.addWidget(advanced_group(self.advanced))
        layout.addWidget(self.run_panel)
        layout.addWidget(self.summary)
        layout.addStretch(1)
        self.result, self.by_region = None, None

    # --- choices ----------------------------------------------------------------------------------------------
    def _stack_layers(self, _w=None):
        return stack_layers(self.viewer)

    def _maps_layers(self, _w=None):
        return image_maps_layers(self.viewer)

    def _labels(self, _w=None):
        return [OVERALL] + labels_of_layer(self.maps_layer.value)

    def _columns(self, _w=None):
        path = optional_path(self.csv.value)
        return csv_columns(path)[1:] if path else []

    def _labels_layers(self, _w=None):
        from napari.layers import Labels

        return [layer for layer in self.viewer.layers if isinstance(layer, Labels)]

    # --- run ----------------------------------------------------------------------------------------------------
    def inputs(self) -> dict:
        from ..analyses.explain_inputs import read_csv_column

        if self.image_layer.value is None or self.maps_layer.value is None:
            raise ValueError("open a stack and run the Explain dock first (its image-wise maps layer is the input)")
        path = optional_path(self.csv.value)
        if path is None or not self.column.value:
            raise ValueError("choose a CSV and its grouping column")
        stack = stack_from_layer(self.image_layer.value)
        label = None if self.label.value in (None, OVERALL) else self.label.value
        maps = maps_of_layer(self.maps_layer.value)  # lazy: the job reads the label's maps in its worker
        idx = maps.indices(label)
        if idx.max() >= len(stack):
            raise ValueError("the image-wise maps do not belong to this image stack")
        values = read_csv_column(path, self.column.value, [stack.image_ids[i] for i in idx])
        groups = [g.strip() for g in self.groups.value.split(",") if g.strip()] or None
        if groups is not None and len(groups) != 2:
            raise ValueError("groups: give two values separated by a comma (B may be 'rest')")
        threshold = float(self.threshold.value) if self.threshold.value.strip() else None
        smooth = float(self.smooth.value) if self.smooth.value.strip() else None
        regions = self.regions.value
        names = None
        if regions is not None:
            names = regions.metadata.get(REGIONS_KEY)
        config = CompareConfig(
            groups=groups,
            threshold=threshold,
            n_permutations=self.n_permutations.value,
            alpha=self.alpha.value,
            normalisation=self.normalisation.value,
            smooth_sigma=smooth,
        )
        return {
            "maps": maps,
            "label": label,
            "values": values,
            "config": config,
            "column": self.column.value,
            "regions": None if regions is None else np.asarray(regions.data),
            "region_names": names,
        }

    def start(self):
        return launch_from_inputs(self, compare_job)

    def _outline_significant(self):
        """The significant regions as outlines (labels contours): the anatomy inside them stays visible."""
        for layer in self.viewer.layers:
            width = layer.metadata.get("napari_global_xai_contour")
            if width and hasattr(layer, "contour"):
                layer.contour = int(width)

    def _on_result(self, payload):
        from ..analyses.compare_normalise import smoothing_text
        from ..analyses.compare_report import floor_text, total_text

        self.result, self.by_region, layers = payload
        self.feeder.feed(layers)
        s = self.result.summary()
        lines = [
            (
                f"{s['groups'][0]} (n={s['n_images'][0]}) vs {s['groups'][1]} (n={s['n_images'][1]}): "
                f"{s['n_significant_fdr']} pixels significant at FDR {s['alpha']:g}, {s['n_significant_fwe']} "
                f"family-wise ({s['n_permutations']} permutations)"
            )
        ]
        lines.append(f"compared: {s['normalisation']}: {s['meaning']}; {smoothing_text(s['smooth_sigma'])}")
        lines.append(f"total evidence: {total_text(s)}")
        lines.append(f"p-floor {floor_text(s)}")
        for row in (self.by_region or [])[:4]:
            if row["n_significant"]:
                lines.append(f"{row['region']}: {row['share_of_significant']:.0%} of significant pixels")
        self.summary.setText("\n".join(lines))
        self.run_panel.status.setText("cancelled: fewer permutations used" if self.result.cancelled else "done")
