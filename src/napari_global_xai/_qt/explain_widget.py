"""Explain dock: saliency maps for an aligned stack and their global maps, overlaid on the mean anatomy.

The dock collects parameters, runs :func:`~napari_global_xai.explain.pipeline.run_explain` in a thread worker
(progress bar, Cancel button) and shows the result as lazy layers over its results folder. It computes nothing
itself; torch loads only when a run starts.

Every run writes a results folder (the Zarr store, :mod:`napari_global_xai.explain.result`): the chosen output
folder, or a run folder inside the dock's temporary session folder (:mod:`._session_folder`: removed, with its
layers, when the dock is closed). The worker then reads the folder back with
:func:`~napari_global_xai.explain.result.open_explain` and prepares the layers with
:func:`~napari_global_xai._layers.explain_layer_data` (dask over Zarr, display ranges from the store), so the
viewer never holds the image-wise maps and the main thread only adds the layers, one per event-loop turn.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, PushButton, Select, SpinBox
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QApplication, QVBoxLayout, QWidget

from .. import config as settings
from .._layers import map_layer_name
from ._cluster import ClusterPicker
from ._layer_pickers import GLOBAL_MAP_KEY, stack_from_layer, stack_layers
from ._method_inputs import KEY_PARAMS, METHODS, parse_params
from ._model_inputs import ModelInputs, labels_of_card, load_model_job, optional_path
from ._orientation import StackUnderMaps
from ._runner import LayerFeeder, RunPanel
from ._session_folder import RESULTS_FOLDER_KEY, SessionFolder

__all__ = ["ExplainWidget", "explain_job", "dock_layer_data"]


def explain_job(
    stack,
    model_path,
    device,
    trust_pickle,
    config,
    source_name,
    stored_orientation=False,
    cluster=None,
    control=None,
    *,
    out_dir,
    overwrite=False,
):
    """Worker body: load the model (torch imports here, off the main thread), run the pipeline into the results
    folder ``out_dir``, read it back lazily and prepare the layers (display ranges included: nothing is left for the
    main thread to compute).

    ``cluster`` (a :class:`~._cluster.ClusterTarget`, None for this process) is joined or started first, so a bad
    cluster fails before the model loads. ``overwrite`` replaces a store of other settings in ``out_dir``.
    """
    from ..control import RunControl
    from ..explain.pipeline import run_explain
    from ..explain.result import open_explain

    control = control or RunControl()
    executor = cluster.executor(stack=stack, report=control.report) if cluster is not None else None
    model = load_model_job(model_path, device, trust_pickle)
    result = run_explain(stack, model, config, control=control, executor=executor, out_dir=out_dir, overwrite=overwrite)
    control.report(0, 1, "preparing layers")
    layers = dock_layer_data(open_explain(out_dir), result, stack, source_name, stored_orientation)
    return result, layers


def dock_layer_data(run, result, stack, source_name: str, stored_orientation: bool = False) -> list[tuple]:
    """The layers of a dock run: :func:`~napari_global_xai._layers.explain_layer_data` over its folder (lazy, in the
    viewer's left-eye frame), the global maps marked for the PEPPR dock (:data:`GLOBAL_MAP_KEY`: label, method,
    subset, stack layer, the run's :class:`~napari_global_xai.aggregate.GlobalMaps`) and every layer marked with
    its folder (:data:`RESULTS_FOLDER_KEY`).
    """
    from .._layers import explain_layer_data

    layers = explain_layer_data(
        run, source_name=source_name, laterality=stack.laterality, stored_orientation=stored_orientation
    )
    gm = result.global_maps
    note = _status_note(run.status)
    global_names = {map_layer_name("global", run.method, name, note): name for name in [*gm.labels, "overall"]}
    for _data, kwargs, _kind in layers:
        meta = kwargs.setdefault("metadata", {})
        meta[RESULTS_FOLDER_KEY] = str(run.folder)
        label = global_names.get(kwargs["name"])
        if label is None:
            continue
        meta["description"] += f"; stack {source_name!r}"
        meta[GLOBAL_MAP_KEY] = {
            "label": label,
            "method": run.method,
            "subset": run.subset,
            "stack_layer": source_name,
            "normalisation": result.config.normalisation,
            "count": None if label == "overall" else int(gm.count[gm.labels.index(label)]),
            "global_maps": gm,
        }
    return layers


def _status_note(status: str) -> str:
    """What a layer name says of a run's status (:func:`~napari_global_xai._layers.map_layer_name`'s note)."""
    return "" if status == "complete" else status


class ExplainWidget(QWidget):
    """Dock: pick stack, labels, model, method; run; get image-wise and global map layers."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.image_layer = ComboBox(label="image stack", choices=self._stack_layers)
        self.labels_csv = FileEdit(label="labels CSV", mode="r", filter="*.csv *.tsv *.txt", nullable=True, value=None)
        self.csv_columns = PushButton(
            text="CSV columns…", tooltip="which column is the image id, the laterality and each model label"
        )
        self.csv_options: dict = {}  # id_column / laterality_column / label_map chosen in the columns dialog
        self.columns_dialog = None
        self.model_inputs = ModelInputs()
        self.model_card, self.device, self.trust_pickle = self.model_inputs.widgets
        defaults = settings.ExplainConfig()
        self.method = ComboBox(label="method", choices=METHODS, value=defaults.method)
        self.params = LineEdit(label="parameters", value=KEY_PARAMS.get(defaults.method, ""))
        self.targets = Select(label="target labels", choices=labels_of_card(None))
        self.subset = ComboBox(label="subset", choices=settings.SUBSETS, value=defaults.subset)
        self.normalisation = ComboBox(
            label="normalisation", choices=settings.NORMALISATIONS, value=defaults.normalisation
        )
        self.batch = SpinBox(label="maps per call (0 = auto)", value=0, min=0, max=4096)
        self.stored_orientation = CheckBox(text="also show maps in each image's stored orientation", value=False)
        self.out_dir = FileEdit(
            label="output folder",
            mode="d",
            nullable=True,
            value=None,
            tooltip="where the run writes its results (Zarr store, global maps, predictions); empty: a temporary "
            "folder removed when this dock is closed",
        )
        self.overwrite = CheckBox(text="replace results of other settings in the output folder", value=False)
        self.targets.native.setMaximumHeight(100)
        self.form = Container(
            widgets=[
                self.image_layer,
                self.labels_csv,
                self.csv_columns,
                self.model_card,
                self.trust_pickle,
                self.method,
                self.params,
                self.targets,
                self.subset,
                self.normalisation,
                self.device,
                self.batch,
                self.stored_orientation,
                self.out_dir,
                self.overwrite,
            ]
        )
        self.targets.value = list(self.targets.choices)
        self.cluster = ClusterPicker(owner=self)
        self.run_panel = RunPanel("Explain")
        self.run_panel.set_start(self.start)
        self.feeder = LayerFeeder(napari_viewer, self)
        self.feeder.done.connect(self._on_layers_added)
        self._anatomy_names: list[str] = []
        self.session_folder = SessionFolder()
        self.stack_under_maps = StackUnderMaps(napari_viewer)
        self.destroyed.connect(self.session_folder.cleanup)  # a plain object: its method outlives the widget
        if QApplication.instance() is not None:
            QApplication.instance().aboutToQuit.connect(self.session_folder.cleanup)
        from ._layout import scroll_body  # the dock scrolls instead of asking for more than a laptop's screen

        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(self.form.native)
        layout.addWidget(self.cluster)
        layout.addWidget(self.run_panel)
        layout.addStretch(1)
        self.method.changed.connect(lambda name: setattr(self.params, "value", KEY_PARAMS.get(name, "")))
        self.model_card.changed.connect(self._on_model_changed)
        self.labels_csv.changed.connect(self._on_labels_csv_changed)
        self.csv_columns.changed.connect(lambda: self.open_columns_dialog())
        self.viewer.layers.events.inserted.connect(self.image_layer.reset_choices)
        self.viewer.layers.events.removed.connect(self.image_layer.reset_choices)
        self.last_result = None
        self._ran_on = None  # the cluster spec of the current run (None: this process)
        self._devices_worker = self.model_inputs.devices_worker

    # --- choices ----------------------------------------------------------------------------------------------
    def _stack_layers(self, _widget=None):
        return stack_layers(self.viewer)

    def _on_model_changed(self, value):
        labels = labels_of_card(optional_path(value))
        self.targets.choices = labels
        self.targets.value = labels

    # --- labels CSV columns ------------------------------------------------------------------------------------
    def _model_labels(self) -> list[str]:
        return labels_of_card(self._path(self.model_card))

    def _on_labels_csv_changed(self, value):
        """A new CSV: forget the previous column choice; ask for one when the detection is unsure."""
        self.csv_options = {}
        path = optional_path(value)
        if path is None:
            return
        from ..data.csv_layout import inspect_csv

        try:
            layout = inspect_csv(path, self._model_labels())
        except ValueError as exc:
            self.run_panel.status.setText(f"error: {exc}")
            return
        if layout.unsure:
            self.open_columns_dialog(layout)

    def open_columns_dialog(self, layout=None):
        """Show the column-mapping dialog for the chosen CSV (non-modal); returns it, or None without a CSV."""
        from ..data.csv_layout import inspect_csv
        from .columns_dialog import ColumnsDialog

        path = self._path(self.labels_csv)
        if path is None:
            self.run_panel.status.setText("choose a labels CSV first")
            return None
        try:
            layout = layout or inspect_csv(path, self._model_labels(), **self.csv_options)
        except ValueError as exc:
            self.run_panel.status.setText(f"error: {exc}")
            return None
        self.columns_dialog = ColumnsDialog(layout, self._model_labels(), parent=self)
        self.columns_dialog.accepted.connect(self._on_columns_chosen)
        self.columns_dialog.open()
        return self.columns_dialog

    def _on_columns_chosen(self):
        self.csv_options = self.columns_dialog.options()
        self.run_panel.status.setText(
            f"CSV columns: id {self.csv_options['id_column']!r}, {len(self.csv_options['label_map'])} label column(s)"
        )

    # --- run ----------------------------------------------------------------------------------------------------
    def config(self):
        return settings.ExplainConfig(
            method=self.method.value,
            params=parse_params(self.params.value),
            targets=list(self.targets.value) or None,
            subset=self.subset.value,
            normalisation=self.normalisation.value,
            maps_per_call=self.batch.value or None,
        )

    def _path(self, edit) -> str | None:
        return optional_path(edit.value)

    def start(self):
        """Collect the parameters and launch the run (returns the worker, or None after an input error)."""
        from napari.utils.notifications import show_error

        layer = self.image_layer.value
        try:
            if layer is None:
                raise ValueError("open an image stack first (File ▸ Open, or File ▸ Open Sample)")
            stack = stack_from_layer(
                layer, self._path(self.labels_csv), label_names=self._model_labels(), **self.csv_options
            )
            config = self.config()
            cluster = self.cluster.target(self.device.value)
        except Exception as exc:  # noqa: BLE001 - any input problem is shown, the dock stays usable
            self.run_panel.status.setText(f"error: {exc}")
            show_error(str(exc))
            return None
        self._ran_on = cluster.spec if cluster is not None else None
        out_dir = self._path(self.out_dir) or self.session_folder.new_run()
        return self.run_panel.launch(
            explain_job,
            self._on_result,
            stack=stack,
            model_path=self._path(self.model_card),
            device=self.device.value,
            trust_pickle=self.trust_pickle.value,
            config=config,
            source_name=layer.name,
            stored_orientation=self.stored_orientation.value,
            cluster=cluster,
            out_dir=out_dir,
            overwrite=self.overwrite.value,
        )

    # --- results ------------------------------------------------------------------------------------------------
    def _show_colorbar(self):
        """Show the value scale (napari's colour bar) of the last run's overall map: the one scale of all its maps."""
        if self.last_result is None:
            return
        status = self.last_result.provenance.get("status", "complete")
        name = map_layer_name("global", self.last_result.config.method, "overall", _status_note(status))
        for layer in self.viewer.layers:
            if GLOBAL_MAP_KEY in layer.metadata and hasattr(layer, "colorbar"):
                layer.colorbar.visible = layer.name == name

    def _on_layers_added(self):
        """The last layer is in: the colour bar, and the mean anatomy hidden once the image slider moves (the stack
        under the maps, :class:`~._orientation.StackUnderMaps`)."""
        self._show_colorbar()
        for name in self._anatomy_names:
            self.stack_under_maps.watch(name)

    def _on_result(self, payload):
        result, layer_data = payload
        self.last_result = result
        self._anatomy_names = [kw["name"] for _d, kw, _k in layer_data if kw["name"].startswith("mean anatomy")]
        self.feeder.feed(layer_data)
        selected = int(result.include.sum() if result.config.compute == "subset" else result.include.size)
        if result.cancelled:
            msg = f"cancelled: kept {result.n_computed} of {selected} image-wise maps"
        else:
            msg = f"done: {result.n_computed} image-wise maps, subset '{result.subset}'"
        self.run_panel.status.setText(msg + (f" (on {self._ran_on})" if self._ran_on is not None else ""))

    # --- the session folder -------------------------------------------------------------------------------------
    def event(self, event) -> bool:
        """The dock taken out of the viewer (napari's close button): its session folder goes, with its layers."""
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.release_session_folder()
        return super().event(event)

    def release_session_folder(self) -> None:
        """Remove the layers that read the session folder, then the folder (runs with an output folder stay)."""
        for layer in list(self.viewer.layers):
            folder = layer.metadata.get(RESULTS_FOLDER_KEY)
            if folder is not None and self.session_folder.holds(folder):
                self.viewer.layers.remove(layer)
        self.session_folder.cleanup()
