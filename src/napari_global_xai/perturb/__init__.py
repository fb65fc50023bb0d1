"""Perturbation layer: fills, blending, pixel rankings and one batched, de-duplicating scorer of masked images.

Used by PEPPR's curve engine (:mod:`napari_global_xai.peppr.engine`: dataset-level erase/restore curves and
per-image deletion/insertion), SAG's patch scoring, the PEPPR filled-image exports, and the saliency baselines
(IG, I-GOS, Score-CAM). Choice lists and defaults (fills, modes, blur σ) come from :mod:`napari_global_xai.config`.

API (stable; everything is re-exported here)
--------------------------------------------
``fills``
    ``FILLS``, ``BASELINES`` (mask-independent fills), ``make_fill(kind, x, mean, std, sigma) -> fill image``,
    ``gaussian_blur(x, sigma)``, ``default_sigma(shape)`` (= ``config.BLUR_SIGMA_FRACTION`` × shorter side, the
    one blur default), ``impute_linear(x, removed, noise)``.
``blend``
    ``apply_fill(x, removed, fill, ...)`` (any fill, incl. ``impute`` with per-image seeded noise),
    ``blend(x, keep, out=, fill_term=, fill_image=)`` (the exact 0/1 blend), ``seeded_noise(shape, seeds)``.
``rankings``
    ``pixel_ranking(map, seed)``, ``random_ranking(shape, seed)``, ``fraction_counts(fractions, n_pixels)``,
    ``check_fractions``, ``rank_positions(ranking, n_pixels)`` (inverse permutation),
    ``removed_mask(ranking, shape, mode, fraction)``.
``scorer``
    ``MaskedScorer(model, fill, *, masks=fn(key, device) -> (H, W) bool removed, fill_sigma, impute_noise, seed,
    batch_size, probability=False, control=RunControl)``:

    * ``load(x, ids=None)``: the normalised ``(n, c, H, W)`` images (on the device) that requests name by id;
    * ``score(image_ids, keys, on_batch=None) -> (len, n_outputs) float64``: model outputs of the masked images
      ``x ⊙ keep + fill ⊙ (1 − keep)``; each distinct ``(image id, key)`` pair costs one forward, ever (answers are
      cached; :meth:`forget` drops them); batched key-major with out-of-memory back-off; the cancel of ``control``
      is checked before every model pass (raises :class:`~napari_global_xai.control.Cancelled`);
    * ``missing(image_ids, keys)``: pairs not answered yet; ``n_forwards``, ``n_batches``, ``forwards_by_image``,
      ``batches_by_image`` (model calls per image id);
    * keys are any hashable (ints, ``frozenset`` of patches, tuples); ``KEEP_ALL`` and ``REMOVE_ALL`` need no mask
      function, and ``REMOVE_ALL`` under a constant fill (``zero`` / ``black``) is one forward for all images.

    SAG fits it as: one scorer per group of images, ``load`` the group, key = the ``frozenset`` of kept patches,
    ``masks`` = not the union of those patches, ``probability=True`` and the label's column of the outputs.
"""

from .blend import apply_fill, blend, seeded_noise
from .fills import BASELINES, FILLS, default_sigma, gaussian_blur, impute_linear, make_fill
from .rankings import (
    check_fractions,
    fraction_counts,
    pixel_ranking,
    random_ranking,
    rank_positions,
    removed_mask,
)
from .scorer import KEEP_ALL, REMOVE_ALL, MaskedScorer

__all__ = [
    "FILLS",
    "BASELINES",
    "make_fill",
    "gaussian_blur",
    "default_sigma",
    "impute_linear",
    "apply_fill",
    "blend",
    "seeded_noise",
    "pixel_ranking",
    "random_ranking",
    "fraction_counts",
    "check_fractions",
    "rank_positions",
    "removed_mask",
    "MaskedScorer",
    "KEEP_ALL",
    "REMOVE_ALL",
]
