"""SmoothGrad and gradient SHAP (the methods :class:`SmoothGrad` and :class:`GradientShap`) of several labels of an
image, each noisy sample forwarded once.

**One path, all labels**, as :mod:`.ig`: the noisy samples of a call are forwarded once, and each wanted label's
gradient is taken from that one graph (one backward per label on the retained graph, :func:`.ig.backward_labels`).

**The same noise as Captum.** The random draws are Captum's own, in Captum's order and shapes, so that under one seed
a map of several labels equals the one-label map (Captum's ``NoiseTunnel(Saliency)`` smoothgrad, or
``GradientShap``) to float32 rounding:

- SmoothGrad (``NoiseTunnel._add_noise_to_input``): per block of ``b`` samples (``nt_samples_batch_size``; then one
  block of the remainder), ``torch.normal(0, σ)`` of shape ``(k · b, c, H, W)`` added to each image repeated ``b``
  times (image-major rows); the map is the sum of the samples' gradients over the blocks, divided by ``n``.
- gradient SHAP (``GradientShap`` = ``NoiseTunnel(InputBaselineXGradient)``, all ``n`` samples in one block): first
  ``numpy.random.choice`` of a baseline row per sample (``_expand_and_update_baselines``), then the input noise
  ``torch.normal`` as above, then ``numpy.random.uniform`` of a path coefficient ``α`` per sample; the gradient is
  taken at ``α · (x + ε) + (1 − α) · b`` and multiplied by ``(x + ε) − b``; the map is the mean over the samples.

The caller seeds the global generators (:func:`seeded_global_rngs`) once per call, as it does around the one-label
Captum call, so every label of an image sees the same draws as it would alone.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .base import Float, Int, register_method
from .captum_methods import BASELINE_RULES, CaptumMethod
from .ig import PassCount, backward_labels

__all__ = [
    "SharedNoise",
    "seeded_global_rngs",
    "smoothgrad_labels",
    "gradient_shap_labels",
    "GradientShap",
    "SmoothGrad",
]


@contextlib.contextmanager
def seeded_global_rngs(seed: int):
    """Seed torch's and numpy's global generators (Captum samples with both), restoring them afterwards."""
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


class SharedNoise:
    """Mixin for the noisy-sample methods (SmoothGrad, gradient SHAP): several labels of an image from one forward per
    noisy sample, with the one-label call's seeded draws; every call reports its passes (:attr:`last_passes`).

    The class gives ``noisy_labels(x, targets, count)`` (the draws, under the seed set here) and ``attribute`` (the
    one-label Captum call, which calls :meth:`_passes`).
    """

    shares_path = True

    def _passes(self, maps: int, backward: int) -> None:
        n = self.passes_per_map()
        self.last_passes = PassCount(0, maps * n, backward * n).as_dict()

    def attribute_labels(self, x, targets):
        if targets.shape[1] == 1:  # one label: the Captum call itself
            out = self.attribute(x, targets[:, 0].clamp_min(0))[:, None]
            return out * (targets >= 0).view(*targets.shape, 1, 1, 1).to(out.dtype)
        count = PassCount()
        with seeded_global_rngs(int(self.params["seed"])):
            out = self.noisy_labels(x, targets, count)
        self.last_passes = count.as_dict()
        return out


def _noisy(x: torch.Tensor, stdev: float, samples: int) -> torch.Tensor:
    """``x`` repeated ``samples`` times per image plus Gaussian noise, drawn exactly as Captum's NoiseTunnel."""
    shape = (len(x) * samples, *x.shape[1:])
    noise = torch.normal(0, torch.tensor(stdev, device=x.device).repeat(shape))
    return x.repeat_interleave(samples, dim=0) + noise


def _label_sums(forward, z, targets, samples, count, factor=None):
    """Per label column ``j``: ``Σ_samples factor ⊙ ∂ out[target_j] / ∂z``, ``(k, c, H, W)`` each, from one forward of
    ``z`` (``k · samples`` image-major rows)."""
    k, m = targets.shape
    rows = targets.repeat_interleave(samples, dim=0)
    sums = [None] * m

    def consume(j, g):
        g = g if factor is None else factor * g
        sums[j] = g.view(k, samples, *g.shape[1:]).sum(dim=1)

    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        out = forward(z)
        count.forward_backward += len(z)
        backward_labels(out, z, [rows[:, j] for j in range(m)], torch.ones(len(z)), count, consume)
    return sums


def _mask(sums, n: int, targets: torch.Tensor) -> torch.Tensor:
    out = torch.stack(sums, 1) / n
    return out * (targets >= 0).view(*targets.shape, *([1] * (out.ndim - 2))).to(out.dtype)


