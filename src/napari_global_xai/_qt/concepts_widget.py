"""Concepts dock: XNN concepts of a stack, one global concept map layer per concept and a concept × label table.

Runs :func:`napari_global_xai.concepts.run_concepts` in a thread worker (progress bar, Cancel). Clicking a concept's
row moves the stack slider to the image that activates it most and shows its top images as a small stack layer.
torch loads only when a run starts.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, SpinBox
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ..analysis_config import ConceptConfig
from ..config import DEFAULT_DEVICE
from ._layer_pickers import stack_from_layer, stack_layers
from ._layout import advanced_group, scroll_body
from ._model_inputs import ModelInputs, load_model_job
from ._runner import LayerFeeder, RunPanel

__all__ = ["CONCEPT_MAP_KEY", "ConceptsWidget", "concepts_job"]

CONCEPT_MAP_KEY = "napari_global_xai_concept_map"


def concepts_job(stack, config, source_name, model_path=None, device=DEFAULT_DEVICE, trust_pickle=False, control=None):
    """Worker body: load the model (torch imports here), run XNN concepts, prepare one layer per concept.

    The run reads the stack in its model's frame; the anatomy backdrop is in the viewer's (left-eye) frame.
    """
    from ..concepts import run_concepts

    model = load_model_job(model_path, device, trust_pickle)
    result = run_concepts(stack, model, config, control=control)
    anatomy = stack.to_left_eye().mean_image()
    rgb = anatomy.shape[-1] == 3
    layers = [
        (
            anatomy.astype(np.uint8) if rgb else anatomy[..., 0],
            {"name": f"mean anatomy ({source_name})", "rgb": rgb},
            "image",
        )
    ]
    for j, gmap in enumerate(result.global_maps):
        top = float(gmap.max()) or 1.0
        layers.append(
            (
                gmap,
                {
                    "name": f"concept {j} · global map",
                    "colormap": "inferno",
                    "blending": "additive",
                    "opacity": 0.7,
                    "contrast_limits": (0.0, top),
                    "metadata": {CONCEPT_MAP_KEY: {"concept": j, "source": source_name}},
                },
                "image",
            )
        )
    return result, layers


class ConceptsWidget(QWidget):
    """Dock: pick a stack and a model, learn K concepts, browse their maps, label weights and top images."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.image_layer = ComboBox(label="image stack", choices=self._stack_layers)
        self.model_inputs = ModelInputs()
        self.model_card, self.device, self.trust_pickle = self.model_inputs.widgets
        defaults = ConceptConfig()
        self.k = SpinBox(label="concepts (K)", min=1, max=64, value=defaults.k)
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=defaults.seed)
        self.form = Container(widgets=[self.image_layer, self.model_card, self.k])
        self.advanced = Container(widgets=[self.seed, self.device, self.trust_pickle])
        self.run_panel = RunPanel("Learn concepts")
        self.run_panel.set_start(self.start)
        self.feeder = LayerFeeder(napari_viewer, self)
        self.table = QTableWidget(0, 0)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.cellClicked.connect(lambda row, _col: self.show_concept(row))
        self.table.setMinimumHeight(180)
        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(self.form.native)
        layout.addWidget(advanced_group(self.advanced))
        layout.addWidget(self.run_panel)
        layout.addWidget(self.table, 1)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.image_layer.reset_choices)
        self.result = None
        self._stack = None
        self._source = None

    def _stack_layers(self, _widget=None):
        return [
            layer
            for layer in stack_layers(self.viewer)
            if CONCEPT_MAP_KEY not in layer.metadata and "napari_global_xai_top_images" not in layer.metadata
        ]

    def start(self):
        from napari.utils.notifications import show_error

        layer = self.image_layer.value
        try:
            if layer is None:
                raise ValueError("open an image stack first")
            stack = stack_from_layer(layer)
            config = ConceptConfig(k=self.k.value, seed=self.seed.value)
        except Exception as exc:  # noqa: BLE001 - shown to the user as one line
            self.run_panel.status.setText(f"error: {exc}")
            show_error(str(exc))
            return None
        self._stack, self._source = stack, layer
        return self.run_panel.launch(
            concepts_job,
            self._on_result,
            stack=stack,
            config=config,
            source_name=layer.name,
            **self.model_inputs.load_options(),
        )

    def _on_result(self, payload):
        self.result, layers = payload
        self.feeder.feed(layers)
        self._fill_table()
        faith = self.result.faithfulness()
        worst = min((v["concepts"] - v["model"] for v in faith.values()), default=None)
        note = f"; concept AUROC vs model: worst {worst:+.3f}" if worst is not None else ""
        state = "cancelled: partial results" if self.result.cancelled else "done"
        self.run_panel.status.setText(f"{state}: {self.result.global_maps.shape[0]} concepts{note}")

    def _fill_table(self):
        r = self.result
        self.table.clear()
        self.table.setRowCount(r.weights.shape[0])
        self.table.setColumnCount(len(r.labels) + 1)
        self.table.setHorizontalHeaderLabels(r.labels + ["top image"])
        self.table.setVerticalHeaderLabels([f"concept {j}" for j in range(r.weights.shape[0])])
        for j, row in enumerate(r.weights):
            for li, value in enumerate(row):
                self.table.setItem(j, li, QTableWidgetItem(f"{value:+.2f}"))
            self.table.setItem(j, len(r.labels), QTableWidgetItem(r.image_ids[int(r.top_images[j, 0])]))
        self.table.resizeColumnsToContents()

    def show_concept(self, concept: int):
        """Move the stack slider to the concept's strongest image and show its top images as a layer.

        The top images are shown in the left-eye frame, the frame of the concept maps (right eyes mirrored).
        """
        if self.result is None:
            return
        top = [int(i) for i in self.result.top_images[concept]]
        step = list(self.viewer.dims.current_step)
        step[0] = top[0]
        self.viewer.dims.current_step = tuple(step)
        pixels = np.asarray(self._stack.to_left_eye().get(top))
        name = "concept top images"
        data = (
            pixels,
            {
                "name": name,
                "rgb": pixels.ndim == 4 and pixels.shape[-1] in (3, 4),
                "metadata": {"napari_global_xai_top_images": {"concept": concept, "images": top}},
                "visible": True,
            },
            "image",
        )
        from ._runner import add_layers

        add_layers(self.viewer, [data])
        self.table.selectRow(concept)
