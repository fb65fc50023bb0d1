"""How the sanity check judges a method: rank correlations, the two references, bootstrap intervals and the verdicts.

A method passes when its maps lose what they share with the original maps once the model's weights are randomised.
"What they share" is judged against two references computed in the same run, on the same images and pixels:

* **unrelated pairs**: the mean |ρ| between the original maps of two *different* images (every pair of the
  sample). It is what two maps of this method share without sharing an image: the anatomy of an aligned stack, the
  field of view, the method's own habits. A randomised map that shares more than this with its original keeps
  something of its image that the weights did not put there;
* **model-free map**: the mean |ρ| between each original map and the edge magnitude of its input (Sobel, on the
  mean of the model's input channels), a map that ignores the model entirely. It says how much of the maps image
  structure alone explains.

Verdicts (95 % intervals, :data:`CONFIDENCE`):

* **image-wise**: the statistic is the mean over the images of |ρ| (Spearman, inside the field of view) between
  each original map and the map after every layer was randomised (cascading). It *passes* when its interval lies
  wholly below the unrelated-pair interval (upper end < lower end): the randomised maps share less with their
  originals than the maps of two unrelated images do. |ρ| because an anti-correlated map (ρ → −1) keeps the
  structure, inverted; the signed mean is stated beside it.
* **global**: the statistic is |ρ| between the original global map (mean of the sample's maps) and the global map
  of the fully randomised model. It passes on the same bar: below the unrelated-pair interval. What every map
  shares is what a global map shows, so a randomised model whose global map keeps more of it than two single maps
  share keeps the anatomy or the method's habits, not the model's evidence.

The model-free map does not decide (on the shipped sample real methods correlate with it at 0.03-0.07, below any
randomised level, so "below the model-free map" would fail every method); it is stated in every verdict, and a
verdict adds a note when the original maps are no further from it than from each other (they follow image
structure).

Intervals are percentile bootstraps over the images: of the mean for the image-wise values (each image's value,
its unrelated-pair value the mean over its pairs), and, for the global ρ (the mean maps recomputed from each
resample of images), bias-corrected (Efron 1987, BC): the global ρ of a resample with repeated images is lower
than the sample's, and the plain percentile interval can miss the estimate.
"""

from __future__ import annotations

import zlib

import numpy as np

from .sanity_result import Interval, Verdict

__all__ = [
    "CONFIDENCE",
    "GLOBAL_RESAMPLE_SHARE",
    "GLOBAL_PIXELS",
    "rank_rows",
    "row_rho",
    "unrelated_pairs",
    "edge_magnitude",
    "bootstrap_mean",
    "global_interval",
    "judge_images",
    "judge_global",
]

#: Coverage of every interval.
CONFIDENCE = 0.95
#: The global intervals use this share of ``n_boot`` resamples (each recomputes and re-ranks two mean maps).
GLOBAL_RESAMPLE_SHARE = 0.2
#: Pixels (evenly spaced in the field of view) a global resample ranks; the estimate uses every pixel.
GLOBAL_PIXELS = 20_000


def rank_rows(maps: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centred, unit-length average ranks of each map's pixels (inside ``mask``): ``(k, P)``, and which were constant.

    Spearman's ρ of two maps is the dot product of their rows (Pearson's r of average ranks, as
    ``scipy.stats.spearmanr``). A constant map's row is zero (ρ 0 with anything).
    """
    from scipy.stats import rankdata

    maps = np.asarray(maps, np.float64)
    flat = maps.reshape(len(maps), -1) if mask is None else maps[:, np.asarray(mask, bool)]
    ranks = rankdata(flat, axis=1)
    ranks -= ranks.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(ranks, axis=1, keepdims=True)
    constant = norm[:, 0] == 0
    return np.divide(ranks, norm, out=np.zeros_like(ranks), where=norm > 0), constant


def row_rho(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ρ of row ``i`` of ``a`` with row ``i`` of ``b`` (rows from :func:`rank_rows`)."""
    return np.einsum("ij,ij->i", a, b)