def smoothgrad_labels(
    forward, x, targets, n_samples: int, stdev: float, batch: int | None, count: PassCount | None = None
):
    """SmoothGrad (input gradients averaged over noisy copies) of several labels per image.

    Parameters
    ----------
    forward : callable ``x -> scores (k, n_outputs)``
    x : (k, c, H, W)
    targets : (k, m) long, ``-1`` = no map
    n_samples : int
        Noisy copies per image.
    stdev : float
        Standard deviation of the noise (in the model's input units).
    batch : int or None
        Noisy copies per image in one forward (Captum's ``nt_samples_batch_size``; None: all).
    count : PassCount, optional
        Incremented by the passes made.

    Returns
    -------
    (k, m, c, H, W) maps (zero where the target is ``-1``).
    """
    count = count if count is not None else PassCount()
    x = x.detach()
    b = n_samples if batch is None else min(n_samples, int(batch))
    blocks = [b] * (n_samples // b) + ([n_samples % b] if n_samples % b else [])
    total = None
    for size in blocks:
        sums = _label_sums(forward, _noisy(x, stdev, size), targets, size, count)
        total = sums if total is None else [t + s for t, s in zip(total, sums)]
    return _mask(total, n_samples, targets)


def gradient_shap_labels(forward, x, baselines, targets, n_samples: int, stdev: float, count: PassCount | None = None):
    """Gradient SHAP (expected gradients between baselines drawn from ``baselines`` and the noisy image) of several
    labels per image.

    Parameters
    ----------
    forward, x, targets, n_samples, stdev, count : as :func:`smoothgrad_labels`
    baselines : (r, c, H, W)
        The baseline distribution (one row drawn per sample).

    Returns
    -------
    (k, m, c, H, W) maps (zero where the target is ``-1``).
    """
    count = count if count is not None else PassCount()
    x, baselines = x.detach(), baselines.detach()
    base = baselines[np.random.choice(len(baselines), n_samples * len(x)).tolist()]
    noisy = _noisy(x, stdev, n_samples)
    alpha = torch.tensor(np.random.uniform(0.0, 1.0, len(noisy)), device=x.device, dtype=x.dtype)
    alpha = alpha.view(-1, *([1] * (x.ndim - 1)))
    scaled = alpha * noisy + (1.0 - alpha) * base
    sums = _label_sums(forward, scaled, targets, n_samples, count, factor=noisy - base)
    return _mask(sums, n_samples, targets)


# ------------------------------------------------------------------------------------------------- the methods


@register_method
class GradientShap(SharedNoise, CaptumMethod):
    name, captum_name = "gradient_shap", "GradientShap"
    description = "Expected gradients between the baseline and the image, with input noise."
    defaults = {"n_samples": 8, "stdevs": 0.1, "baseline": "zero", "blur_sigma": None, "seed": 0}
    param_rules = {**BASELINE_RULES, "n_samples": Int(1), "stdevs": Float(0), "seed": Int(0, 2**32 - 1)}

    def passes_per_map(self):
        return int(self.params["n_samples"])

    def _by_baseline(self, x, targets, call):
        """``call(images, baselines, targets)`` once for the whole call when the baseline does not depend on the image
        (zero, black), else image by image with each image's own (blur): Captum draws every image of a call's
        baselines from one shared distribution."""
        base = self.baseline(x)
        if bool((base == base[:1]).all()):
            return call(x, base[:1], targets)
        return torch.cat([call(x[i : i + 1], base[i : i + 1], targets[i : i + 1]) for i in range(len(x))])

    def noisy_labels(self, x, targets, count):
        n, sd = int(self.params["n_samples"]), float(self.params["stdevs"])
        return self._by_baseline(
            x, targets, lambda xs, base, ts: gradient_shap_labels(self.forward_module, xs, base, ts, n, sd, count)
        )

    def attribute(self, x, targets):
        self._passes(len(x), len(x))
        n, sd = int(self.params["n_samples"]), float(self.params["stdevs"])
        with seeded_global_rngs(int(self.params["seed"])):
            method = self.build()
            return self._by_baseline(
                x, targets, lambda xs, base, ts: method.attribute(xs, baselines=base, target=ts, n_samples=n, stdevs=sd)
            ).detach()


@register_method
class SmoothGrad(SharedNoise, CaptumMethod):
    name = "smoothgrad"
    description = "SmoothGrad: input gradients averaged over noisy copies (Captum NoiseTunnel)."
    defaults = {"nt_samples": 16, "stdevs": 0.15, "nt_samples_batch_size": None, "seed": 0}
    param_rules = {
        "nt_samples": Int(1),
        "stdevs": Float(0),
        "nt_samples_batch_size": Int(1, none=True),
        "seed": Int(0, 2**32 - 1),
    }

    def passes_per_map(self):
        return int(self.params["nt_samples"])

    def plan_batches(self, images_per_pass):
        maps = max(1, images_per_pass // self.passes_per_map())
        if not self.params["nt_samples_batch_size"]:
            self.params["nt_samples_batch_size"] = max(1, images_per_pass // maps)
        return maps

    def build(self):
        import captum.attr as ca

        return ca.NoiseTunnel(ca.Saliency(self.forward_module))

    def noisy_labels(self, x, targets, count):
        n, sd, bs = int(self.params["nt_samples"]), float(self.params["stdevs"]), self.params["nt_samples_batch_size"]
        return smoothgrad_labels(self.forward_module, x, targets, n, sd, bs, count)

    def attribute(self, x, targets):
        bs = self.params["nt_samples_batch_size"]
        self._passes(len(x), len(x))
        with seeded_global_rngs(int(self.params["seed"])):
            return (
                self.build()
                .attribute(
                    x,
                    nt_type="smoothgrad",
                    nt_samples=int(self.params["nt_samples"]),
                    stdevs=float(self.params["stdevs"]),
                    target=targets,
                    abs=False,
                    nt_samples_batch_size=bs,
                )
                .detach()
            )
