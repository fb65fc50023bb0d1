"""PEPPR panel: faithfulness curves of one or more global maps beside a filmstrip of the erased and restored images.

The panel runs :func:`napari_global_xai.peppr.pipeline.run_peppr_pipeline` in a thread worker and draws
:func:`napari_global_xai.peppr.drawing.draw_peppr_figure` into a themed matplotlib canvas (napari-matplotlib) in the
figure's own window (:class:`~._qt.peppr_figure.PepprFigureWindow`, readable at any dock width): the curves of every
chosen map in one plot (legend beside it), the summary table under them and, below, the current image erased and
restored in the map's order and one random order at fractions of the curves' grid
(:func:`~napari_global_xai.peppr.view.strip_fractions`). The filmstrip is computed by the core
(:func:`~napari_global_xai.peppr.view.compute_filmstrip`) in a worker thread and follows the stack slider.
Curves, filmstrip, fraction slider and the ``erased`` / ``restored`` layers are linked both ways: clicking a curve
point or a thumbnail selects that fraction; moving the slider moves the marker on the curves.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, LineEdit, PushButton, Select, SpinBox
from qtpy.QtCore import QEvent, Signal
from qtpy.QtWidgets import QFileDialog, QVBoxLayout, QWidget

from ..config import DEFAULT_FRACTIONS, FILLS, PepprConfig, complete_fractions
from ._cluster import ClusterPicker
from ._layer_pickers import GLOBAL_MAP_KEY, stack_from_layer
from ._layout import advanced_group, scroll_body
from ._model_inputs import ModelInputs, load_model_job
from ._runner import BREATH_MS, RunPanel, after

__all__ = ["PepprWidget", "peppr_job", "DEFAULT_FRACTIONS_TEXT", "THUMB_SIDE"]

DEFAULT_FRACTIONS_TEXT = ", ".join(f"{f:g}" for f in DEFAULT_FRACTIONS)
_DEFAULTS = PepprConfig()
#: Longer side of a filmstrip thumbnail's pixels (drawn larger in the figure window: sharp, not blocky).
THUMB_SIDE = 192


def _parse_fractions(text: str) -> tuple[float, ...]:
    """The fraction grid of the text field, checked and completed as :class:`PepprConfig` does for every run."""
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError as exc:
        raise ValueError(f"fractions must be numbers separated by commas: {exc}") from None
    return complete_fractions(values)[0]


def peppr_job(
    stack,
    model_path,
    device,
    global_maps,
    labels,
    config: PepprConfig,
    trust_pickle=False,
    cluster=None,
    control=None,
):
    """Worker body: load the model (torch imports here), run PEPPR on the chosen global maps, return result and
    model. ``cluster`` (a :class:`~._cluster.ClusterTarget`, None for this process) is joined first."""
    from ..control import RunControl
    from ..peppr.pipeline import run_peppr_pipeline

    control = control or RunControl()
    executor = None if cluster is None else cluster.executor(stack=stack, report=control.report)
    model = load_model_job(model_path, device, trust_pickle)
    result = run_peppr_pipeline(stack, model, global_maps, config, labels=labels, control=control, executor=executor)
    return result, model


def map_names(layers) -> list[str]:
    """PEPPR map names of global-map layers: the map's label when the labels are distinct, else the layer name."""
    labels = [layer.metadata[GLOBAL_MAP_KEY]["label"] for layer in layers]
    if len(set(labels)) == len(labels):
        return labels
    return [layer.name for layer in layers]