def unrelated_pairs(ranks: np.ndarray, constant: np.ndarray | None = None) -> np.ndarray:
    """Per image, the mean |ρ| of its map with the map of every other image (NaN for a constant map, or one image)."""
    k = len(ranks)
    if k < 2:
        return np.full(k, np.nan)
    rho = np.abs(ranks @ ranks.T)
    np.fill_diagonal(rho, np.nan)
    if constant is not None:
        rho[constant, :] = np.nan
        rho[:, constant] = np.nan
    counts = np.isfinite(rho).sum(axis=1)
    sums = np.nansum(rho, axis=1)
    return np.divide(sums, counts, out=np.full(k, np.nan), where=counts > 0)


def edge_magnitude(images: np.ndarray, channels=None) -> np.ndarray:
    """The model-free reference map: Sobel gradient magnitude of each image's mean over ``channels``, ``(k, H, W)``."""
    from scipy import ndimage

    images = np.asarray(images, np.float64)
    if images.ndim == 3:
        images = images[..., None]
    chans = [c for c in (channels or []) if 0 <= c < images.shape[-1]] or list(range(images.shape[-1]))
    grey = images[..., chans].mean(axis=-1)
    return np.stack([np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1)) for g in grey])


def _rng(seed: int, tag: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(tag.encode())])


