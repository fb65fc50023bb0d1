"""Every Captum-backed method equals a direct Captum call on the same inputs; IG satisfies completeness."""

import captum.attr as ca
import numpy as np
import pytest
import torch

from napari_global_xai.perturb.fills import gaussian_blur
from napari_global_xai.saliency import get_method, method_names

from .conftest import PASS_TERMS
from _tolerance import float32_atol, forward_terms


def _inputs(model, stack):
    x = model.preprocess(stack.to_left_eye().get(slice(0, 3)))
    return x, torch.tensor([0, 1, 2])


def _direct(name, model, x, t):
    """The same attribution written directly against Captum (independent of our wrappers)."""
    f = model.module
    if name == "saliency":
        return ca.Saliency(f).attribute(x, target=t, abs=False)
    if name == "input_x_gradient":
        return ca.InputXGradient(f).attribute(x, target=t)
    if name == "guided_backprop":
        return ca.GuidedBackprop(f).attribute(x, target=t)
    if name == "deeplift":
        return ca.DeepLift(f).attribute(x, baselines=torch.zeros_like(x), target=t)
    if name == "ig":
        return ca.IntegratedGradients(f).attribute(x, baselines=torch.zeros_like(x), target=t, n_steps=8)
    if name == "gradient_shap":
        torch.manual_seed(3)
        np.random.seed(3)  # Captum draws the path coefficients with numpy
        return ca.GradientShap(f).attribute(x, baselines=torch.zeros_like(x[:1]), target=t, n_samples=4, stdevs=0.1)
    if name == "smoothgrad":
        torch.manual_seed(3)
        np.random.seed(3)
        return ca.NoiseTunnel(ca.Saliency(f)).attribute(
            x, nt_type="smoothgrad", nt_samples=4, stdevs=0.15, target=t, abs=False
        )
    if name == "occlusion":
        return ca.Occlusion(f).attribute(x, sliding_window_shapes=(2, 8, 8), strides=(2, 4, 4), baselines=0.0, target=t)
    if name == "gradcam":
        cam = ca.LayerGradCam(f, f.features[4]).attribute(x, target=t, relu_attributions=True)
        return torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear").clamp_min(0)
    raise AssertionError(name)


PARAMS = {
    "ig": {"n_steps": 8},
    "gradient_shap": {"n_samples": 4, "seed": 3},
    "smoothgrad": {"nt_samples": 4, "seed": 3},
    "occlusion": {"window": 8, "stride": 4},
}
CAPTUM = [
    "saliency",
    "input_x_gradient",
    "guided_backprop",
    "deeplift",
    "ig",
    "gradient_shap",
    "smoothgrad",
    "occlusion",
    "gradcam",
]


@pytest.mark.parametrize("name", CAPTUM)
def test_method_equals_direct_captum_call(name, tiny_model, tiny_stack):
    x, t = _inputs(tiny_model, tiny_stack)
    ours = get_method(name, tiny_model, **PARAMS.get(name, {})).attribute(x.clone().requires_grad_(), t)
    direct = _direct(name, tiny_model, x.clone().requires_grad_(), t).detach()
    assert ours.shape[0] == 3 and ours.shape[-2:] == x.shape[-2:]
    # our wrapper batches and fills in its own way (internal batch sizes, a fill tensor): float32 rounding, derived
    # (tests/_tolerance.py; was rtol=1e-5, atol=1e-6, as large as these maps' values)
    if name == "occlusion":  # a difference of two scores (forward_terms each), relative to the scores' scale
        window, stride = PARAMS["occlusion"]["window"], PARAMS["occlusion"]["stride"]
        occluded = [x]
        for top in range(0, x.shape[-2] - window + 1, stride):
            for left in range(0, x.shape[-1] - window + 1, stride):
                copy = x.clone()
                copy[..., top : top + window, left : left + window] = 0.0
                occluded.append(copy)
        with torch.no_grad():
            scale = tiny_model.module(torch.cat(occluded)).abs().max()
        atol = float32_atol(scale, 2 * forward_terms(tiny_model.module))
    else:  # PASS_TERMS per gradient pass (explain/conftest.py) times the passes a map averages
        passes = max(PARAMS.get(name, {}).get(k, 1) for k in ("n_steps", "n_samples", "nt_samples"))
        atol = float32_atol(direct.abs().max(), PASS_TERMS * passes)
    torch.testing.assert_close(ours, direct, rtol=0, atol=atol)


def test_registry_lists_every_method():
    assert set(CAPTUM) <= set(method_names())


def test_unknown_method_and_parameter_are_clear_errors(tiny_model):
    with pytest.raises(ValueError, match="unknown saliency method 'nope'.*choose from"):
        get_method("nope", tiny_model)
    with pytest.raises(ValueError, match="ig: unknown parameter.*n_stepz"):
        get_method("ig", tiny_model, n_stepz=3)


@pytest.mark.parametrize("baseline", ["zero", "black", "blur"])
def test_ig_completeness_tiny(baseline, tiny_model, tiny_stack):
    """Sum of IG attributions = f(x) - f(baseline) (the completeness axiom), for every baseline kind."""
    x, t = _inputs(tiny_model, tiny_stack)
    method = get_method("ig", tiny_model, n_steps=64, baseline=baseline, blur_sigma=3.0)
    attr = method.attribute(x.clone().requires_grad_(), t)
    base = method.baseline(x)
    if baseline == "blur":
        torch.testing.assert_close(base, gaussian_blur(x, 3.0))
    with torch.no_grad():
        diff = (tiny_model.module(x) - tiny_model.module(base)).gather(1, t[:, None])[:, 0]
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), diff, rtol=0.01, atol=1e-4)


def test_gradcam_finds_last_spatial_layer_when_card_has_none(tiny_model, tiny_stack):
    tiny_model.card.cam_layer = None
    x, t = _inputs(tiny_model, tiny_stack)
    method = get_method("gradcam", tiny_model)
    maps = method.attribute(x, t)
    # the last module to finish with a spatial output: the conv trunk (whose output is its last ReLU's)
    assert method.params["layer"] == "features"
    assert maps.shape == (3, 1, *x.shape[-2:]) and (maps >= 0).all()


@pytest.mark.parametrize("sigma", [2.0, 6.0, 25.0])
def test_wide_blur_through_the_fft_equals_direct_convolution(sigma):
    """gaussian_blur switches to the FFT for wide kernels; both paths equal a direct separable convolution."""
    import math

    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 96, 128, generator=g).contiguous(memory_format=torch.channels_last)
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(2, 1, 1, -1), groups=2)
    direct = F.conv2d(y, k.view(1, 1, -1, 1).expand(2, 1, -1, 1), groups=2)
    blurred = gaussian_blur(x, sigma)
    # the kernel is positive and sums to 1, so each output rounds relative to max|x|: the direct path's 2 passes of
    # 2r + 1 taps; an FFT path's forward and inverse 2-D transforms, log2(n) butterflies per axis each
    # (tests/_tolerance.py; was atol=1e-6, 13 eps of max|x|, where the FFT path measured 6.5)
    n_fft = max(x.shape[-2:]) + 2 * r
    atol = float32_atol(x.abs().max(), 2 * (2 * r + 1) + 4 * math.ceil(math.log2(n_fft)))
    torch.testing.assert_close(blurred, direct, atol=atol, rtol=0)
    assert blurred.is_contiguous(memory_format=torch.channels_last)
