"""I-GOS and iGOS++: saliency by optimising a low-resolution deletion mask along an integrated-gradient path.

Both methods (methods.md §2.3, §2.4) optimise a ``gh × gw`` mask ``M ∈ [0, 1]`` (initialised to ones), upsample it
bilinearly to the image and compose ``φ(x, b, m) = x ⊙ m + b ⊙ (1 − m)`` with a baseline ``b`` (a blurred copy of the
image by default). The descent direction is the gradient of the class score averaged over the straight path
``t_k · U(M)``, ``t_k = k / N`` (or Gauss–Legendre nodes) with Gaussian input noise, plus the gradient of the
regulariser; each step is an Armijo backtracking line search. The map returned is ``1 − U(M)``. Named presets
(:data:`PRESETS`) give the official code (its counts, its fresh noise per loss evaluation, its failed line
searches) or fewer passes; optimisations that stall are detected (:func:`stalled_masks`), warned about, flagged in
``last_flags`` and by default recovered.

Everything runs batched: the masks of ``k`` images are optimised together, the ``k × N`` path images go through the
model in chunks of at most ``max_batch``, and each image has its own line-search step size, so one forward covers
all images' trial points while every image's result is the one it would get alone (up to the rounding differences
of batched convolutions, which can flip a line-search decision only when its Armijo test is within rounding).

Layout: :mod:`.masks` (grid, upsampling, composite, regularisers), :mod:`.variants` (I-GOS vs iGOS++ terms),
:mod:`.path` (score scale, quadrature, the batched path loss and gradient), :mod:`.optimise` (Armijo line search
and the optimisation loop), :mod:`.stall` (stall detection), :mod:`.presets` (named parameter sets, cost
defaults) and :mod:`.methods` (the registered classes).
"""

from .masks import (
    bilateral_tv_norm,
    bilateral_weights,
    composite,
    interpolation_matrix,
    l1_norm,
    mask_grid_shape,
    tv_norm,
    upsample_masks,
)
from .methods import IGOS, IGOSPlusPlus
from .optimise import armijo_line_search, optimise_masks
from .path import QUADRATURES, PathProblem, path_quadrature, score_scale
from .presets import (
    CPU_PATH_PIXELS,
    IGOS_PP_PRESETS,
    PRESETS,
    path_batch_size,
)
from .stall import RECOVERIES, stalled_masks
from .variants import IGOS_PP_VARIANT, IGOS_VARIANT, PathTerm, Variant

__all__ = [
    "IGOS",
    "IGOSPlusPlus",
    "PathTerm",
    "Variant",
    "IGOS_VARIANT",
    "IGOS_PP_VARIANT",
    "PathProblem",
    "mask_grid_shape",
    "interpolation_matrix",
    "upsample_masks",
    "composite",
    "l1_norm",
    "tv_norm",
    "bilateral_weights",
    "bilateral_tv_norm",
    "score_scale",
    "armijo_line_search",
    "optimise_masks",
    "path_quadrature",
    "stalled_masks",
    "PRESETS",
    "IGOS_PP_PRESETS",
    "QUADRATURES",
    "RECOVERIES",
    "path_batch_size",
    "CPU_PATH_PIXELS",
]