class PepprWidget(QWidget):
    """Dock: choose global map layers, run PEPPR, read the curves and scrub the fraction over the filmstrip.

    Signals: ``filmstrip_ready()`` after a filmstrip was drawn (tests wait on it).
    """

    filmstrip_ready = Signal()

    def __init__(self, napari_viewer):
        super().__init__()
        from .peppr_figure import PepprFigureWindow

        self.viewer = napari_viewer
        self.map_layers = Select(label="global maps", choices=self._map_layers)
        self.labels = Select(label="metric labels", choices=[])
        self.model_inputs = ModelInputs()
        self.model_card, self.device, self.trust_pickle = self.model_inputs.widgets
        self.fractions = LineEdit(label="fractions", value=DEFAULT_FRACTIONS_TEXT)
        self.fill = ComboBox(label="fill", choices=list(FILLS), value=_DEFAULTS.fill)
        self.random_seeds = SpinBox(label="random seeds", value=_DEFAULTS.random_seeds, min=1, max=50)
        self.eval_split = LineEdit(label="evaluate split (empty = all)", value="")
        self.labels.native.setMaximumHeight(90)
        self.map_layers.native.setMaximumHeight(90)
        self.form = Container(widgets=[self.map_layers, self.labels, self.model_card])
        self.advanced = Container(
            widgets=[self.fractions, self.fill, self.random_seeds, self.eval_split, self.device, self.trust_pickle]
        )
        self.cluster = ClusterPicker(owner=self)
        self.run_panel = RunPanel("Run PEPPR")
        self.run_panel.set_start(self.start)
        # the figure, its fraction slider and save buttons live in their own window (readable, resizable)
        self.figure_window = PepprFigureWindow(napari_viewer, parent=self)
        self.plot, self.fraction = self.figure_window.plot, self.figure_window.fraction
        w = self.figure_window
        self.save_figure, self.save_data, self.save_report = w.save_figure, w.save_data, w.save_report
        self.show_figure = PushButton(text="Show the PEPPR figure window", enabled=False)
        self.show_figure.changed.connect(lambda _=None: self.figure_window.open())
        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(self.form.native)
        layout.addWidget(advanced_group(self.advanced))
        layout.addWidget(self.cluster)
        layout.addWidget(self.run_panel)
        layout.addWidget(self.show_figure.native)
        layout.addStretch(1)
        self._config = _DEFAULTS  # the last run's settings (its filled fractions pick the filmstrip's columns)
        self.result = self.model = self.view = self.strip = self.handles = None
        self._stack = self._source_stack = None
        self._maps: dict[str, np.ndarray] = {}
        self._film_map: str | None = None
        self._rankings: dict[str, np.ndarray] = {}
        self._film_worker, self._film_pending = None, False
        self.map_layers.changed.connect(self._on_maps_changed)
        self.fraction.changed.connect(self.show_fraction)
        self.save_figure.changed.connect(self._ask_save_figure)
        self.save_data.changed.connect(self._ask_save_data)
        self.save_report.changed.connect(self._ask_report)
        self.plot.canvas.mpl_connect("button_press_event", self._on_canvas_click)
        self.viewer.dims.events.current_step.connect(self._on_slider)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.map_layers.reset_choices)
        self._on_maps_changed(self.map_layers.value)

    def event(self, event) -> bool:
        """The dock taken out of the viewer (napari's close button): it stops following the viewer's slider and
        layers (a closed dock kept computing filmstrips), and its figure window closes."""
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.viewer.dims.events.current_step.disconnect(self._on_slider)
            for emitter in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
                emitter.disconnect(self.map_layers.reset_choices)
            self.figure_window.close()
        return super().event(event)

    # --- choices ------------------------------------------------------------------------------------------------
    def _map_layers(self, _widget=None):
        return [layer for layer in self.viewer.layers if GLOBAL_MAP_KEY in layer.metadata]

    def _stack_layer(self, map_layer):
        name = map_layer.metadata[GLOBAL_MAP_KEY]["stack_layer"]
        if name not in self.viewer.layers:
            raise ValueError(f"the image stack {name!r} that this map was computed on is no longer open")
        return self.viewer.layers[name]

    def select_maps(self, *layers) -> None:
        """Choose the global map layers to compare (one or more)."""
        self.map_layers.value = list(layers)

    def _on_maps_changed(self, layers):
        if not layers:
            return
        try:
            stack = stack_from_layer(self._stack_layer(layers[0]))
        except ValueError:
            return
        names = list(stack.labels.names) if stack.labels is not None else []
        self.labels.choices = names
        wanted = [layer.metadata[GLOBAL_MAP_KEY]["label"] for layer in layers]
        chosen = [n for n in names if n in wanted]
        self.labels.value = names if "overall" in wanted or not chosen else chosen

    # --- run ------------------------------------------------------------------------------------------------------
    def start(self):
        """Collect the parameters and launch PEPPR (returns the worker, or None after an input error)."""
        from napari.utils.notifications import show_error

        layers = list(self.map_layers.value)
        try:
            if not layers:
                raise ValueError("compute global maps first (Explain dock), then choose one or more here")
            stacks = {layer.metadata[GLOBAL_MAP_KEY]["stack_layer"] for layer in layers}
            if len(stacks) > 1:
                raise ValueError(
                    f"the chosen maps were computed on different stacks ({sorted(stacks)}); compare maps of one stack"
                )
            stack = stack_from_layer(self._stack_layer(layers[0]))
            config = PepprConfig(
                fractions=_parse_fractions(self.fractions.value),
                fill=self.fill.value,
                random_seeds=self.random_seeds.value,
                eval_split=self.eval_split.value or None,
            )
            labels = list(self.labels.value) or None
            cluster = self.cluster.target(self.device.value)
        except Exception as exc:  # noqa: BLE001 - input problems are shown, the panel stays usable
            self.run_panel.status.setText(f"error: {exc}")
            show_error(str(exc))
            return None
        self._source_stack, self._config = stack, config
        names = map_names(layers)
        self._maps = {n: np.asarray(layer.data, np.float64) for n, layer in zip(names, layers)}
        self._headline_labels = {
            n: (
                "macro"
                if layer.metadata[GLOBAL_MAP_KEY]["label"] == "overall"
                else layer.metadata[GLOBAL_MAP_KEY]["label"]
            )
            for n, layer in zip(names, layers)
        }
        return self.run_panel.launch(
            peppr_job,
            self._on_result,
            stack=stack,
            **self.model_inputs.load_options(),
            global_maps=dict(self._maps),
            labels=labels,
            config=config,
            cluster=cluster,
        )

    def _on_result(self, payload):
        from ..data.conform import model_frame
        from ..peppr.view import view_from_result
        from ..perturb.rankings import pixel_ranking

        self.result, self.model = payload
        # the images in the frame the run read them in (the maps' frame): the filmstrip and the filled layers
        # are computed there; the layers are mirrored back to the viewer's left-eye frame for display
        self._stack = model_frame(self._source_stack, self.model.card)
        self._rankings = {name: pixel_ranking(m) for name, m in self._maps.items()}
        self._film_map = next(iter(self._maps))
        self.view = view_from_result(self.result)
        self.view.rows = self.headline_rows()
        # drawn once, with the first filmstrip (_on_filmstrip; _on_film_finished when none comes): each build of the
        # figure holds the main thread 0.1-0.7 s
        self.strip = self.handles = None
        self.show_figure.enabled = True
        self.figure_window.open()
        self._place_filled_layers()
        row = self.headline()
        self.run_panel.status.setText(
            f"done: {self.result.n_images} images, {self.result.n_forwards} forwards "
            f"({self.result.n_skipped} skipped); {row['label']}: A_erase {row['A_erase']:.3f}, "
            f"A_restore {row['A_restore']:.3f}, gap {row['gap']:.3f} (random gap {row['random_gap']:.3f})"
        )
        self.request_filmstrip()

    # --- plot -------------------------------------------------------------------------------------------------------
    def headline_rows(self) -> list[dict]:
        """One table row per chosen map: a label map on its own label, the overall map on the macro mean."""
        rows = []
        for name in self.result.maps:
            wanted = self._headline_labels.get(name, "macro")
            match = [r for r in self.result.table if r["map"] == name and r["label"] == wanted]
            match = match or [r for r in self.result.table if r["map"] == name]
            rows += match[:1]
        return rows

    def headline(self) -> dict:
        """The first chosen map's summary row."""
        return self.headline_rows()[0]

    def result_map(self) -> np.ndarray:
        """The map the filmstrip and the erased / restored layers follow (the first chosen map)."""
        return self._maps[self._film_map]

    def current_index(self) -> int:
        """The image under the stack slider: the third axis from the right (layers align on their last axes, so a
        4-D image-wise maps layer puts its label axis first)."""
        return int(self.viewer.dims.current_step[max(self.viewer.dims.ndim - 3, 0)])

    def draw(self):
        """Draw curves, table and (when computed) the filmstrip into the themed canvas."""
        import matplotlib.style as mplstyle

        from ..peppr.drawing import draw_peppr_figure

        with mplstyle.context(self.plot.napari_theme_style_sheet):
            self.handles = draw_peppr_figure(
                self.plot.figure,
                self.view,
                self.strip,
                self.fraction.value,
                title=f"PEPPR ({self.result.fill} fill, {self.result.n_images} images)",
            )
        self.plot.canvas.draw_idle()

    def curve_data(self, map_name: str | None = None):
        """``(fractions, erase, restore)`` of a map's headline curve (the first map by default), as plotted."""
        rows = self.headline_rows()
        row = next((r for r in rows if r["map"] == map_name), rows[0]) if map_name else rows[0]
        curves = self.result.curves[row["map"]]
        return self.result.fractions, curves.curve("erase", row["label"]), curves.curve("restore", row["label"])

    def highlighted(self) -> int | None:
        """Filmstrip column framed now (None without a filmstrip)."""
        if self.handles is None:
            return None
        for c, frame in enumerate(self.handles.frames):
            if frame.get_visible():
                return c
        return None

    # --- linking ----------------------------------------------------------------------------------------------------
    def _on_canvas_click(self, event):
        """A click on the curves (nearest grid fraction) or on a thumbnail selects that fraction."""
        from ..peppr.view import nearest_index

        if self.view is None or self.handles is None or event.inaxes is None:
            return
        if event.inaxes is self.handles.curves_ax and event.xdata is not None:
            index = nearest_index(self.view.fractions, event.xdata)
        elif event.inaxes is self.handles.strip_ax and event.xdata is not None:
            index = self.handles.tile_at(event.xdata, event.ydata)[1]
        else:
            return
        self.fraction.value = float(self.view.fractions[index])

    def _on_slider(self, _event=None):
        if self.result is not None and (self.strip is None or self.strip.image_index != self.current_index()):
            self.request_filmstrip()

    def request_filmstrip(self):
        """Compute the current image's filmstrip in a worker (one at a time; the latest request wins)."""
        from napari.qt.threading import create_worker

        if self.result is None:
            return None
        if self._film_worker is not None:
            self._film_pending = True
            return self._film_worker
        from ..peppr.view import compute_filmstrip, strip_fractions

        index = min(self.current_index(), len(self._stack) - 1)
        worker = create_worker(  # torch work off the main thread
            compute_filmstrip,
            self.model,
            self._stack.get(index)[0],
            self._maps[self._film_map],
            strip_fractions(self.result.fractions, self._config.filled_fractions),
            self.result.fill,
            image_index=index,
            map_name=self._film_map,
            max_side=THUMB_SIDE,
            _start_thread=False,
        )
        worker.returned.connect(self._on_filmstrip)
        worker.finished.connect(self._on_film_finished)
        self._film_worker = worker
        worker.start()
        return worker

    def _on_filmstrip(self, strip):
        from .peppr_figure import swap_filmstrip

        swapped = swap_filmstrip(self.handles, self.strip, strip)  # another image: its pixels into the drawn figure
        self.strip = strip
        if swapped:
            self.plot.canvas.draw_idle()
        else:
            self.draw()
        self.filmstrip_ready.emit()

    def _on_film_finished(self):
        self._film_worker = None
        if self.handles is None and self.result is not None:  # no filmstrip came (an error): the curves alone
            self.draw()
        if self._film_pending:
            self._film_pending = False
            if self.strip is None or self.strip.image_index != self.current_index():
                self.request_filmstrip()

    # --- erased / restored layers ----------------------------------------------------------------------------------
    def filled_stack(self, mode: str, fraction: float):
        """Lazy ``(n, H, W, 3)`` uint8 dask array: every image erased/restored at ``fraction`` (display channels)."""
        import dask.array as da

        from ..peppr.filled import filled_images
        from ..peppr.view import display_rgb

        stack, model, ranking, fill = self._stack, self.model, self._rankings[self._film_map], self.result.fill
        n, h, w = stack.shape[:3]

        def block(block_id=None):
            i = block_id[0]
            img = filled_images(model, stack.get([i]), ranking, [fraction], fill, mode)[:, 0]
            if stack.frame != "left" and stack.laterality[i] == "R":  # the run's stored frame -> the viewer's
                img = img[:, :, ::-1]
            return display_rgb(img)

        return da.map_blocks(  # a name of its own: dask would hash the closure (model and stack) by pickling it
            block,
            name=f"peppr-{mode}-{uuid.uuid4().hex}",
            dtype=np.uint8,
            chunks=((1,) * n, (h,), (w,), (3,)),
            meta=np.zeros((0, 0, 0, 0), np.uint8),
        )

    def show_fraction(self, fraction: float):
        """(Re)place the ``erased`` and ``restored`` layers at ``fraction``; move the marker and the highlight."""
        from ..peppr.drawing import set_highlight
        from ..peppr.view import nearest_index

        if self.result is None:
            return
        for mode in ("erase", "restore"):
            self._place_filled_layer(mode, float(fraction))
        if self.handles is not None:
            if self.handles.marker is not None:
                self.handles.marker.set_xdata([fraction, fraction])
            set_highlight(self.handles, nearest_index(self.view.fractions, fraction))
            self.plot.canvas.draw_idle()

    def _place_filled_layer(self, mode: str, fraction: float) -> None:
        name = f"{'erased' if mode == 'erase' else 'restored'} · {self._film_map}"
        data = self.filled_stack(mode, fraction)
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
            self.viewer.layers[name].metadata["fraction"] = fraction
        else:
            self.viewer.add_image(data, name=name, rgb=True, metadata={"fraction": fraction}, visible=False)

    def _place_filled_layers(self, modes=(None, "erase", "restore")) -> None:
        """A new result's ``erased`` / ``restored`` layers at the slider's fraction, each in an event-loop pass of its
        own (about 0.1-0.2 s each) after the figure's deferred draw (``None``: a pass to let that draw go first)."""

        def place():
            if self.result is not None and modes[0] is not None:
                self._place_filled_layer(modes[0], float(self.fraction.value))
            if self.result is not None and modes[1:]:
                self._place_filled_layers(modes[1:])

        after(self, BREATH_MS, place)

    # --- export ------------------------------------------------------------------------------------------------------
    def export(self, out_dir) -> dict:
        """Write the figure PNG and curves CSV/JSON of the current result to ``out_dir``."""
        if self.result is None:
            raise ValueError("run PEPPR first")
        return self.result.write(out_dir)

    def _ask_save_figure(self, _=None):
        self._ask_and_export(figure_only=True)

    def _ask_save_data(self, _=None):
        self._ask_and_export(figure_only=False)

    def _ask_and_export(self, figure_only: bool):
        """Ask for a folder; write the panel's figure PNG, or the curves CSV and summary JSON."""
        from napari.utils.notifications import show_error, show_info

        folder = QFileDialog.getExistingDirectory(self, "Folder for PEPPR " + ("figure" if figure_only else "curves"))
        if not folder:
            return
        try:
            if self.result is None:
                raise ValueError("run PEPPR first")
            if figure_only:
                paths = {"figure": self.save_panel_figure(Path(folder) / "peppr_panel.png")}
            else:
                paths = self.result.write(Path(folder), plot=False)
            show_info("saved " + ", ".join(p.name for p in paths.values()))
        except Exception as exc:  # noqa: BLE001
            show_error(str(exc))

    def save_panel_figure(self, path) -> Path:
        """The panel's figure (curves, table, filmstrip) as a PNG on a white background, written atomically."""
        from .peppr_figure import save_figure_png

        return save_figure_png(path, self.view, self.strip, self.fraction.value)

    def _ask_report(self, _=None):
        """Ask for a results folder and an HTML file; write the report (and its PDF) in a worker."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_info

        from ..report import write_report

        folder = QFileDialog.getExistingDirectory(self, "Results folder (explain / PEPPR / SAG / demo output)")
        if not folder:
            return
        out, _filter = QFileDialog.getSaveFileName(
            self, "Report file", str(Path(folder) / "report.html"), "HTML (*.html)"
        )
        if not out:
            return
        worker = create_worker(write_report, folder, out, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda paths: show_info("wrote " + ", ".join(str(p) for p in paths.values())))
        worker.errored.connect(lambda exc: show_error(f"report: {exc}"))
        self._report_worker = worker
        worker.start()
        return worker
