"""PEPPR panel: faithfulness curves of a global map, plotted beside the erased and restored images.

The panel runs :func:`napari_global_xai.run.run_peppr_pipeline` in a thread worker, draws the curves in a themed
matplotlib canvas (napari-matplotlib), and shows the current image of the stack erased and restored at the chosen
fraction as two layers that follow the stack's slider (computed lazily, image by image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSlider, LineEdit, PushButton, Select, SpinBox
from qtpy.QtWidgets import QFileDialog, QVBoxLayout, QWidget

from .explain_widget import GLOBAL_MAP_KEY, optional_path, stack_from_layer
from ._runner import RunPanel

__all__ = ["PepprWidget", "peppr_job", "DEFAULT_FRACTIONS_TEXT"]

DEFAULT_FRACTIONS_TEXT = "0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1"


def _parse_fractions(text: str) -> list[float]:
    try:
        values = sorted({float(v) for v in text.replace(";", ",").split(",") if v.strip()})
    except ValueError as exc:
        raise ValueError(f"fractions must be numbers separated by commas: {exc}") from None
    if not values or values[0] < 0 or values[-1] > 1:
        raise ValueError("fractions must lie in [0, 1]")
    return values


def peppr_job(stack, model_path, device, global_map, map_name, labels, fractions, fill, random_seeds, eval_split,
              progress=None, cancel=None):
    """Worker body: load the model (torch imports here), run PEPPR on one global map, return result and model."""
    from ..models import load_model
    from ..run import run_peppr_pipeline

    model = load_model(model_path or None, device=device)
    result = run_peppr_pipeline(stack, model, {map_name: global_map}, labels=labels, fractions=fractions, fill=fill,
                                random_seeds=random_seeds, eval_split=eval_split or None, progress=progress,
                                cancel=cancel)
    return result, model


class PepprWidget(QWidget):
    """Dock: choose a global map layer, run PEPPR, read the curves, scrub the fraction over erased/restored images."""

    def __init__(self, napari_viewer):
        super().__init__()
        from napari_matplotlib.base import BaseNapariMPLWidget

        self.viewer = napari_viewer
        self.map_layer = ComboBox(label="global map", choices=self._map_layers)
        self.labels = Select(label="metric labels", choices=[])
        self.model_card = FileEdit(label="model card (empty = demo model)", mode="r", filter="*.json",
                                   nullable=True, value=None)
        self.fractions = LineEdit(label="fractions", value=DEFAULT_FRACTIONS_TEXT)
        self.fill = ComboBox(label="fill", choices=["zero", "black", "blur", "impute"], value="zero")
        self.random_seeds = SpinBox(label="random seeds", value=5, min=1, max=50)
        self.eval_split = LineEdit(label="evaluate split (empty = all)", value="")
        self.labels.native.setMaximumHeight(100)
        self.form = Container(widgets=[self.map_layer, self.labels, self.model_card, self.fractions, self.fill,
                                       self.random_seeds, self.eval_split])
        self.run_panel = RunPanel("Run PEPPR")
        self.run_panel.set_start(self.start)
        self.plot = BaseNapariMPLWidget(napari_viewer)
        self.plot.add_single_axes()
        self.plot.setMinimumHeight(300)
        self.fraction = FloatSlider(label="show fraction", min=0.0, max=1.0, step=0.01, value=0.1)
        self.save_figure = PushButton(text="Save figure PNG…")
        self.save_data = PushButton(text="Save curves CSV/JSON…")
        self.tools = Container(widgets=[self.fraction, self.save_figure, self.save_data])
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.run_panel)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.tools.native)
        self.result = None
        self.model = None
        self._stack = None
        self._ranking = None
        self.map_layer.changed.connect(self._on_map_changed)
        self.fraction.changed.connect(self.show_fraction)
        self.save_figure.changed.connect(self._ask_save_figure)
        self.save_data.changed.connect(self._ask_save_data)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.map_layer.reset_choices)
        self._on_map_changed(self.map_layer.value)

    # --- choices ------------------------------------------------------------------------------------------------
    def _map_layers(self, _widget=None):
        return [layer for layer in self.viewer.layers if GLOBAL_MAP_KEY in layer.metadata]

    def _stack_layer(self, map_layer):
        name = map_layer.metadata[GLOBAL_MAP_KEY]["stack_layer"]
        if name not in self.viewer.layers:
            raise ValueError(f"the image stack {name!r} that this map was computed on is no longer open")
        return self.viewer.layers[name]

    def _on_map_changed(self, layer):
        if layer is None:
            return
        try:
            stack = stack_from_layer(self._stack_layer(layer))
        except ValueError:
            return
        names = list(stack.labels.names) if stack.labels is not None else []
        self.labels.choices = names
        label = layer.metadata[GLOBAL_MAP_KEY]["label"]
        self.labels.value = [label] if label in names else names

    # --- run ------------------------------------------------------------------------------------------------------
    def start(self):
        """Collect the parameters and launch PEPPR (returns the worker, or None after an input error)."""
        from napari.utils.notifications import show_error

        layer = self.map_layer.value
        try:
            if layer is None:
                raise ValueError("compute global maps first (Explain dock), then choose one here")
            stack = stack_from_layer(self._stack_layer(layer))
            fractions = _parse_fractions(self.fractions.value)
            labels = list(self.labels.value) or None
        except Exception as exc:  # noqa: BLE001 - input problems are shown, the panel stays usable
            self.run_panel.status.setText(f"error: {exc}")
            show_error(str(exc))
            return None
        self._stack = stack.to_left_eye()
        self._map_name = layer.metadata[GLOBAL_MAP_KEY]["label"]
        return self.run_panel.launch(peppr_job, self._on_result, stack=stack,
                                     model_path=optional_path(self.model_card.value), device="auto",
                                     global_map=np.asarray(layer.data, np.float64), map_name=self._map_name,
                                     labels=labels, fractions=fractions, fill=self.fill.value,
                                     random_seeds=self.random_seeds.value, eval_split=self.eval_split.value)

    def _on_result(self, payload):
        from ..peppr import pixel_ranking

        self.result, self.model = payload
        self._ranking = pixel_ranking(self.result_map())
        self.draw()
        row = self.headline()
        self.run_panel.status.setText(
            f"done: {self.result.n_images} images, {self.result.n_forwards} forwards "
            f"({self.result.n_skipped} skipped); {row['label']}: A_erase {row['A_erase']:.3f}, "
            f"A_restore {row['A_restore']:.3f}, gap {row['gap']:.3f} (random gap {row['random_gap']:.3f})")
        self.show_fraction(self.fraction.value)

    def result_map(self) -> np.ndarray:
        return np.asarray(self.map_layer.value.data, np.float64)

    # --- plot -------------------------------------------------------------------------------------------------------
    def headline(self) -> dict:
        """The summary row shown: a label map on its own label, the overall map on the macro mean."""
        rows = self.result.table
        for wanted in (self._map_name, "macro"):
            for row in rows:
                if row["label"] == wanted:
                    return row
        return rows[0]

    def draw(self):
        """Draw the headline panel of the result into the themed canvas."""
        from ..peppr_report import draw_panel

        ax = self.plot.axes
        ax.clear()
        row = self.headline()
        draw_panel(ax, self.result, row["map"], row["label"])
        ax.axvline(self.fraction.value, color="0.5", linewidth=0.8)
        self.plot.canvas.draw_idle()

    def curve_data(self):
        """``(fractions, erase, restore)`` of the headline curve (what the plot shows), for tests and export."""
        row = self.headline()
        curves = self.result.curves[row["map"]]
        return self.result.fractions, curves.curve("erase", row["label"]), curves.curve("restore", row["label"])

    # --- erased / restored layers ----------------------------------------------------------------------------------
    def filled_stack(self, mode: str, fraction: float):
        """Lazy ``(n, H, W, 3)`` uint8 dask array: every image erased/restored at ``fraction`` (display channels)."""
        import dask.array as da

        from ..peppr_report import filled_images

        stack, model, ranking, fill = self._stack, self.model, self._ranking, self.result.fill
        n, h, w = stack.shape[:3]

        def block(block_id=None):
            i = block_id[0]
            img = filled_images(model, stack.get([i]), ranking, [fraction], fill, mode)[:, 0]
            return _to_rgb(img)

        return da.map_blocks(block, dtype=np.uint8, chunks=((1,) * n, (h,), (w,), (3,)), meta=np.zeros((0, 0, 0, 0),
                                                                                                     np.uint8))

    def show_fraction(self, fraction: float):
        """(Re)place the ``erased`` and ``restored`` layers at ``fraction``."""
        if self.result is None:
            return
        for mode, stem in (("erase", "erased"), ("restore", "restored")):
            name = f"{stem} · {self._map_name}"
            data = self.filled_stack(mode, float(fraction))
            if name in self.viewer.layers:
                self.viewer.layers[name].data = data
                self.viewer.layers[name].metadata["fraction"] = float(fraction)
            else:
                self.viewer.add_image(data, name=name, rgb=True, metadata={"fraction": float(fraction)},
                                      visible=mode == "erase")
        self.draw()

    # --- export ------------------------------------------------------------------------------------------------------
    def export(self, out_dir) -> dict:
        """Write the figure PNG and curves CSV/JSON of the current result to ``out_dir``."""
        from ..peppr_report import write_peppr

        if self.result is None:
            raise ValueError("run PEPPR first")
        return write_peppr(self.result, out_dir)

    def _ask_save_figure(self, _=None):
        self._ask_and_export(figure_only=True)

    def _ask_save_data(self, _=None):
        self._ask_and_export(figure_only=False)

    def _ask_and_export(self, figure_only: bool):
        """Ask for a folder; write the figure PNG, or the curves CSV and summary JSON."""
        from napari.utils.notifications import show_error, show_info

        from ..peppr_report import plot_peppr, write_peppr

        folder = QFileDialog.getExistingDirectory(self, "Folder for PEPPR " + ("figure" if figure_only else "curves"))
        if not folder:
            return
        try:
            if self.result is None:
                raise ValueError("run PEPPR first")
            if figure_only:
                paths = {"figure": plot_peppr(self.result, Path(folder) / "peppr.png")}
            else:
                paths = write_peppr(self.result, Path(folder), plot=False)
            show_info("saved " + ", ".join(p.name for p in paths.values()))
        except Exception as exc:  # noqa: BLE001
            show_error(str(exc))


def _to_rgb(img: np.ndarray) -> np.ndarray:
    """Model-channel images ``(k, H, W, c)`` → RGB for display (2 channels = red, green; 1 = grey)."""
    c = img.shape[-1]
    if c == 3:
        return img
    if c == 1:
        return np.repeat(img, 3, axis=-1)
    out = np.zeros((*img.shape[:-1], 3), img.dtype)
    out[..., :min(c, 3)] = img[..., :3]
    return out
