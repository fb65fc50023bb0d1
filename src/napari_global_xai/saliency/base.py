"""The saliency-method interface and its registry.

A method is one small class with one verb, :meth:`SaliencyMethod.attribute`, that maps a batch of normalised images
and one target label per image to raw attributions. It declares its cost (forward+backward passes per map) so
batching, devices, progress and out-of-memory back-off are handled once, outside it (:mod:`.runner`).

The registry: built-in methods are one line each in :data:`napari_global_xai._method_names.METHOD_CLASSES` (name →
``"module:Class"``, torch-free, so the docks list them at napari start) and are imported and registered on first
use; user code registers its own classes with :func:`register_method`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .._method_names import METHOD_CLASSES
from ..errors import UsageError

__all__ = [
    "ScoreModule",
    "SaliencyMethod",
    "MethodUnavailable",
    "SaliencyWarning",
    "register_method",
    "get_method",
    "METHODS",
    "method_names",
    "builtin_method_class",
    "Param",
    "Int",
    "Float",
    "Choice",
    "Flag",
    "MethodParameterError",
]


class MethodUnavailable(ValueError):
    """A method cannot give a correct map on this model's format; the message says which format to give."""


class SaliencyWarning(UserWarning):
    """A method runs, but part of its definition does not apply to this model (one line saying what)."""


METHODS: dict[str, type[SaliencyMethod]] = {}


class MethodParameterError(UsageError):
    """A method parameter has an unknown name, a wrong type or a value out of range (one-line message)."""


