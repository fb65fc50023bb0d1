"""Captum-backed saliency methods: one thin class each, declared by a table-like set of small subclasses.

Each class only says which Captum attribution to build and which keyword arguments to pass; results equal a
direct Captum call on the same inputs. Baselines for IG-like methods come from :mod:`napari_global_xai.perturb.fills`.
Several labels of one image (``attribute_labels``) share each forward pass in ``ig``, ``saliency`` and
``input_x_gradient`` (:mod:`.ig`) and each noisy sample's in ``smoothgrad`` and ``gradient_shap`` (:mod:`.noise`, the
same seeded draws), equal to one Captum call per label to float32 rounding.
"""

from __future__ import annotations

import torch

from ..perturb.fills import BASELINES, make_fill
from .base import Choice, Float, Int, MethodUnavailable, SaliencyMethod, ScoreModule, register_method

__all__ = [
    "CaptumMethod",
    "BASELINE_RULES",
    "SaliencyGradient",
    "IntegratedGradients",
    "InputXGradient",
    "GuidedBackprop",
    "DeepLift",
    "Occlusion",
    "GradCam",
    "find_cam_layer",
]


#: IG path rules: Captum's (``captum.attr._utils.approximation_methods.SUPPORTED_METHODS``) and this project's
#: ``adaptive`` (nodes placed where the integrand changes, :mod:`.ig`).
INTEGRATIONS = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre", "adaptive")
#: Rules shared by every method with a baseline.
BASELINE_RULES = {"baseline": Choice(*BASELINES), "blur_sigma": Float(0, open_low=True, none=True)}


class _SharedGradient:
    """Mixin for one-pass gradient methods: several labels of an image from one forward (:mod:`.ig`)."""

    shares_path = True

    def attribute_labels(self, x, targets):
        from .ig import PassCount, label_gradients

        if targets.shape[1] == 1:
            out = self.attribute(x, targets[:, 0].clamp_min(0))[:, None]
            return out * (targets >= 0).view(*targets.shape, 1, 1, 1).to(out.dtype)
        count = PassCount()
        grads = label_gradients(self.forward_module, x, targets, count)
        self.last_passes = count.as_dict()
        return grads * x.detach()[:, None] if self.times_input else grads


class CaptumMethod(SaliencyMethod):
    """A Captum attribution class plus the keyword arguments this project passes to ``attribute``."""

    captum_name: str = ""

    def build(self):
        """The Captum attribution object (built per call: cheap, and no hooks linger between calls)."""
        import captum.attr as ca

        return getattr(ca, self.captum_name)(self.forward_module)

    def captum_kwargs(self, x: torch.Tensor) -> dict:
        """Extra keyword arguments for Captum's ``attribute`` (besides inputs and target)."""
        return {}

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """The reference input for IG-like methods, from the ``baseline`` parameter (zero / black / blur)."""
        card = self.model.card
        return make_fill(self.params["baseline"], x, card.mean, card.std, self.params.get("blur_sigma"))

    def attribute(self, x, targets):
        return self.build().attribute(x, target=targets, **self.captum_kwargs(x)).detach()


@register_method
class SaliencyGradient(_SharedGradient, CaptumMethod):
    name, captum_name = "saliency", "Saliency"
    times_input = False
    description = "Plain input gradient (Simonyan et al.); one backward pass."
    defaults = {}

    def captum_kwargs(self, x):
        return {"abs": False}


@register_method
class InputXGradient(_SharedGradient, CaptumMethod):
    name, captum_name = "input_x_gradient", "InputXGradient"
    times_input = True
    description = "Input times gradient; one backward pass."
    defaults = {}