def bootstrap_mean(values, n_boot: int, seed: int = 0, tag: str = "") -> Interval:
    """Mean of the finite ``values`` with its percentile bootstrap interval (:data:`CONFIDENCE`; NaN ends for < 2)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    if len(v) < 2 or n_boot < 1:
        return Interval(float(v.mean()), float("nan"), float("nan"))
    means = v[_rng(seed, tag).integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    half = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [half, 100 - half])
    return Interval(float(v.mean()), float(low), float(high))


def _ordinal_ranks(rows: np.ndarray) -> np.ndarray:
    ranks = np.argsort(np.argsort(rows, axis=1), axis=1).astype(np.float64)
    ranks -= ranks.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(ranks, axis=1, keepdims=True)
    return np.divide(ranks, norm, out=np.zeros_like(ranks), where=norm > 0)


def global_interval(a, b, mask=None, n_boot: int = 200, seed: int = 0, tag: str = "") -> Interval:
    """|ρ| of the mean maps ``a.mean(0)`` and ``b.mean(0)`` (paired images), with a bias-corrected bootstrap interval.

    Resamples draw images with replacement and recompute both mean maps. Each resample ranks
    :data:`GLOBAL_PIXELS` evenly spaced pixels (ordinal ranks: ties between means of float maps are rare), and the
    bias correction compares the resamples with the estimate on the same pixels, and the interval is moved by the
    difference between the estimate on every pixel (average ranks) and on those.
    """
    from scipy.stats import norm

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sel = (lambda m: m.reshape(len(m), -1)) if mask is None else (lambda m: m[:, np.asarray(mask, bool)])
    fa, fb = sel(a), sel(b)
    ra, _ = rank_rows(fa.mean(0)[None])
    rb, _ = rank_rows(fb.mean(0)[None])
    estimate = abs(float(ra[0] @ rb[0]))
    if len(a) < 2 or n_boot < 1:
        return Interval(estimate, float("nan"), float("nan"))
    pixels = np.unique(np.linspace(0, fa.shape[1] - 1, min(GLOBAL_PIXELS, fa.shape[1])).astype(int))
    fa, fb = fa[:, pixels], fb[:, pixels]
    on_pixels = abs(float(row_rho(_ordinal_ranks(fa.mean(0)[None]), _ordinal_ranks(fb.mean(0)[None]))[0]))
    draws = _rng(seed, tag).integers(0, len(a), (n_boot, len(a)))
    weights = np.stack([np.bincount(d, minlength=len(a)) for d in draws]).astype(np.float64) / len(a)
    boot = np.abs(row_rho(_ordinal_ranks(weights @ fa), _ordinal_ranks(weights @ fb)))
    share_below = (boot < on_pixels).mean() + 0.5 * (boot == on_pixels).mean()
    z0 = norm.ppf(np.clip(share_below, 1 / n_boot, 1 - 1 / n_boot))
    z = norm.ppf(1 - (1 - CONFIDENCE) / 2)
    low, high = np.percentile(boot, 100 * norm.cdf([2 * z0 - z, 2 * z0 + z])) + (estimate - on_pixels)
    return Interval(estimate, float(low), float(high))


def _below(stat: Interval, ref: Interval) -> bool | None:
    """Is ``stat`` clearly below ``ref`` (its upper end under the reference's lower end)? None when undecidable."""
    if not (np.isfinite(stat.high) and np.isfinite(ref.low)):
        return None
    return bool(stat.high < ref.low)


def _line(method: str, level: str, v: Verdict, where: str) -> str:
    what = "randomised |ρ|" if level == "image-wise" else "randomised global |ρ|"
    numbers = f"{what} {v.randomised} vs unrelated pairs {v.unrelated}; model-free edge map {v.model_free}"
    if v.passes is None:
        head = "undecided"
        why = f"{where}; {numbers}"
    elif v.passes:
        head = "passes"
        why = f"{numbers}: below the unrelated-pair level ({where})"
    else:
        head = "FAILS"
        relation = "above" if v.randomised.low > v.unrelated.high else "not clearly below"
        why = f"{numbers}: {relation} the unrelated-pair level ({where})"
        if np.isfinite(v.signed) and v.signed < -0.1:
            why += f"; anti-correlated (signed ρ {v.signed:.2f}): the structure is kept, inverted"
    if v.note:
        why += f"; {v.note}"
    return f"{method} · {level}: {head}: {why}"


def judge_images(
    method: str, rho, ssim_values, unrelated, model_free, *, n_boot: int, seed: int, where: str, decided: bool
) -> Verdict:
    """The image-wise verdict from per-image values (signed ρ and SSIM of the fully randomised maps, references)."""
    rho = np.asarray(rho, np.float64)
    stat = bootstrap_mean(np.abs(rho), n_boot, seed, f"{method}:image")
    unrel = bootstrap_mean(unrelated, n_boot, seed, f"{method}:unrelated")
    free = bootstrap_mean(model_free, n_boot, seed, f"{method}:model_free")
    finite = rho[np.isfinite(rho)]
    signed = float(finite.mean()) if len(finite) else float("nan")
    ss = np.asarray(ssim_values, np.float64)
    ss = float(np.nanmean(ss)) if np.isfinite(ss).any() else float("nan")
    passes = _below(stat, unrel) if decided else None
    if decided and passes is None:
        where = f"too few images for an interval: {where}"
    note = ""
    if _below(free, unrel) is False:
        note = (
            "the original maps are no further from the input's edge map than from each other: they follow image "
            "structure"
        )
    v = Verdict("image", passes, stat, signed, unrel, free, ss, note=note)
    v.line = _line(method, "image-wise", v, where)
    return v


def judge_global(
    method: str,
    original,
    randomised,
    edges,
    unrelated: Interval,
    mask,
    *,
    n_boot: int,
    seed: int,
    where: str,
    decided: bool,
    signed: float,
    ssim_value: float,
) -> Verdict:
    """The global verdict: original vs fully randomised global maps (and vs the edge maps' mean), intervals over
    images."""
    n = max(1, int(round(n_boot * GLOBAL_RESAMPLE_SHARE))) if n_boot else 0
    stat = global_interval(original, randomised, mask, n, seed, f"{method}:global")
    free = global_interval(original, edges, mask, n, seed, f"{method}:global_free")
    passes = _below(stat, unrelated) if decided else None
    if decided and passes is None:
        where = f"too few images for an interval: {where}"
    v = Verdict("global", passes, stat, signed, unrelated, free, ssim_value)
    v.line = _line(method, "global", v, where)
    return v
