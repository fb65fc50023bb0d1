"""The CAM family beyond plain Grad-CAM: native, batched, one short weighting function per method.

Every method reads one layer's activations ``A`` (``(k, C, h, w)``, the card's ``cam_layer`` unless ``layer`` names
another) and, for the gradient methods, the gradients ``G = ∂s/∂A`` of the explained score ``s`` (the logit by
default, as Grad-CAM). :class:`CamMethod` captures both with one forward hook and **one backward per batch of
(image, label) pairs**; a subclass only says how ``A`` and ``G`` become a map. The map is ReLU-ed at feature
resolution and upsampled to the image like the existing Grad-CAM (``upsample``: bilinear, ``align_corners=False``,
clamped at 0; or nearest); per-image normalisation is left to :mod:`.postprocess`, as for every method.

============  ===========================================================================================
method        map at feature resolution (sums over channels ``c`` and positions ``ij``)
============  ===========================================================================================
gradcam++     ``Σ_c w_c A_c``, ``w_c = Σ_ij relu(G) α``, ``α = G² / (2G² + Σ_ij A · G³)`` (Chattopadhay 2018)
xgradcam      ``Σ_c w_c A_c``, ``w_c = Σ_ij G A / Σ_ij A`` (Fu et al. 2020)
hirescam      ``Σ_c G_c A_c`` element-wise (Draelos & Carin 2020)
layercam      ``Σ_c relu(G_c) A_c`` element-wise (Jiang et al. 2021); meant also for earlier layers
eigencam      projection of the centred activations on their first principal component (Muhammad & Yeasin 2020)
scorecam      ``Σ_c w_c A_c``, ``w = softmax_c s(x ⊙ M_c)``, ``M_c`` = ``A_c`` upsampled and min–max scaled
============  ===========================================================================================

All maps are ReLU-ed before upsampling (pytorch-grad-cam does the same; tests compare with it). Two deliberate
differences from pytorch-grad-cam: EigenCAM fixes the principal component's sign (the reference leaves it to LAPACK,
so its maps can be the negative of ours), and Score-CAM upsamples its masks with ``align_corners=False`` (the
reference's ``nn.UpsamplingBilinear2d`` uses ``True``; ``mask_align_corners=True`` matches it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..batching import images_per_pass, iterate_batches
from .base import Flag, Int, SaliencyMethod, register_method
from .captum_methods import CamLayer, GradCam

__all__ = [
    "CamMethod",
    "EigenCam",
    "GradCamPlusPlus",
    "HiResCam",
    "LayerCam",
    "ScoreCam",
    "XGradCam",
    "upsample_maps",
]

_EPS_PP = 1e-6  # Grad-CAM++ denominator guard (same value as pytorch-grad-cam)
_EPS_X = 1e-7  # XGrad-CAM denominator guard
_EPS_MINMAX = 1e-8


def upsample_maps(cam: torch.Tensor, size, mode: str = "bilinear") -> torch.Tensor:
    """``(k, 1, h, w)`` non-negative maps → ``(k, 1, H, W)``, the house convention of Grad-CAM.

    ``bilinear`` uses ``align_corners=False`` and clamps tiny negative rounding to 0; ``nearest`` copies cells.
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"upsample must be 'bilinear' or 'nearest', got {mode!r}")
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(cam, size=tuple(size), mode=mode, **kwargs)
    return up.clamp_min_(0) if mode == "bilinear" else up