@dataclass(frozen=True)
class Param:
    """Type and allowed values of one method parameter, checked when a method is built.

    Attributes
    ----------
    kind : {"int", "float", "bool", "str"}
        ``float`` accepts integers too; ``int`` and ``float`` never accept booleans, NaN or infinity.
    low, high : float, optional
        Bounds (inclusive unless ``open_low`` / ``open_high``).
    choices : tuple of str
        For ``str``: the allowed values (empty = any string).
    none : bool
        ``None`` is allowed (means "choose automatically").
    words : tuple of str
        Strings allowed besides numbers (e.g. ``"auto"``).
    pair : bool
        A pair ``(a, b)`` of such values is allowed too.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple = ()
    none: bool = False
    words: tuple = ()
    pair: bool = False

    def _scalar_ok(self, value) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str) and (not self.choices or value in self.choices)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind == "int" and not isinstance(value, numbers.Integral):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def accepts(self, value) -> bool:
        """Whether ``value`` is allowed."""
        if value is None:
            return self.none
        if isinstance(value, str) and value in self.words:
            return True
        if self.pair and isinstance(value, (tuple, list)):
            return len(value) == 2 and all(self._scalar_ok(v) for v in value)
        return self._scalar_ok(value)

    def describe(self) -> str:
        """What is allowed, in words (used in error messages)."""
        if self.kind == "str":
            text = "one of " + ", ".join(repr(c) for c in self.choices) if self.choices else "a string"
        elif self.kind == "bool":
            text = "True or False"
        else:
            text = "an integer" if self.kind == "int" else "a number"
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.open_low else '≥'} {_number(self.low)}")
            if self.high is not None:
                bounds.append(f"{'<' if self.open_high else '≤'} {_number(self.high)}")
            text += (" " + " and ".join(bounds)) if bounds else ""
        if self.pair:
            text += " (or a pair of them)"
        alternatives = [repr(w) for w in self.words] + (["None (automatic)"] if self.none else [])
        return " or ".join(alternatives + [text]) if alternatives else text


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def Int(low=None, high=None, **options) -> Param:  # noqa: N802 - reads as a type in the rule tables
    """An integer parameter in ``[low, high]``."""
    return Param("int", low, high, **options)


def Float(low=None, high=None, **options) -> Param:  # noqa: N802
    """A real-number parameter in ``[low, high]`` (``open_low=True`` for ``> low``)."""
    return Param("float", low, high, **options)


def Choice(*choices: str, **options) -> Param:  # noqa: N802
    """A string parameter with a fixed set of values."""
    return Param("str", choices=tuple(choices), **options)


def Flag() -> Param:  # noqa: N802
    """A boolean parameter."""
    return Param("bool")


class ScoreModule(nn.Module):
    """``x -> scores (n, n_labels)``: the model's logits, or probabilities when ``probability`` is True.

    Captum methods that need an ``nn.Module`` (DeepLift, Guided Backprop, layer methods) get this wrapper, so no
    method has to care whether the model is sigmoid multi-label or softmax multi-class.
    """

    def __init__(self, module: nn.Module, activation: str = "sigmoid", probability: bool = False):
        super().__init__()
        self.model = module
        self.activation = activation
        self.probability = probability

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ..models.card import apply_activation

        out = self.model(x)
        return apply_activation(out, self.activation) if self.probability else out


class SaliencyMethod:
    """Base class: one saliency method.

    Subclasses set :attr:`name`, :attr:`defaults` (documented keyword parameters), :attr:`param_rules` (a
    :class:`Param` per parameter: its type and allowed range), :attr:`cam_like` (non-negative maps at feature
    resolution, upsampled) and implement :meth:`attribute` and :meth:`passes_per_map`.

    Parameters
    ----------
    model : LoadedModel
        The model with its card (normalisation, labels, CAM layer).
    probability : bool
        Explain the probability (sigmoid/softmax) instead of the logit (default: logit, as in the published code).
    **params
        Method parameters; unknown names are an error.

    Raises
    ------
    MethodParameterError
        An unknown parameter name, or a value outside its :attr:`param_rules` entry: one line naming the method,
        the parameter, the value and what is allowed. Every method's parameters are checked here, once, before
        any model pass.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict] = {}
    #: One :class:`Param` per key of :attr:`defaults` (checked at registration and on every construction).
    param_rules: ClassVar[dict[str, Param]] = {}
    #: True when the map is already non-negative and spatial (Grad-CAM, I-GOS): no channel reduction needed.
    spatial_output: ClassVar[bool] = False
    #: True when attribute() needs gradients (autograd); False for forward-only methods (occlusion).
    needs_grad: ClassVar[bool] = True
    #: True when the method reads a named layer's output (Grad-CAM): the card's ``cam_layer`` or the deepest
    #: spatial layer; refused when the model has none.
    needs_cam_layer: ClassVar[bool] = False
    #: True when the method changes the backward pass of ``nn.ReLU`` *modules* through hooks (Captum's DeepLIFT):
    #: ReLUs that are not modules are treated as linear, so the map silently drifts towards input×gradient.
    needs_relu_modules: ClassVar[bool] = False
    #: After :meth:`attribute`: ``(k,)`` bool, True where the map of that row is not a trustworthy explanation (an
    #: optimisation that stalled, see :mod:`.igos`); ``None`` for methods that never flag. The engine reports
    #: flagged maps and leaves them out of global maps unless asked.
    last_flags = None
    #: True when :meth:`attribute_labels` takes several labels of one image from one forward pass per path image
    #: (``saliency/ig.py``; per noisy sample in ``saliency/noise.py``): the engine then groups an image's (image,
    #: label) pairs into one call.
    shares_path: ClassVar[bool] = False
    #: After a call: per map, ``|Σ attribution − (f(x) − f(b))| / |f(x) − f(b)|`` (IG), shaped like the call's maps
    #: (``(k,)`` after :meth:`attribute`, ``(k, m)`` after :meth:`attribute_labels`); ``None`` for other methods.
    last_completeness = None
    #: After a call: the model passes it made, in images (``{"forward", "forward_backward", "backward"}``), or None.
    last_passes = None

    def __init__(self, model, probability: bool = False, **params):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise MethodParameterError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(self.defaults)) or 'none'}"
            )
        for key, value in params.items():
            rule = self.param_rules[key]
            if not rule.accepts(value):
                raise MethodParameterError(
                    f"{self.name}: parameter {key}={value!r} is not allowed; expected {rule.describe()}"
                )
        self.model = model
        self.probability = probability
        self.params = {**self.defaults, **params}
        self.forward_module = ScoreModule(model.module, model.card.activation, probability)

    def check_model(self, example: torch.Tensor) -> list[str]:
        """Check, once and before any map, that this method is defined on this model; return warnings.

        Uses the requirements declared as class attributes (:attr:`needs_cam_layer`, :attr:`needs_relu_modules`)
        and the model's kind (nn.Module, TorchScript, torch.export graph; see
        :func:`napari_global_xai.models.taps.module_kind`).

        Parameters
        ----------
        example : torch.Tensor, (1, c, H, W)
            A normalised input of the run's size (one forward pass may be run on it).

        Returns
        -------
        list of str
            One-line warnings (e.g. some ReLUs are functional); empty when the method is fully defined.

        Raises
        ------
        MethodUnavailable
            The method can never be right on this model; the message names the format to give instead.
        """
        from ..models.taps import KIND_NAMES, make_nonlinearities_modules, module_kind, relu_census

        module = self.model.module
        kind = module_kind(module)
        notes: list[str] = []
        if self.needs_relu_modules:
            if kind == "torchscript":
                raise MethodUnavailable(
                    f"{self.name} needs the model's nn.ReLU modules, which a TorchScript model hides (the map would "
                    "equal input_x_gradient); give the state_dict with its architecture, or a torch.export .pt2 file"
                )
            if kind == "export":
                make_nonlinearities_modules(module)  # every ReLU/max-pool becomes a hookable module: exact
            else:
                total, hooked = relu_census(module, example)
                if total and not hooked:
                    raise MethodUnavailable(
                        f"{self.name}: none of the model's {total} ReLUs is an nn.ReLU module (functional "
                        "torch.relu), so the map would equal input_x_gradient; give a torch.export .pt2 file of the "
                        "model (its ReLUs are made hookable) or use input_x_gradient"
                    )
                if hooked < total:
                    notes.append(
                        f"{self.name} on {KIND_NAMES[kind]}: {total - hooked} of {total} ReLUs are functional "
                        "(torch.relu) and treated as linear, so the map is partly input_x_gradient; a torch.export "
                        ".pt2 file of the model gives exact DeepLIFT"
                    )
        if self.needs_cam_layer:
            notes += self.check_cam_layer(example)
        return notes

    def check_cam_layer(self, example: torch.Tensor) -> list[str]:
        """Resolve and check the CAM layer (methods with :attr:`needs_cam_layer` override this)."""
        return []

    def passes_per_map(self) -> int:
        """Forward+backward passes (or forwards, for forward-only methods) one map costs; used for batch sizing."""
        return 1

    def plan_batches(self, images_per_pass: int) -> int:
        """Set internal batching knobs for ``images_per_pass`` images per model pass; return maps per call.

        The default suits one-pass methods: as many maps per call as images per pass. Multi-pass methods with their
        own internal batching (IG, SmoothGrad, I-GOS) override it.
        """
        return max(1, images_per_pass // max(1, self.passes_per_map()))

    def attribute(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Raw attributions.

        Parameters
        ----------
        x : torch.Tensor, (k, c, H, W)
            Normalised images on the model's device.
        targets : torch.LongTensor, (k,)
            Output index explained for each image.

        Returns
        -------
        torch.Tensor
            ``(k, c, H, W)`` per-channel attributions, or ``(k, 1, H, W)`` when :attr:`spatial_output`.
        """
        raise NotImplementedError

    def attribute_labels(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Raw attributions of several labels per image: ``targets`` is ``(k, m)`` (``-1`` = no map), the result
        ``(k, m, c, H, W)`` (zero where ``-1``). This default calls :meth:`attribute` once per label column; methods
        with :attr:`shares_path` forward each (path) image once for all labels.
        """
        cols, flags, comp = [], [], []
        for j in range(targets.shape[1]):
            col = targets[:, j]
            out = self.attribute(x, col.clamp_min(0))
            cols.append(out * (col >= 0).view(-1, *[1] * (out.ndim - 1)).to(out.dtype))
            flags.append(self.last_flags)
            comp.append(self.last_completeness)
        self.last_flags = None if any(f is None for f in flags) else torch.stack([torch.as_tensor(f) for f in flags], 1)
        self.last_completeness = None if any(c is None for c in comp) else torch.stack(comp, 1)
        return torch.stack(cols, 1)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def register_method(cls: type[SaliencyMethod]) -> type[SaliencyMethod]:
    """Class decorator: make a method available by its ``name``.

    Raises
    ------
    ValueError
        The class has no name, or its :attr:`~SaliencyMethod.param_rules` do not cover its defaults exactly, or a
        default breaks its own rule (a programming error, caught at import).
    """
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if set(cls.param_rules) != set(cls.defaults):
        raise ValueError(
            f"{cls.__name__}: param_rules {sorted(cls.param_rules)} must cover the defaults "
            f"{sorted(cls.defaults)} exactly"
        )
    bad = [k for k, v in cls.defaults.items() if not cls.param_rules[k].accepts(v)]
    if bad:
        raise ValueError(f"{cls.__name__}: default(s) {bad} break their own param_rules")
    METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    """Registered method names (the built-ins of :data:`napari_global_xai._method_names.METHOD_CLASSES` and any
    method registered by user code)."""
    _load_builtin_methods()
    return sorted(METHODS)


def get_method(name: str, model, probability: bool = False, **params) -> SaliencyMethod:
    """Instantiate a registered method by name (a built-in one is imported on first use).

    Raises
    ------
    UsageError
        Unknown method name (the message lists the known ones).
    """
    if name not in METHODS:
        _load_builtin_methods([name] if name in METHOD_CLASSES else None)
    try:
        cls = METHODS[name]
    except KeyError:
        raise UsageError(f"unknown saliency method {name!r}; choose from {sorted(METHODS)}") from None
    return cls(model, probability=probability, **params)


def builtin_method_class(name: str) -> type[SaliencyMethod]:
    """Import the class of a built-in method from its registry line and register it.

    Raises
    ------
    TypeError
        The line names something that is not a :class:`SaliencyMethod` of that ``name`` (a programming error).
    """
    import importlib

    module, _, attribute = METHOD_CLASSES[name].partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    if not (isinstance(cls, type) and issubclass(cls, SaliencyMethod)) or cls.name != name:
        raise TypeError(
            f"registry line {name!r} -> {METHOD_CLASSES[name]!r} does not name a SaliencyMethod whose name is {name!r}"
        )
    if METHODS.get(name) is not cls:
        register_method(cls)
    return cls


def _load_builtin_methods(names=None) -> None:
    for name in METHOD_CLASSES if names is None else names:
        builtin_method_class(name)