def _guided_relu_mode():
    """A dispatch mode under which every ReLU's backward passes only positive gradients (guided backprop).

    ReLU's backward is ``aten.threshold_backward`` whatever wrote the ReLU (an ``nn.ReLU`` module, functional
    ``torch.relu``, a TorchScript or ``torch.export`` graph), so this works on every format, unlike Captum's module
    hooks. Counts forward ReLUs and guided backwards, so a run where guidance did not happen can be refused.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    relus = {aten.relu.default, aten.relu_.default}

    class GuidedReLU(TorchDispatchMode):
        forward_relus = 0
        guided = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is aten.threshold_backward.default:
                self.guided += 1
                args = (args[0].clamp_min(0), *args[1:])
            elif func in relus:
                self.forward_relus += 1
            return func(*args, **(kwargs or {}))

    return GuidedReLU()


class _GraphForward(torch.nn.Module):
    """``x -> output`` of a :class:`~napari_global_xai.models.taps.LayerTap` (a TorchScript graph run privately)."""

    def __init__(self, tap):
        super().__init__()
        self.tap = tap

    def forward(self, x):
        return self.tap(x)[0]


@register_method
class GuidedBackprop(CaptumMethod):
    name, captum_name = "guided_backprop", "Saliency"
    description = "Guided backpropagation (every ReLU passes only positive gradients; any model format)."
    defaults = {}

    def build(self):
        """Captum's ``Saliency`` on the model; a TorchScript model runs as a private copy of its graph.

        TorchScript's optimising executor, once warmed up by earlier calls, differentiates some ReLUs symbolically
        (``grad * (y > 0)``) and never calls ``threshold_backward``. A function built from the module's graph and
        only ever run unoptimised (:meth:`attribute`) keeps every ReLU backward visible.
        """
        import captum.attr as ca

        from ..models.taps import LayerTap, module_kind

        module = self.model.module
        if module_kind(module) != "torchscript":
            return ca.Saliency(self.forward_module)
        if getattr(self, "_script_forward", None) is None:
            self._script_forward = ScoreModule(
                _GraphForward(LayerTap(module, [])), self.model.card.activation, self.probability
            )
        return ca.Saliency(self._script_forward)

    def attribute(self, x, targets):
        """Input gradient with every ReLU's backward guided; equals Captum's ``GuidedBackprop`` when all ReLUs are
        ``nn.ReLU`` modules (Captum guides only those).

        Raises
        ------
        RuntimeError
            Fewer ReLU backwards were guided than ReLUs ran (a backward ran outside the dispatch mode).
        """
        mode = _guided_relu_mode()
        with torch.jit.optimized_execution(False), mode:
            out = self.build().attribute(x, target=targets, abs=False).detach()
        if mode.guided < mode.forward_relus:
            raise RuntimeError(
                f"{self.name}: only {mode.guided} of the model's {mode.forward_relus} ReLUs were "
                "guided in the backward pass; the map would be partly plain saliency"
            )
        return out


@register_method
class DeepLift(CaptumMethod):
    name, captum_name = "deeplift", "DeepLift"
    description = "DeepLIFT (rescale rule) against the baseline (needs nn.ReLU modules: not on TorchScript)."
    defaults = {"baseline": "zero", "blur_sigma": None}
    param_rules = BASELINE_RULES
    needs_relu_modules = True

    def captum_kwargs(self, x):
        return {"baselines": self.baseline(x)}


@register_method
class IntegratedGradients(CaptumMethod):
    """Integrated Gradients. With one label per image and a Captum rule: Captum's ``IntegratedGradients`` itself.
    With several labels of one image (:meth:`attribute_labels`) every path image is forwarded once and each label's
    gradient taken from it; ``integration="adaptive"`` places ``n_steps`` nodes where the integrand changes
    (:mod:`.ig`). Every call reports the completeness error of each map (:attr:`last_completeness`; two extra
    forward-only passes per image for the Captum rules, none for ``adaptive``, whose end points are nodes) and its
    passes (:attr:`last_passes`).
    """

    name, captum_name = "ig", "IntegratedGradients"
    description = "Integrated Gradients (Gauss-Legendre path, or adaptive nodes), baseline zero/black/blur."
    shares_path = True
    defaults = {
        "n_steps": 32,
        "baseline": "zero",
        "blur_sigma": None,
        "internal_batch_size": None,
        "integration": "gausslegendre",
    }
    param_rules = {
        **BASELINE_RULES,
        "n_steps": Int(1),
        "internal_batch_size": Int(1, none=True),
        "integration": Choice(*INTEGRATIONS),
    }

    def passes_per_map(self):
        return int(self.params["n_steps"])

    def plan_batches(self, images_per_pass):
        if not self.params["internal_batch_size"]:
            self.params["internal_batch_size"] = images_per_pass
        return max(1, int(self.params["internal_batch_size"]) // self.passes_per_map())

    def captum_kwargs(self, x, base=None):
        ibs = self.params["internal_batch_size"]
        return {
            "baselines": self.baseline(x) if base is None else base,
            "n_steps": int(self.params["n_steps"]),
            "method": self.params["integration"],
            "internal_batch_size": max(int(ibs), len(x)) if ibs else None,
        }

    def _path_batch(self, k: int) -> int:
        ibs = self.params["internal_batch_size"]
        return max(int(ibs), k) if ibs else k * int(self.params["n_steps"])

    def _ends(self, x, base, targets):
        """``f(x)`` and ``f(b)`` of each target ``(k, m)``: two forward-only passes per image."""
        with torch.no_grad():
            scores = self.forward_module(torch.cat([x.detach(), base]))
        f_x, f_b = scores[: len(x)], scores[len(x) :]
        return f_x.gather(1, targets.clamp_min(0)), f_b.gather(1, targets.clamp_min(0))

    def attribute(self, x, targets):
        if self.params["integration"] == "adaptive":
            out = self.attribute_labels(x, targets.view(-1, 1))
            self.last_completeness = self.last_completeness[:, 0]
            return out[:, 0]
        from .ig import PassCount, completeness_error

        base = self.baseline(x)
        attr = self.build().attribute(x, target=targets, **self.captum_kwargs(x, base)).detach()
        f_x, f_b = self._ends(x, base, targets.view(-1, 1))
        self.last_completeness = completeness_error(attr.flatten(1).sum(1), f_x[:, 0], f_b[:, 0]).cpu()
        n = len(x) * int(self.params["n_steps"])
        self.last_passes = PassCount(2 * len(x), n, n).as_dict()
        return attr

    def attribute_labels(self, x, targets):
        from .ig import PassCount, adaptive_path_integral, completeness_error, path_integral, rule_nodes

        rule, n_steps = self.params["integration"], int(self.params["n_steps"])
        if targets.shape[1] == 1 and rule != "adaptive":
            out = self.attribute(x, targets[:, 0].clamp_min(0))[:, None]
            self.last_completeness = self.last_completeness[:, None]
            return out * (targets >= 0).view(*targets.shape, 1, 1, 1).to(out.dtype)
        base = self.baseline(x).detach()
        count = PassCount()
        if rule == "adaptive":
            attr, f_x, f_b, self.last_nodes = adaptive_path_integral(
                self.forward_module, x.detach(), base, targets, n_steps, self._path_batch(len(x)), count
            )
        else:
            nodes, weights = rule_nodes(rule, n_steps)
            attr = path_integral(
                self.forward_module, x.detach(), base, targets, nodes, weights, self._path_batch(len(x)), count
            )
            f_x, f_b = self._ends(x, base, targets)
            count.forward += 2 * len(x)
        comp = completeness_error(attr.flatten(2).sum(2).cpu(), f_x.cpu(), f_b.cpu())
        self.last_completeness = torch.where(targets.cpu() >= 0, comp, torch.full_like(comp, float("nan")))
        self.last_passes = count.as_dict()
        return attr


@register_method
class Occlusion(CaptumMethod):
    name, captum_name = "occlusion", "Occlusion"
    description = "Occlusion: score drop when a window is replaced by the baseline (forward passes only)."
    defaults = {"window": 32, "stride": 16, "baseline": "zero", "blur_sigma": None, "perturbations_per_eval": 1}
    param_rules = {**BASELINE_RULES, "window": Int(1), "stride": Int(1), "perturbations_per_eval": Int(1)}
    spatial_output = False
    needs_grad = False

    def plan_batches(self, images_per_pass):
        return 1

    def passes_per_map(self):
        h, w = self.model.card.input_size or (384, 512)
        win, st = int(self.params["window"]), int(self.params["stride"])
        return ((h - win) // st + 1) * ((w - win) // st + 1) + 1

    def captum_kwargs(self, x):
        c, win, st = x.shape[1], int(self.params["window"]), int(self.params["stride"])
        return {
            "sliding_window_shapes": (c, win, win),
            "strides": (c, st, st),
            "baselines": self.baseline(x),
            "perturbations_per_eval": int(self.params["perturbations_per_eval"]),
        }

    def attribute(self, x, targets):
        with torch.no_grad():
            return super().attribute(x, targets)


def find_cam_layer(module: torch.nn.Module, example: torch.Tensor) -> str:
    """Name of the last layer (in execution order) whose output is a spatial ``(n, C, h, w)`` map with h·w > 1.

    Used when a model card names no CAM layer; works on nn.Module, TorchScript and ``torch.export`` models
    (:func:`napari_global_xai.models.taps.spatial_layers`). A container ending in the last spatial layer comes
    after it, so the container is chosen.

    Raises
    ------
    MethodUnavailable
        The model has no spatial layer.
    """
    from ..models.taps import spatial_layers

    layers = spatial_layers(module, example)
    if not layers:
        raise MethodUnavailable("no spatial (4-D) layer found for Grad-CAM; name one in the model card's cam_layer")
    return layers[-1][0]


class CamLayer:
    """The explained layer of a CAM method, reached on any model format through a :class:`~..models.taps.LayerTap`.

    Mixed into Grad-CAM and the CAM family (:mod:`.cam`): the ``layer`` parameter, else the card's ``cam_layer``,
    else the last spatial layer; checked once before any work (:meth:`check_cam_layer`).
    """

    needs_cam_layer = True

    def layer_name(self, x: torch.Tensor) -> str:
        name = self.params["layer"] or self.model.card.cam_layer
        if name is None:
            name = find_cam_layer(self.model.module, x[:1].detach())
            self.params["layer"] = name
        return name

    def check_cam_layer(self, example):
        """Resolve the layer and build its tap (any model format); refuse when the layer is unusable."""
        from ..models.taps import LayerTap

        name = self.layer_name(example)
        try:
            self._tap = LayerTap(self.model.module, [name])
        except ValueError as exc:
            raise MethodUnavailable(f"{self.name}: {exc}; set the card's cam_layer (see 'global-xai card')") from None
        return []

    def tapped_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores (k, n_outputs), activations (k, C, h, w))`` of one forward; logits, or probabilities when the
        method explains probabilities."""
        if getattr(self, "_tap", None) is None:
            self.check_cam_layer(x[:1].detach())
        out, (act,) = self._tap(x)
        if not isinstance(act, torch.Tensor) or act.ndim != 4:
            raise MethodUnavailable(
                f"{self.name}: layer {self.params['layer'] or self.model.card.cam_layer!r} does "
                "not output an (n, C, h, w) feature map; choose a convolutional layer"
            )
        if self.probability:
            from ..models.card import apply_activation

            out = apply_activation(out, self.model.card.activation)
        return out, act


@register_method
class GradCam(CamLayer, CaptumMethod):
    name = "gradcam"
    description = "Grad-CAM on the card's CAM layer (or the last spatial layer), ReLU, upsampled to the image."
    defaults = {"layer": None, "upsample": "bilinear"}
    param_rules = {
        "layer": Choice(none=True),
        "upsample": Choice("bilinear", "nearest", "nearest-exact", "bicubic", "area"),
    }
    spatial_output = True

    def attribute(self, x, targets):
        """Grad-CAM as Captum's ``LayerGradCam``: ReLU(sum_k mean_hw(dS/dA_k) A_k), then upsampled."""
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out, act = self.tapped_scores(x)
        (grad,) = torch.autograd.grad(out.gather(1, targets.view(-1, 1)).sum(), act)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * act).sum(dim=1, keepdim=True)).detach()
        mode = self.params["upsample"]
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        up = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode=mode, **kwargs)
        return up.clamp_min_(0) if mode == "bilinear" else up
