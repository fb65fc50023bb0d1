"""What the group comparison compares: the maps as attributions (``raw``) or as shares of each image's evidence
(``shares``), what a "lower" pixel means under each, and the test of the total evidence. Torch-free.

Why this matters: an explain run normalises every image-wise map to sum 1 by default (``normalisation="mass"``), so
a group that concentrates its evidence in one region must show *less* everywhere else. Compared pixel by pixel, such
maps report "the other group higher" all over the image although nothing differs there: on the planted-truth sample
(Grad-CAM, haemorrhage positives vs negatives) 121 family-wise and 6,712 FDR pixels outside the planted region were
"negatives higher", against 0 under random splits (``benchmarks/bench_compare.py``, ``benchmarks/RESULTS.md``).

* ``raw`` (default): the attributions as the explain method made them (the run's ``--normalisation none``). A pixel
  where B is higher is one where B's images carry more attribution on average, in the method's units. A difference
  in total evidence shows wherever both groups have evidence; :func:`total_evidence` tests it separately. Maps
  normalised per image (each summing, or peaking, at the same value) are refused: they cannot carry that meaning.
* ``shares``: each map divided by its total |attribution| (any stored normalisation gives the same shares). A pixel
  where B is higher holds a larger share of B's evidence; since shares sum to 1, a group that concentrates its
  evidence shows lower shares everywhere else by construction, so "lower" pixels say where the *other* group's
  evidence is not, not that anything differs there.

Smoothing (:func:`smooth_maps`, ``CompareConfig.smooth_sigma``): every map, of both groups, is smoothed with the same
Gaussian before the test (default σ = :data:`~napari_global_xai.analysis_config.COMPARE_SMOOTH_FRACTION` of the
shorter side, 8 px on 384 × 512 maps). Pixel-level maps such as Integrated Gradients' are noisy and heavy-tailed
(median per-pixel kurtosis 9 on the sample), and the family-wise max-statistic's bar is set by the few pixels whose
values swing most between images: unsmoothed IG maps of the sample found no family-wise pixel in three of the four
planted regions. Averaging each pixel with its neighbourhood takes the weight off those pixels and matches the test
to effects the size of a lesion field (and to residual misalignment); the price is resolution (a difference narrower
than about 2σ is spread and weakened; the difference map is that of the smoothed maps). On the sample, smoothed IG
maps find every planted region family-wise and Grad-CAM keeps its result (no family-wise pixel beyond 32 px of the
region; σ 12 px put three there, hence 8). A studentised statistic (Welch t, max-|t|), tried instead, declared faint
but consistent differences far from the regions (``benchmarks/bench_compare.py --welch``, ``benchmarks/RESULTS.md``).

A centred log-ratio of the shares (and a log-ratio to each map's median) was tried and rejected: the pseudo-count
that zero pixels need makes faint pixels dominate, and on the sample they declared thousands of pixels outside the
planted regions in both directions (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = [
    "MEANINGS",
    "detect_normalisation",
    "prepare_maps",
    "raw_refusal",
    "smooth_maps",
    "smoothing_sigma",
    "smoothing_text",
    "total_evidence",
]

#: What "A higher" / "B higher" means under each choice of ``CompareConfig.normalisation``.
MEANINGS = {
    "raw": (
        "attributions as the method made them (explain --normalisation none): a pixel where a group is lower is one "
        "where its images carry less attribution on average; a difference in total evidence (tested separately) "
        "shows wherever both groups have evidence"
    ),
    "shares": (
        "each map divided by its total: a pixel where a group is lower holds a smaller share of that group's "
        "evidence; shares sum to 1, so a group that concentrates its evidence elsewhere is lower here by "
        "construction, whether or not anything differs here"
    ),
}

_SAME = 1e-3  # relative spread of per-image totals (or maxima) below which maps count as normalised per image


def detect_normalisation(maps: np.ndarray) -> str | None:
    """``"mass"`` when every map has the same total |value|, ``"max"`` when every map has the same largest |value|
    (within 0.1 %, float16 storage included), else None (all-zero maps and single maps: None)."""
    flat = np.abs(np.asarray(maps, np.float64).reshape(len(maps), -1))
    for name, values in (("mass", flat.sum(1)), ("max", flat.max(1))):
        values = values[values > 0]
        if len(values) >= 2 and values.max() - values.min() <= _SAME * values.max():
            return name
    return None


def raw_refusal(normalisation: str) -> str:
    """The one line that refuses per-image normalised maps for the ``raw`` comparison."""
    return (
        f"the image-wise maps were normalised per image ({normalisation!r}: every map has the same "
        f"{'total' if normalisation == 'mass' else 'maximum'}), so a group that concentrates its evidence would look "
        "lower everywhere else; run 'global-xai explain ... --normalisation none --map-dtype float32' for the maps "
        "to compare (un-normalised values are small: float16 would round the faint ones), or compare shares of each "
        "map's evidence with --maps-as shares"
    )


def prepare_maps(maps: np.ndarray, normalisation: str = "raw", stored: str | None = None) -> np.ndarray:
    """The maps as compared under ``normalisation`` (float32).

    Parameters
    ----------
    maps : numpy.ndarray, (n, H, W)
    normalisation : {"raw", "shares"}
    stored : {"mass", "max", "none"}, optional
        The explain run's per-image normalisation when known (its provenance); otherwise read from the maps
        (:func:`detect_normalisation`).

    Raises
    ------
    InputError
        ``raw`` on maps normalised per image (:func:`raw_refusal`).
    ValueError
        An unknown ``normalisation``.
    """
    if normalisation not in MEANINGS:
        raise ValueError(f"normalisation must be one of {tuple(MEANINGS)}, not {normalisation!r}")
    maps = np.asarray(maps)
    if normalisation == "raw":
        found = stored if stored in ("mass", "max") else detect_normalisation(maps)
        if found is not None:
            raise InputError(raw_refusal(found))
        return maps.astype(np.float32, copy=False)
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    total = np.abs(flat).sum(1, keepdims=True)
    return (flat / np.where(total > 0, total, 1.0)).astype(np.float32).reshape(maps.shape)


def smoothing_sigma(shape, sigma: float | None = None) -> float:
    """The σ (pixels) maps of ``shape`` (``(..., H, W)``) are smoothed with: ``sigma``, or by default
    :data:`~napari_global_xai.analysis_config.COMPARE_SMOOTH_FRACTION` of the shorter side."""
    from ..analysis_config import COMPARE_SMOOTH_FRACTION

    return COMPARE_SMOOTH_FRACTION * min(shape[-2:]) if sigma is None else float(sigma)


def smoothing_text(sigma: float) -> str:
    """The smoothing in a few words, for the terminal, the dock and the report."""
    return f"smoothed with a Gaussian of σ {sigma:.3g} px" if sigma > 0 else "not smoothed"


def smooth_maps(maps: np.ndarray, sigma: float, control=None) -> np.ndarray:
    """Every map smoothed with the same Gaussian of ``sigma`` pixels (float32, a new array; ``sigma`` 0: the maps).

    Parameters
    ----------
    maps : numpy.ndarray, (n, H, W)
    sigma : float
        σ in pixels (:func:`smoothing_sigma`); edges mirrored (``scipy.ndimage.gaussian_filter``, ``reflect``).
    control : RunControl, optional
        Cancel, checked before each map (no progress: a map takes milliseconds, the test that follows reports).

    Raises
    ------
    Cancelled
        When cancelled (nothing of the test has run yet).
    """
    if sigma <= 0:
        return maps
    from scipy import ndimage

    from ..control import Cancelled

    out = np.empty(np.shape(maps), np.float32)
    for i in range(len(out)):
        if control is not None and control.cancelled():
            raise Cancelled("cancelled while smoothing the maps")
        ndimage.gaussian_filter(np.asarray(maps[i], np.float32), sigma, output=out[i])
    return out


def total_evidence(maps: np.ndarray, split, normalisation: str, n_permutations: int, seed: int = 0) -> dict:
    """Permutation test of the groups' mean total |attribution| per image (``raw`` only).

    Returns
    -------
    dict
        ``mean_a``, ``mean_b``, ``ratio`` (A / B) and ``p`` (two-sided, exact when the splits are few); for
        ``shares`` only a ``note`` (every map's total is 1).
    """
    if normalisation != "raw":
        return {"note": "not tested: every map's shares sum to 1 (compare raw attributions to test it)"}
    from .compare import compare_groups

    totals = np.abs(np.asarray(maps, np.float64)).reshape(len(maps), -1).sum(1)
    test = compare_groups(totals[:, None, None], split, n_permutations, seed=seed, dtype="float64")
    mean_a, mean_b = float(test.mean_a[0, 0]), float(test.mean_b[0, 0])
    return {
        "mean_a": mean_a,
        "mean_b": mean_b,
        "ratio": mean_a / mean_b if mean_b else None,
        "p": float(test.p[0, 0]),
    }