class CamMethod(CamLayer, SaliencyMethod):
    """Shared machinery of the CAM family: layer choice, activation/gradient capture, ReLU and upsampling.

    Subclasses implement :meth:`weigh` (activations, gradients, targets → ``(k, h, w)`` map before the ReLU) and set
    :attr:`needs_grad` (False for the forward-only methods). Parameters common to all: ``layer`` (module name;
    default the card's ``cam_layer``, else the last spatial layer, as Grad-CAM) and ``upsample`` (``bilinear`` or
    ``nearest``).
    """

    defaults = {"layer": None, "upsample": "bilinear"}
    param_rules = dict(GradCam.param_rules)  # the same layer and upsampling choices as Grad-CAM
    spatial_output = True

    def capture(self, x: torch.Tensor, targets: torch.Tensor):
        """One forward (and, for gradient methods, one backward for the whole batch), on any model format.

        Returns
        -------
        activations : torch.Tensor, (k, C, h, w)
        gradients : torch.Tensor or None
            ``∂ score_i[target_i] / ∂ A_i`` for every row ``i`` (rows are independent, so one backward of the sum
            gives every row's gradient).
        scores : torch.Tensor, (k, n_outputs)
        """
        if self.needs_grad and not x.requires_grad:
            x = x.detach().requires_grad_(True)
        with torch.enable_grad() if self.needs_grad else torch.no_grad():
            scores, acts = self.tapped_scores(x)
        grads = None
        if self.needs_grad:
            picked = scores.gather(1, targets.view(-1, 1).to(scores.device)).sum()
            grads = torch.autograd.grad(picked, acts)[0].detach()
        return acts.detach(), grads, scores.detach()

    def weigh(
        self, acts: torch.Tensor, grads: torch.Tensor | None, x: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """``(k, h, w)`` map before the ReLU; the one thing each method defines."""
        raise NotImplementedError

    def cam(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """ReLU-ed maps at feature resolution, ``(k, 1, h, w)`` float32."""
        acts, grads, _ = self.capture(x, targets)
        acts = acts.float()
        grads = None if grads is None else grads.float()
        return self.weigh(acts, grads, x, targets).clamp_min(0).unsqueeze(1)

    def attribute(self, x, targets):
        return upsample_maps(self.cam(x, targets), x.shape[-2:], self.params["upsample"])


def _gradcam_equivalence(method: CamMethod, example: torch.Tensor, needs_nonnegative: bool) -> list[str]:
    """A one-line note when ``method`` gives Grad-CAM's map exactly on this model's layer, else nothing.

    That happens when the gradient of every output w.r.t. the layer is the same at every position of each channel,
    as in a ResNet's last block followed by global average pooling and a linear head: HiResCAM's ``Σ_c G_c A_c`` is
    then Grad-CAM's ``Σ_c mean(G_c) A_c``, and XGrad-CAM's weight ``Σ G A / Σ A`` is ``mean(G_c)`` too (for
    non-negative activations, ``needs_nonnegative``). Checked once, on a random input (one forward and backward of
    one copy per output), to float32 rounding.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tuple(example.shape[1:]), generator=generator).to(example.device, example.dtype)
    n_out = len(method.model.card.labels)
    acts, grads, _ = method.capture(x.expand(n_out, *x.shape).clone(), torch.arange(n_out, device=example.device))
    grads, acts = grads.float(), acts.float()
    scale = float(grads.abs().amax())
    spread = float((grads - grads.mean(dim=(2, 3), keepdim=True)).abs().amax())
    if scale == 0 or spread > 1e-5 * scale or (needs_nonnegative and float(acts.amin()) < 0):
        return []
    layer = method.params["layer"] or method.model.card.cam_layer
    return [
        f"{method.name} equals gradcam on this model: the gradient at layer {layer!r} is the same at every position "
        "(global average pooling into a linear head), so the maps are Grad-CAM's exactly; an earlier layer "
        "(layer=NAME) gives a different map"
    ]


def _channel_weighted(acts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_c w_c A_c`` for per-image channel weights ``(k, C)``."""
    return torch.einsum("kc,kchw->khw", weights, acts)


@register_method
class GradCamPlusPlus(CamMethod):
    name = "gradcam++"
    description = "Grad-CAM++: channel weights from positive gradients weighted by second/third-order terms."

    def weigh(self, acts, grads, x, targets):
        g2 = grads.pow(2)
        alpha = g2 / (2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g2 * grads + _EPS_PP)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return _channel_weighted(acts, (grads.clamp_min(0) * alpha).sum(dim=(2, 3)))


@register_method
class XGradCam(CamMethod):
    name = "xgradcam"
    description = "XGrad-CAM: channel weights = activation-weighted mean gradient (axiom-based Grad-CAM)."

    def check_cam_layer(self, example):
        return super().check_cam_layer(example) + _gradcam_equivalence(self, example, needs_nonnegative=True)

    def weigh(self, acts, grads, x, targets):
        weights = (grads * acts).sum(dim=(2, 3)) / (acts.sum(dim=(2, 3)) + _EPS_X)
        return _channel_weighted(acts, weights)


@register_method
class HiResCam(CamMethod):
    name = "hirescam"
    description = "HiResCAM: element-wise gradient × activation summed over channels (no spatial averaging)."

    def check_cam_layer(self, example):
        return super().check_cam_layer(example) + _gradcam_equivalence(self, example, needs_nonnegative=False)

    def weigh(self, acts, grads, x, targets):
        return (grads * acts).sum(dim=1)


@register_method
class LayerCam(CamMethod):
    name = "layercam"
    description = "LayerCAM: positive gradients × activations per position; layer= an earlier layer gives finer maps."

    def weigh(self, acts, grads, x, targets):
        return (grads.clamp_min(0) * acts).sum(dim=1)


@register_method
class EigenCam(CamMethod):
    """EigenCAM: class-agnostic (the same map for every label of an image); one forward, no backward.

    Notes
    -----
    The first principal component's sign is arbitrary (an SVD returns ``±v``); the paper does not fix it and
    pytorch-grad-cam leaves it to LAPACK. Here the sign is chosen so that the projection correlates positively with
    the channel-summed activation map (the map points where the layer is active), which makes results reproducible.
    """

    name = "eigencam"
    description = "EigenCAM: first principal component of the layer's activations (class-agnostic, no gradients)."
    needs_grad = False

    def weigh(self, acts, grads, x, targets):
        k, c, h, w = acts.shape
        m = acts.reshape(k, c, h * w).transpose(1, 2)  # (k, positions, channels)
        m = m - m.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(m, full_matrices=False)
        proj = torch.einsum("kpc,kc->kp", m, vh[:, 0, :])
        energy = m.sum(dim=2)  # centred channel-sum map
        sign = torch.where((proj * energy).sum(dim=1) < 0, -1.0, 1.0).to(proj.dtype)
        return (proj * sign[:, None]).reshape(k, h, w)


@register_method
class ScoreCam(CamMethod):
    """Score-CAM: forward passes only; the images of a call share their masked forwards across labels.

    Notes
    -----
    Each channel's activation map is upsampled to the image (the ``upsample`` mode; bilinear with
    ``align_corners=False`` like every map here, or ``mask_align_corners=True`` for pytorch-grad-cam's
    ``nn.UpsamplingBilinear2d``, which then gives its maps to float tolerance), min–max scaled to [0, 1] and
    multiplied into the normalised image (so the masked-out value is 0 in normalised space, the train-set mean, as
    the zero fill of PEPPR); the channel weights are the softmax over channels of the explained score of the masked
    images. The paper subtracts the baseline image's score first; a softmax is unchanged by that shift, so it is
    skipped. Rows of one call that hold the same image (several labels) share one set of ``C`` masked forwards,
    which return every label's score at once.

    The masked forwards run in batches of ``batch_size`` (default: the device's images per pass) with the shared
    out-of-memory back-off (:func:`~napari_global_xai.batching.iterate_batches`) and the masking multiply of PEPPR's
    scorer (:func:`~napari_global_xai.perturb.blend`). PEPPR's :class:`~napari_global_xai.peppr.CurveEngine` itself
    does not fit: it scores binary masks that are prefixes of a pixel ranking (keys ``(ranking, k)``, deduplicated
    across images), whereas Score-CAM's masks are continuous and different for every (image, channel).
    """

    name = "scorecam"
    description = "Score-CAM: channel weights = softmax of the scores of activation-masked images (forwards only)."
    defaults = {"layer": None, "upsample": "bilinear", "batch_size": None, "mask_align_corners": False}
    param_rules = {**CamMethod.param_rules, "batch_size": Int(1, none=True), "mask_align_corners": Flag()}
    needs_grad = False
    _channels: int | None = None

    def passes_per_map(self) -> int:
        return int(self._channels or 64)

    def plan_batches(self, images_per_pass):
        if not self.params["batch_size"]:
            self.params["batch_size"] = images_per_pass
        # a call holds every label of several images, so the labels of an image share their masked forwards (the
        # masked images are made batch by batch, so the call size does not bound memory)
        return max(1, int(images_per_pass)) * max(1, len(self.model.card.labels))

    def weigh(self, acts, grads, x, targets):
        from ..perturb.blend import blend

        uniq, inverse = _unique_rows(x)
        acts_u = acts[uniq]
        n_u, c = acts_u.shape[:2]
        self._channels = c
        size = x.shape[-2:]
        mode = self.params["upsample"]
        batch = int(self.params["batch_size"] or images_per_pass(x.device))
        scores = torch.empty(n_u, c, len(self.model.card.labels), device=x.device)
        pairs = n_u * c
        x_u = x[uniq]
        corners = {"align_corners": bool(self.params["mask_align_corners"])} if mode == "bilinear" else {}

        def run(sl):
            idx = torch.arange(sl.start, sl.stop, device=x.device)
            u, ch = idx // c, idx % c
            mask = F.interpolate(acts_u[u, ch][:, None], size=size, mode=mode, **corners)
            lo = mask.amin(dim=(2, 3), keepdim=True)
            hi = mask.amax(dim=(2, 3), keepdim=True)
            mask = (mask - lo) / (hi - lo + _EPS_MINMAX)
            masked = blend(x_u[u], mask.to(x.dtype))
            return self.forward_module(masked.contiguous(memory_format=torch.channels_last)).float()

        for sl, out in iterate_batches(pairs, batch, run):
            scores.view(pairs, -1)[sl] = out
        rows = scores[inverse]  # (k, C, n_outputs)
        picked = rows.gather(2, targets.view(-1, 1, 1).expand(-1, c, 1).to(rows.device))[..., 0]
        return _channel_weighted(acts, torch.softmax(picked, dim=1))


def _unique_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the distinct images in a batch and, per row, which of them it is (exact equality)."""
    reps: list[int] = []
    inverse = []
    for i in range(len(x)):
        for j, r in enumerate(reps):
            if torch.equal(x[i], x[r]):
                inverse.append(j)
                break
        else:
            inverse.append(len(reps))
            reps.append(i)
    return torch.as_tensor(reps, device=x.device), torch.as_tensor(inverse, device=x.device)
