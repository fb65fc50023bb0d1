"""SAG dock: structured attention graphs for the current image (or every positive) and their stack summary.

Runs :func:`napari_global_xai.sag.run_sag_pipeline` in a thread worker; shows each image's roots as rectangles in a
shapes layer that follows the stack slider, the current image's graph drawn natively in a themed canvas (click a
node to outline its patches on the image), and the stack-level
patch frequency as a heat-map layer plus a table of the most frequent root sets.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ..config import DEFAULT_DEVICE, FILLS, SagConfig
from ._cluster import ClusterPicker
from ._layer_pickers import stack_from_layer, stack_layers
from ._layout import advanced_group, scroll_body
from ._model_inputs import ModelInputs, labels_of_card, load_model_job, optional_path
from ._runner import LayerFeeder, RunPanel

__all__ = ["SagWidget", "sag_job", "root_rectangles", "patch_rectangles", "mirrored_on_layer", "RANKING_METHODS"]

#: The dock refuses a run whose every chosen image the model calls clearly negative (p(full) below this): such a
#: graph explains a confident "no" (the core warns in one line below 0.5 and runs on).
REFUSE_BELOW = 0.1

#: Patch-ranking saliency methods offered by the dock (the CLI's ``--method`` takes any registered name).
RANKING_METHODS = ("igos", "gradcam", "ig", "saliency")


def patch_rectangles(patches, grid, image_index: int, image_hw, mirror: bool = False) -> list[np.ndarray]:
    """One napari rectangle (four ``[image, row, col]`` corners) per patch of a SAG grid, on one image's slice.

    ``mirror``: the layer shows this image mirrored relative to the frame the SAG run used (a right eye, when the
    run and the layer differ in frame), so the columns are mirrored too.
    """
    h, w = image_hw
    rows, cols = grid
    re = np.round(np.linspace(0, h, rows + 1)).astype(int)
    ce = np.round(np.linspace(0, w, cols + 1)).astype(int)
    out = []
    for p in sorted(patches):
        r, c = divmod(int(p), cols)
        r0, r1, c0, c1 = re[r], re[r + 1], ce[c], ce[c + 1]
        if mirror:
            c0, c1 = w - c1, w - c0
        out.append(
            np.array(
                [[image_index, r0, c0], [image_index, r0, c1], [image_index, r1, c1], [image_index, r1, c0]], float
            )
        )
    return out


def mirrored_on_layer(run_stack, layer_stack, image_index: int) -> bool:
    """True when the layer shows image ``image_index`` mirrored relative to the frame the run used (a right eye in a
    stack whose frames differ: e.g. a model that does not harmonise laterality, on a layer in the left-eye frame)."""
    if run_stack is None or layer_stack is None or run_stack.frame == layer_stack.frame:
        return False
    return str(layer_stack.laterality[image_index]) == "R"


def root_rectangles(results, image_hw, mirror=lambda image_index: False) -> tuple[list[np.ndarray], list[str]]:
    """One napari rectangle (four ``[image, row, col]`` corners) per root patch of every result, with a text label.

    ``mirror(image_index) -> bool`` says which images the layer shows mirrored (see :func:`mirrored_on_layer`).
    """
    shapes, texts = [], []
    for result in results:
        for k, root in enumerate(result.roots):
            rects = patch_rectangles(root, result.grid, result.image_index, image_hw, mirror(result.image_index))
            shapes += rects
            texts += [f"root {k + 1}"] * len(rects)
    return shapes, texts


def sag_job(
    stack,
    label,
    indices,
    config: SagConfig,
    source_name,
    model_path=None,
    device=DEFAULT_DEVICE,
    trust_pickle=False,
    cluster=None,
    refuse_negative=False,
    control=None,
):
    """Worker body: load the model (the demo model when ``model_path`` is None), run SAG, prepare the layers
    (torch imports here, off the main thread). Returns the :class:`~napari_global_xai.sag.SagRunResult`, the
    layer data and the run's one-line notes (e.g. negative images). ``cluster`` (a :class:`~._cluster.ClusterTarget`,
    None for this process) is joined first. ``refuse_negative``: when every chosen image is negative for the label,
    stop with that one line before any search (the current image of the dock; p(full) < :data:`REFUSE_BELOW`)."""
    import warnings

    from ..control import RunControl
    from ..data.conform import fit_stack_to_model, model_frame
    from ..data.labels import InputNotice
    from ..sag import patch_masks, run_sag_pipeline
    from ..sag.pipeline import negative_images, negative_message

    control = control or RunControl()
    model = load_model_job(model_path, device, trust_pickle)
    if refuse_negative and indices and label in model.labels:
        frame = model_frame(fit_stack_to_model(stack, model.card), model.card)
        negatives = negative_images(frame, model, label, indices, below=REFUSE_BELOW)
        if len(negatives) == len(indices):
            raise ValueError(negative_message(frame, label, negatives, len(indices)))
    executor = None if cluster is None else cluster.executor(stack=stack, report=control.report)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputNotice)
        run = run_sag_pipeline(stack, model, label, config, indices=indices, control=control, executor=executor)
    notes = [str(w.message) for w in caught if issubclass(w.category, InputNotice)]
    for w in caught:  # other warnings as usual
        if not issubclass(w.category, InputNotice):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    summary = run.summary
    h, w = stack.shape[1:3]
    masks = patch_masks((h, w), tuple(summary["grid"]))
    heat = np.tensordot(np.asarray(summary["patch_frequency"], np.float32), masks.astype(np.float32), axes=1)
    shapes, texts = root_rectangles(run.results, (h, w), lambda i: mirrored_on_layer(run.stack, stack, i))
    layers = [
        (
            heat,
            {
                "name": f"SAG patch frequency · {label}",
                "colormap": "viridis",
                "blending": "additive",
                "opacity": 0.6,
                "contrast_limits": (0.0, 1.0),
                "metadata": {"napari_global_xai_sag": {"label": label, "source": source_name}},
            },
            "image",
        )
    ]
    if shapes:
        layers.append(
            (
                shapes,
                {
                    "name": f"SAG roots · {label}",
                    "shape_type": "rectangle",
                    "edge_color": "yellow",
                    "face_color": "transparent",
                    "edge_width": 2,
                    "features": {"root": texts},
                },
                "shapes",
            )
        )
    return run, layers, notes


class SagWidget(QWidget):
    """Dock: SAG for the current image or every image positive for a label."""

    def __init__(self, napari_viewer):
        super().__init__()
        from napari_matplotlib.base import BaseNapariMPLWidget

        self.viewer = napari_viewer
        self.image_layer = ComboBox(label="image stack", choices=self._stack_layers)
        self.model_inputs = ModelInputs()
        self.model_card, self.device, self.trust_pickle = self.model_inputs.widgets
        self.label = ComboBox(label="label", choices=labels_of_card(None))
        self.scope = ComboBox(label="images", choices=["current image", "all positives"], value="current image")
        defaults = SagConfig()
        self.method = ComboBox(label="patch ranking", choices=list(RANKING_METHODS), value=defaults.method)
        self.fill = ComboBox(label="fill", choices=list(FILLS), value=defaults.fill)
        self.form = Container(widgets=[self.image_layer, self.model_card, self.label, self.scope])
        self.advanced = Container(widgets=[self.method, self.fill, self.device, self.trust_pickle])
        self.model_card.changed.connect(self._on_model_changed)
        self.cluster = ClusterPicker(owner=self)
        self.run_panel = RunPanel("Run SAG")
        self.run_panel.set_start(self.start)
        self.feeder = LayerFeeder(napari_viewer, self)
        self.plot = BaseNapariMPLWidget(napari_viewer)
        self.plot.setMinimumHeight(360)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["root patches", "images", "frequency"])
        self.table.setMaximumHeight(160)
        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(self.form.native)
        layout.addWidget(advanced_group(self.advanced))
        layout.addWidget(self.cluster)
        layout.addWidget(self.run_panel)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.table)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.image_layer.reset_choices)
        self.viewer.dims.events.current_step.connect(self._follow_slider)
        self.plot.canvas.mpl_connect("button_press_event", self._on_canvas_click)
        self.node_axes: dict = {}
        self.shown_result = None
        self.run = None  # the last SagRunResult
        self.results, self.summary = [], None
        self.shown_index: int | None = None  # stack index of the graph drawn in the panel

    def _stack_layers(self, _widget=None):
        return stack_layers(self.viewer)

    def _on_model_changed(self, value):
        self.label.choices = labels_of_card(optional_path(value))

    def current_index(self) -> int:
        """The image under the stack slider: the third axis from the right (layers align on their last axes, so a
        4-D image-wise maps layer puts its label axis first)."""
        return int(self.viewer.dims.current_step[max(self.viewer.dims.ndim - 3, 0)])

    def start(self):
        from napari.utils.notifications import show_error

        layer = self.image_layer.value
        try:
            if layer is None:
                raise ValueError("open an image stack first")
            stack = stack_from_layer(layer)
            cluster = self.cluster.target(self.device.value)
        except Exception as exc:  # noqa: BLE001
            self.run_panel.status.setText(f"error: {exc}")
            show_error(str(exc))
            return None
        indices = [self.current_index()] if self.scope.value == "current image" else None
        config = SagConfig(method=self.method.value, fill=self.fill.value)
        return self.run_panel.launch(
            sag_job,
            self._on_result,
            stack=stack,
            label=self.label.value,
            indices=indices,
            config=config,
            source_name=layer.name,
            cluster=cluster,
            refuse_negative=indices is not None,
            **self.model_inputs.load_options(),
        )

    def _on_result(self, payload):
        from napari.utils.notifications import show_warning

        self.run, layers, notes = payload
        self.results, self.summary = self.run.results, self.run.summary
        self.feeder.feed(layers)
        self._fill_table()
        by_index = {r.image_index: r for r in self.results}
        self.draw(by_index.get(self.current_index(), self.results[0] if self.results else None))
        n_roots = self.run.n_roots
        done = (
            f"cancelled: {len(self.results)} of {self.run.n_requested} image(s) done"
            if self.run.cancelled
            else f"done: {len(self.results)} image(s)"
        )
        self.run_panel.status.setText(f"{done}, {n_roots} roots shown" + "".join(f"\nwarning: {n}" for n in notes))
        for note in notes:
            show_warning(note)

    def _follow_slider(self, _event=None):
        """Show the graph of the image under the stack slider when it has one."""
        index = self.current_index()
        if index != self.shown_index:
            for result in self.results:
                if result.image_index == index:
                    self.draw(result)
                    break

    def _fill_table(self):
        rows = self.summary["root_sets"][:10] if self.summary else []
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, value in enumerate(
                (" ".join(map(str, row["patches"])), str(row["count"]), f"{row['frequency']:.2f}")
            ):
                self.table.setItem(i, j, QTableWidgetItem(value))

    def draw(self, result):
        """The graph of one image, drawn natively into the dock's canvas (:func:`napari_global_xai.sag.draw_sag_figure`:
        roots in the top row, their children below) over the image in the frame the run used; each node's axes is
        clickable (:meth:`show_node`)."""
        import matplotlib.style as mplstyle

        from ..sag import draw_sag_figure

        self.shown_index = None if result is None else result.image_index
        self.shown_result = result
        fig = self.plot.figure
        fig.clear()
        self.node_axes = {}
        with mplstyle.context(self.plot.napari_theme_style_sheet):
            if result is None:
                fig.add_subplot(111).set_axis_off()
            else:
                image = self.run.stack.get(result.image_index)[0]
                image_id = self.run.stack.image_ids[result.image_index]
                self.node_axes = draw_sag_figure(
                    fig, result, image, max_per_row=4, label_name=self.run.label, image_name=image_id
                )
        self.plot.canvas.draw_idle()

    def _on_canvas_click(self, event):
        if event.inaxes in getattr(self, "node_axes", {}):
            self.show_node(self.node_axes[event.inaxes])

    def show_node(self, node_index: int):
        """Outline one graph node's patches on its image (a shapes layer on that image's slice) and go to the image."""
        result = self.shown_result
        node = result.nodes[node_index]
        layer = self.image_layer.value
        h, w = layer.data.shape[1:3]
        mirror = mirrored_on_layer(self.run.stack, stack_from_layer(layer), result.image_index)
        rects = patch_rectangles(node.patches, result.grid, result.image_index, (h, w), mirror)
        name = f"SAG node · {self.label.value}"
        meta = {
            "napari_global_xai_sag_node": {
                "image": result.image_index,
                "node": node_index,
                "patches": sorted(node.patches),
                "relative": node.relative,
            }
        }
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.viewer.add_shapes(
            rects,
            shape_type="rectangle",
            edge_color="cyan",
            face_color="transparent",
            edge_width=3,
            name=name,
            metadata=meta,
        )
        self.viewer.dims.set_current_step(max(self.viewer.dims.ndim - 3, 0), result.image_index)
        self.run_panel.status.setText(
            f"node {node_index}: {len(node.patches)} patch(es), "
            f"{100 * node.relative:.0f} % of the full-image confidence"
        )
