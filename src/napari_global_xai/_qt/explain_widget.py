"""Explain dock: saliency maps for an aligned stack and their global maps, overlaid on the mean anatomy.

The dock collects parameters, runs :func:`~napari_global_xai.explain.pipeline.run_explain` in a thread worker
(progress bar, Cancel button) and turns the result into layers. It computes nothing itself; torch loads only
when a run starts.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, PushButton, Select, SpinBox
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import config as settings
from .._layers import IMAGE_MAPS_KEY
from ._cluster import ClusterPicker
from ._layer_pickers import GLOBAL_MAP_KEY, stack_from_layer, stack_layers
from ._method_inputs import KEY_PARAMS, METHODS, parse_params
from ._model_inputs import ModelInputs, labels_of_card, optional_path
from ._runner import LayerFeeder, RunPanel

__all__ = ["ExplainWidget", "explain_job", "global_map_name", "result_layer_data"]


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
):
    """Worker body: load the model (torch imports here, off the main thread), run the pipeline, prepare layers.

    ``cluster`` (a :class:`~._cluster.ClusterTarget`, None for this process) is joined or started first, so a bad
    cluster fails before the model loads.
    """
    from ..control import RunControl
    from ..explain.pipeline import run_explain
    from ..models import load_model

    control = control or RunControl()
    executor = cluster.executor(stack=stack, report=control.report) if cluster is not None else None
    model = load_model(model_path or None, device=device, trust_pickle=trust_pickle)
    result = run_explain(stack, model, config, control=control, executor=executor)
    control.report(0, 1, "preparing layers")
    return result, result_layer_data(result, stack, source_name, stored_orientation)


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
            ]
        )
        self.targets.value = list(self.targets.choices)
        self.cluster = ClusterPicker(owner=self)
        self.run_panel = RunPanel("Explain")
        self.run_panel.set_start(self.start)
        self.feeder = LayerFeeder(napari_viewer, self)
        self.feeder.done.connect(self._show_colorbar)
        layout = QVBoxLayout(self)
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
        )

    # --- results ------------------------------------------------------------------------------------------------
    def _show_colorbar(self):
        """Show the value scale (napari's colour bar) of the last run's overall map: the one scale of all its maps."""
        if self.last_result is None:
            return
        name = global_map_name("overall", self.last_result.config.method)
        for layer in self.viewer.layers:
            if GLOBAL_MAP_KEY in layer.metadata and hasattr(layer, "colorbar"):
                layer.colorbar.visible = layer.name == name

    def _on_result(self, payload):
        result, layer_data = payload
        self.last_result = result
        self.feeder.feed(layer_data)
        selected = int(result.include.sum() if result.config.compute == "subset" else result.include.size)
        if result.cancelled:
            msg = f"cancelled: kept {result.n_computed} of {selected} image-wise maps"
        else:
            msg = f"done: {result.n_computed} image-wise maps, subset '{result.subset}'"
        self.run_panel.status.setText(msg + (f" (on {self._ran_on})" if self._ran_on is not None else ""))


def _shared_limits(maps: list[np.ndarray]) -> tuple[float, float]:
    finite = [m[np.isfinite(m)].ravel() for m in maps]
    values = np.concatenate([f for f in finite if f.size] or [np.zeros(1)])
    hi = float(np.percentile(values, 99.5))
    return 0.0, hi if hi > 0 else 1.0


def global_map_name(label: str, method: str) -> str:
    """Short layer name of a global map, ``"<label> · <method>"`` (details in ``layer.metadata``)."""
    return f"{label} · {method}"


def result_layer_data(result, stack, source_name: str, stored_orientation: bool = False) -> list[tuple]:
    """Layer data tuples for an explain result (computed in the worker thread; the main thread only adds them).

    The mean anatomy, one global map per label with images plus the overall map (perceptual colormap, additive
    blending, one shared contrast range so maps are comparable; only the overall map visible), and the image-wise
    maps as an ``(L, n, H, W)`` stack whose n axis lines up with the image stack's slider. Layer names are short
    (``"overall · gradcam"``, ``"image-wise · gradcam"``); subset, normalisation, counts and the shared colour
    scale are in ``layer.metadata["description"]`` (and the plugin's key).
    """
    method, subset = result.config.method, result.subset
    normalisation = result.config.normalisation
    # the viewer shows every stack in the left-eye frame (_layers.stack_layer_data); the run worked in its model's
    # frame (provenance "frame"), so image-wise maps computed on stored images are mirrored here for display only
    model_frame = result.provenance.get("frame", "left")
    anatomy = stack.to_left_eye().mean_image()
    rgb = anatomy.shape[-1] == 3
    layers = [
        (
            anatomy.astype(np.uint8) if rgb else anatomy[..., 0],
            {"name": f"mean anatomy ({source_name})", "rgb": rgb},
            "image",
        )
    ]
    gm = result.global_maps
    names = [n for n, c in zip(gm.labels, gm.count) if c > 0]
    maps = [gm.get(n) for n in names] + [gm.overall]
    limits = _shared_limits(maps)
    for name, data in zip(names + ["overall"], maps):
        count = int(gm.count[gm.labels.index(name)]) if name != "overall" else None
        details = (
            f"global map of {name!r} by {method}: subset {subset!r}, {normalisation}-normalised, "
            + (f"{count} image-wise maps" if count is not None else "mean of the label-wise maps")
            + f", stack {source_name!r}; colour scale 0–{limits[1]:.3g} shared by all maps of this run"
        )
        meta = {
            GLOBAL_MAP_KEY: {
                "label": name,
                "method": method,
                "subset": subset,
                "stack_layer": source_name,
                "normalisation": normalisation,
                "count": count,
                "global_maps": gm,
            },
            "description": details,
        }
        layers.append(
            (
                np.nan_to_num(data).astype(np.float32),
                {
                    "name": global_map_name(name, method),
                    "colormap": "inferno",
                    "blending": "additive",
                    "contrast_limits": limits,
                    "opacity": 0.8,
                    "metadata": meta,
                    "visible": name == "overall",
                },
                "image",
            )
        )
    maps_model = np.asarray(result.image_maps)
    image_maps = np.moveaxis(maps_model if model_frame == "left" else stack.to_left_frame(maps_model), 1, 0)
    done = image_maps[result.computed.T]
    hi = float(np.percentile(done[:, ::4, ::4], 99.5)) if done.size else 1.0
    meta = {"labels": result.target_labels, "method": method, "subset": subset, "computed": result.computed}
    kwargs = {"colormap": "inferno", "blending": "additive", "contrast_limits": (0.0, max(hi, 1e-12)), "visible": False}
    tag = f"image-wise · {method}"
    description = (
        f"image-wise {method} maps (label × image), subset {subset!r}, {normalisation}-normalised, "
        f"stack {source_name!r}"
    )
    layers.append(
        (
            image_maps,
            {
                "name": tag,
                "metadata": {IMAGE_MAPS_KEY: {**meta, "frame": "left"}, "description": description},
                **kwargs,
            },
            "image",
        )
    )
    if stored_orientation:
        stored = np.moveaxis(maps_model if model_frame == "stored" else stack.to_stored_frame(maps_model), 1, 0)
        layers.append(
            (
                stored,
                {
                    "name": f"{tag} (stored orientation)",
                    "metadata": {
                        IMAGE_MAPS_KEY: {**meta, "frame": "stored"},
                        "description": description + ", each image's stored orientation",
                    },
                    **kwargs,
                },
                "image",
            )
        )
    return layers
