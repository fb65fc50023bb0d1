"""Tolerances for floats computed along different paths, derived from the arithmetic (issue #26).

Two correct computations of one quantity that round in a different order (another model format or memory layout,
another batch composition or chunking, Dask workers instead of this process, another CPU kernel or thread count)
agree only to rounding. Each rounded float operation errs by at most half a unit in the last place, u = eps / 2, of
its result; a value accumulated from ``terms`` rounded quantities of magnitude at most ``scale`` is within about
``terms * u * scale`` of the exact value (Higham's bound for a sum: ``|fl(sum x_i) - sum x_i| <= gamma_(n-1) *
sum |x_i|``, ``gamma_n = n u / (1 - n u)``). Two paths, each that close to the exact value, differ by at most twice
that::

    |a - b| <= terms * eps * scale

So a test states ``scale`` (the magnitude the rounding is relative to: for an occlusion map the model's scores, not
the map, since the map is a difference of two nearly equal scores) and ``terms`` (how many rounded quantities of that
size meet in one compared value, times a stated headroom per quantity; a deep network's forward and backward passes
are not counted multiply-add by multiply-add, the worst-case bound would be useless). A real error (a wrong fill,
target or flip) moves values by a fraction of ``scale``, many orders of magnitude above ``eps * scale``.

Exact equality is for results whose arithmetic is the same by construction: the same batches on the same machine
with the same thread count, integer or fixed-point reductions, pure copies and flips.
"""

import math

import numpy as np

#: float32 machine epsilon, the spacing of float32 numbers at 1: 2**-23 ≈ 1.19e-7
EPS32 = float(np.finfo(np.float32).eps)
#: float64 machine epsilon: 2**-52 ≈ 2.22e-16
EPS64 = float(np.finfo(np.float64).eps)


def rounding_atol(scale, terms, eps=EPS32):
    """``terms * eps * scale``: how far two roundings of one computation may drift apart (module docstring).

    Parameters
    ----------
    scale : float
        Magnitude of the rounded quantities (>= 0).
    terms : float
        Rounded quantities of that magnitude that meet in one compared value, times the stated headroom (>= 1).
    eps : float
        Machine epsilon of the arithmetic (:data:`EPS32` or :data:`EPS64`).
    """
    scale, terms = float(scale), float(terms)
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be finite and >= 0, got {scale}")
    if terms < 1:
        raise ValueError(f"terms must be >= 1, got {terms}")
    return terms * eps * scale


def float32_atol(scale, terms):
    """:func:`rounding_atol` for float32 arithmetic (eps = 2**-23)."""
    return rounding_atol(scale, terms, EPS32)


def float64_atol(scale, terms):
    """:func:`rounding_atol` for float64 arithmetic (eps = 2**-52)."""
    return rounding_atol(scale, terms, EPS64)


def forward_terms(module):
    """Roundings per output of one forward pass of ``module``: 2 ulp of the output's scale per conv or linear layer
    (the forward half of :func:`pass_terms`)."""
    return pass_terms(module) // 2


def pass_terms(module):
    """Roundings per map value of one forward and backward pass of ``module``: 4 per conv or linear layer.

    Each such layer is a reduction, rounded once in the forward and once in the backward pass, with 2 ulp of the
    map's scale allowed each (elementwise layers, ReLU and eval BatchNorm, round at most half an ulp, covered by that).
    Give the eager ``nn.Module``: a TorchScript module hides its layers' classes.
    """
    import torch

    n = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in module.modules())
    if n == 0:
        raise ValueError(f"no Conv2d or Linear layer found in {type(module).__name__}; give the eager nn.Module")
    return 4 * n


def pairwise_sum_terms(n):
    """Roundings, per unit of the result, in numpy's or torch's float32 sum of ``n`` same-signed values.

    Both sum blockwise and pairwise: numpy adds a block of up to 128 values with 8 running accumulators (16
    sequential adds each, 3 to combine them) and pairs the blocks (log2(n / 128)), so the sum errs by at most about
    ``(ceil(log2 n) + 16) * u`` relative (Higham, pairwise summation); torch's cascade sum is no worse. A map
    normalised by that sum carries it too.
    """
    return max(1, math.ceil(math.log2(max(int(n), 2)))) + 16


def mass_normalised_terms(map_terms, n_pixels):
    """Terms of a mass-normalised map (``m / sum |m|``) whose raw values carry ``map_terms``.

    The raw map's own terms, plus the normalising sum's roundings (:func:`pairwise_sum_terms`; the sum is of the map's
    own magnitudes, so relative to it every normalised value carries them), plus 1 for the division.
    """
    return map_terms + pairwise_sum_terms(n_pixels) + 1
