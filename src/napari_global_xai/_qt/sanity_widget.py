"""Sanity dock: the model-parameter randomisation check of saliency methods on a few images of a stack.

Runs :func:`napari_global_xai.analyses.sanity_pipeline.run_sanity` in a thread worker and draws
:func:`napari_global_xai.analyses.sanity_figure.draw_sanity` into a themed canvas, with the image-wise and global
verdict lines of each method (intervals and references in each line).
"""

from __future__ import annotations

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    LineEdit,
    Select,
    SpinBox,
)
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from .. import config as settings
from ..analysis_config import SANITY_METHODS, SanityConfig
from ._analyses_common import show_input_error
from ._layer_pickers import stack_from_layer, stack_layers
from ._layout import advanced_group, scroll_body
from ._method_inputs import METHODS, parse_method_params
from ._model_inputs import ModelInputs, labels_of_card, load_model_job, optional_path
from ._runner import RunPanel

__all__ = ["SanityWidget", "params_following_methods", "sanity_job"]

MOST_PROBABLE = "(most probable)"

#: The dock's first layer grouping: the top-level modules (fewer, faster steps than the CLI's every module alone).
DOCK_DEPTH = 1
#: The dock's first parameters of a method when it is chosen (a quick IG); other methods start at their defaults.
DOCK_METHOD_PARAMS = {"ig": ("n_steps=8", "baseline='blur'")}
#: The parameters field at the start (the default methods' entries).
DOCK_PARAMS = ", ".join(f"{m}.{p}" for m in SANITY_METHODS for p in DOCK_METHOD_PARAMS.get(m, ()))


def params_following_methods(text: str, methods: list[str], typed: dict[str, list[str]]) -> str:
    """The parameters field after the chosen methods changed: the entries of the chosen methods only.

    A deselected method's entries leave the field and are remembered in ``typed`` (``{method: [items]}``, updated
    in place), so choosing the method again brings them back; a newly chosen method gets what was typed for it
    before, else :data:`DOCK_METHOD_PARAMS`. Entries naming no known method stay (the run then names the mistake).
    """
    items = [p.strip() for p in text.split(",") if p.strip()]
    by_method: dict[str, list[str]] = {}
    unknown = []
    for item in items:
        method = item.partition("=")[0].partition(".")[0].strip()
        (by_method.setdefault(method, []) if method in METHODS else unknown).append(item)
    typed.update(by_method)
    out = []
    for method in methods:
        out += typed.get(method) or [f"{method}.{p}" for p in DOCK_METHOD_PARAMS.get(method, ())]
    return ", ".join(out + unknown)


def sanity_job(stack, model_path, config, device=settings.DEFAULT_DEVICE, trust_pickle=False, control=None):
    """Worker body: load the model (torch imports here) and run the check (in the model's frame)."""
    from ..analyses.sanity_pipeline import run_sanity

    model = load_model_job(model_path, device, trust_pickle)
    return run_sanity(stack, model, config, control=control)


class SanityWidget(QWidget):
    """Dock: do the maps of these methods depend on the model's weights?"""

    def __init__(self, napari_viewer):
        super().__init__()
        from napari_matplotlib.base import BaseNapariMPLWidget

        self.viewer = napari_viewer
        self.image_layer = ComboBox(label="image stack", choices=self._stack_layers)
        self.model_inputs = ModelInputs()
        self.model_card, self.device, self.trust_pickle = self.model_inputs.widgets
        defaults = SanityConfig()
        self.methods = Select(label="methods", choices=METHODS, value=list(SANITY_METHODS))
        self.params = LineEdit(label="parameters", value=DOCK_PARAMS)
        self.reduction = ComboBox(
            label="channel reduction", choices=settings.REDUCTIONS, value=settings.ExplainConfig().reduction
        )
        self.label = ComboBox(label="label", choices=[MOST_PROBABLE] + labels_of_card(None))
        self.n_images = SpinBox(label="images", value=defaults.n_images, min=1, max=64)
        self.depth = SpinBox(label="layer depth (0 = every module)", value=DOCK_DEPTH, min=0, max=8)
        self.independent = CheckBox(text="also randomise each layer alone", value=defaults.independent)
        self.methods.native.setMaximumHeight(90)
        self.form = Container(widgets=[self.image_layer, self.model_card, self.methods, self.label, self.n_images])
        self.advanced = Container(
            widgets=[self.params, self.reduction, self.depth, self.independent, self.device, self.trust_pickle]
        )
        self._typed_params: dict[str, list[str]] = {}
        self.methods.changed.connect(self._on_methods_changed)
        self.model_card.changed.connect(
            lambda v: setattr(self.label, "choices", [MOST_PROBABLE] + labels_of_card(optional_path(v)))
        )
        self.run_panel = RunPanel("Run sanity check")
        self.run_panel.set_start(self.start)
        self.verdicts = QLabel("")
        self.verdicts.setWordWrap(True)
        self.plot = BaseNapariMPLWidget(napari_viewer)
        self.plot.setMinimumHeight(240)
        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(self.form.native)
        layout.addWidget(advanced_group(self.advanced))
        layout.addWidget(self.run_panel)
        layout.addWidget(self.verdicts)
        layout.addWidget(self.plot, 1)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.image_layer.reset_choices)
        self.result = None

    def _stack_layers(self, _widget=None):
        return stack_layers(self.viewer)

    def _on_methods_changed(self, methods):
        self.params.value = params_following_methods(self.params.value, list(methods), self._typed_params)

    def config(self) -> SanityConfig:
        """The run's settings from the form (``ValueError`` on a bad entry)."""
        methods = list(self.methods.value)
        if not methods:
            raise ValueError("choose at least one method")
        params = parse_method_params(self.params.value, methods)
        return SanityConfig(
            methods=[
                settings.ExplainConfig(method=m, params=params[m], reduction=self.reduction.value) for m in methods
            ],
            n_images=self.n_images.value,
            label=None if self.label.value == MOST_PROBABLE else self.label.value,
            depth=self.depth.value,
            independent=self.independent.value,
        )

    def start(self):
        layer = self.image_layer.value
        try:
            if layer is None:
                raise ValueError("open an image stack first")
            stack = stack_from_layer(layer)
            config = self.config()
        except Exception as exc:  # noqa: BLE001 - shown, the dock stays usable
            show_input_error(self.run_panel, exc)
            return None
        return self.run_panel.launch(
            sanity_job, self._on_result, stack=stack, config=config, **self.model_inputs.load_options()
        )

    def _on_result(self, result):
        from ..analyses.sanity_figure import draw_sanity

        self.result = result
        self.verdicts.setText("\n".join(result.verdicts.values()))
        draw_sanity(self.plot.figure, result)
        self.plot.canvas.draw_idle()
        self.run_panel.status.setText(
            ("cancelled: " if result.cancelled else "done: ")
            + f"{len(result.steps) - 1} of {len(result.layers)} layers randomised"
        )
