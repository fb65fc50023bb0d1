"""Group difference maps: where does the evidence of two groups of images differ, with a permutation test.

The statistic at each pixel is the difference of the groups' mean image-wise maps (maps prepared, and smoothed, by
:mod:`.compare_normalise`). Its null distribution comes from permuting the group labels of the images; every
permutation's difference map is one row of a matrix product ``W @ X`` (``W``: one row of ±1/n_group weights per
permutation, ``X``: the centred maps as ``(n_images, n_pixels)``), so the test runs as a few batched matmuls on any
torch device. Two corrections for the number of pixels are reported: Benjamini-Hochberg FDR
(:func:`benjamini_hochberg`) and the family-wise max-statistic (each permutation's largest |difference|).

Notes
-----
* Two-sided test of |difference|; p = (1 + #{permutations with |d*| ≥ |d|}) / (1 + n_permutations), which never
  reaches 0 and is valid for random (not exhaustive) permutations (Phipson & Smyth 2010). When the number of distinct
  splits is at most ``n_permutations`` every split is enumerated and p = #{splits with |d*| ≥ |d|} / #splits is exact.
* Ties, per pixel: a permuted statistic equal to the observed one within the rounding of that pixel's own values
  (``TIE_EPS · eps · max_i |x_i − mean x|``) counts as exceeding it (the conservative side). One tolerance for all
  pixels (scaled by the largest value anywhere) would swallow faint pixels whole and give them p = 1.
* The p-floor: no p is below ``1/(1 + B)`` with ``B`` permutations, so BH can only declare clusters of at least
  ``m · floor / alpha`` pixels (:func:`~.compare_result.fdr_min_pixels`; m = tested pixels): with 1,000 permutations
  and 130,000 pixels, at least 2,600. Where the floor binds (fewer than :data:`REFINE_BELOW` permutations reached a
  pixel's statistic), those pixels get 10× more permutations, stage after stage, up to ``max_permutations``
  (adaptive permutation as in Besag & Clifford 1991: a pixel is refined only while its count is below the bar, so a
  pixel's p is never below what its first stage allowed unless the later stages confirm it). A stage runs only while
  it can change the FDR map: once the pixels below the bar are so many that BH declares all of them anyway
  (``n_low · alpha / m ≥ (REFINE_BELOW + 1) / (1 + B)``), it stops. The family-wise max-statistic uses the first
  stage, where every pixel was tested.
* Pixels whose value is the same in every image (outside the field of view) cannot differ; they get p = 1 and are
  left out of the family that the corrections count.
* Permuting labels assumes images are exchangeable between groups under the null (e.g. one image per patient);
  with several images per patient, permute patients instead (not implemented).
* A cancelled run returns the test with the permutations finished so far (still a valid, coarser test).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..batching import Cancelled
from ..control import RunControl
from .compare_result import CompareResult, GroupSplit

__all__ = [
    "REFINE_BELOW",
    "TIE_EPS",
    "all_splits",
    "benjamini_hochberg",
    "compare_groups",
    "group_permutations",
    "significance_by_region",
    "split_groups",
]

#: Relative tie tolerance in units of the dtype's machine epsilon, per pixel (see the module Notes).
TIE_EPS = 64
#: A pixel is refined (given 10× more permutations) while fewer permutations than this reached its statistic.
REFINE_BELOW = 10


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return str(value).strip().lower() in ("", "na", "nan", "none", "null")


def split_groups(values, groups=None, threshold: float | None = None, column: str = "") -> GroupSplit:
    """Split images into two groups by a metadata column.

    Parameters
    ----------
    values : sequence, (n,)
        One value per image (strings or numbers; empty / NA = no group).
    groups : (str, str), optional
        Categorical: the values forming group A and group B; B may be ``"rest"`` (every other non-missing value).
        Default: the two levels when there are exactly two (sorted; A = the second, so a 0/1 label column gives
        A = positives).
    threshold : float, optional
        Numeric split: A = values > threshold, B = values ≤ threshold. Used automatically (at the median) for a
        numeric column with more than two distinct values.
    column : str
        Column name, for messages.

    Returns
    -------
    GroupSplit

    Raises
    ------
    ValueError
        Unknown group values, a column with more than two levels and no choice, or a group with fewer than 2 images.
    """
    vals = list(values)
    missing = np.array([_is_missing(v) for v in vals])
    text = [str(v).strip() for v in vals]
    numbers = None
    try:
        numbers = np.array([np.nan if m else float(t) for m, t in zip(missing, text)])
    except ValueError:
        pass
    levels = sorted({t for t, m in zip(text, missing) if not m})
    assign = np.full(len(vals), -1, np.int8)
    name = column or "column"
    if threshold is None and groups is None and numbers is not None and len(levels) > 2:
        threshold = float(np.nanmedian(numbers))
    if threshold is not None:
        if numbers is None:
            raise ValueError(f"{name}: a threshold needs numeric values; found e.g. {levels[:5]}")
        ok = ~missing
        assign[ok & (numbers > threshold)] = 1
        assign[ok & (numbers <= threshold)] = 0
        split = GroupSplit(
            assign, (f"{name} > {threshold:g}", f"{name} ≤ {threshold:g}"), f"{name} split at {threshold:g}"
        )
    else:
        if groups is None:
            if len(levels) != 2:
                raise ValueError(
                    f"{name} has {len(levels)} levels {levels[:10]}; choose two groups (or a group and 'rest')"
                )
            groups = (levels[1], levels[0])
        a, b = (str(g) for g in groups)
        for g in (a,) if b == "rest" else (a, b):
            if g not in levels:
                raise ValueError(f"{name}: no image has the value {g!r}; values present: {levels[:20]}")
        is_a = np.array([t == a for t in text]) & ~missing
        is_b = (~missing & ~is_a) if b == "rest" else (np.array([t == b for t in text]) & ~missing)
        assign[is_a] = 1
        assign[is_b] = 0
        split = GroupSplit(
            assign, (f"{name}={a}", f"{name}={b}" if b != "rest" else f"{name}≠{a}"), f"{name}: {a} vs {b}"
        )
    if split.n_a < 2 or split.n_b < 2:
        raise ValueError(f"{split.description}: groups of {split.n_a} and {split.n_b} images; each needs ≥ 2")
    return split


def group_permutations(labels: np.ndarray, n_permutations: int, seed: int = 0) -> np.ndarray:
    """Random permutations of group labels, ``(n_permutations, m)`` (row ``k`` = the labels of permutation ``k``)."""
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.asarray(labels), (int(n_permutations), 1)), axis=1)


def benjamini_hochberg(p: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg step-up procedure (``scipy.stats.false_discovery_control``) over the tested p-values.

    Parameters
    ----------
    p : numpy.ndarray
        p-values of the family (any shape; NaN = not tested, never significant).
    alpha : float
        FDR level.

    Returns
    -------
    significant : numpy.ndarray of bool, like ``p``
    q : numpy.ndarray, like ``p``
        BH-adjusted p-values (NaN where not tested).
    """
    from scipy.stats import false_discovery_control

    p = np.asarray(p, np.float64)
    flat = p.ravel()
    tested = np.isfinite(flat)
    q = np.full(flat.shape, np.nan)
    if tested.any():
        q[tested] = false_discovery_control(flat[tested], method="bh")
    sig = np.zeros(flat.shape, bool)
    sig[tested] = q[tested] <= alpha
    return sig.reshape(p.shape), q.reshape(p.shape)


def _code(sig: np.ndarray, diff: np.ndarray) -> np.ndarray:
    out = np.zeros(diff.shape, np.uint8)
    out[sig & (diff > 0)] = 1
    out[sig & (diff < 0)] = 2
    return out


def all_splits(labels: np.ndarray, limit: int) -> np.ndarray | None:
    """Every distinct assignment of ``labels``' group sizes, ``(C(m, n_a), m)``, or None when there are more than
    ``limit``."""
    m, n_a = len(labels), int(np.sum(labels))
    if math.comb(m, n_a) > limit:
        return None
    rows = np.zeros((math.comb(m, n_a), m), np.int64)
    for k, idx in enumerate(itertools.combinations(range(m), n_a)):
        rows[k, list(idx)] = 1
    return rows


class _Counter:
    """Counts, per pixel, the permutations whose |difference| reaches the observed one (batched matmuls)."""

    def __init__(self, x, labels, dev, tdtype, per_batch, max_elements, control):
        import torch

        self.torch, self.x, self.dev, self.tdtype, self.control = torch, x, dev, tdtype, control
        self.n_a, self.n_b = int(labels.sum()), int((1 - labels).sum())
        self.per_batch, self.max_elements = per_batch, max_elements
        self.observed = (self.weights(labels[None]) @ x)[0].abs()
        # per-pixel tie tolerance: the rounding of the pixel's own (centred) values
        tie = TIE_EPS * torch.finfo(tdtype).eps * x.abs().amax(0) if x.shape[1] else 0.0
        self.threshold = self.observed - tie

    def weights(self, lab: np.ndarray):
        lab_t = self.torch.as_tensor(lab, device=self.dev, dtype=self.tdtype)
        return lab_t / self.n_a - (1 - lab_t) / self.n_b

    def run(self, perms: np.ndarray, pixels=None, stage: str = "permutations"):
        """``(exceed counts, per-permutation max or None, permutations done, cancelled)`` on ``pixels`` (all: None)."""
        torch = self.torch
        x = self.x if pixels is None else self.x[:, pixels]
        thr = self.threshold if pixels is None else self.threshold[pixels]
        n_pix, n_perm = x.shape[1], len(perms)
        exceed = torch.zeros(n_pix, dtype=torch.int64, device=self.dev)
        per_batch = max(1, min(int(self.per_batch), n_perm))
        pix_chunk = max(1, int(self.max_elements) // per_batch)
        maxes, done = [], 0
        for start in range(0, n_perm, per_batch):
            if self.control.cancelled():
                return exceed, maxes, done, True
            wb = self.weights(perms[start : start + per_batch])
            batch_max = torch.zeros(len(wb), dtype=self.tdtype, device=self.dev)
            for p0 in range(0, n_pix, pix_chunk):
                d = (wb @ x[:, p0 : p0 + pix_chunk]).abs_()
                exceed[p0 : p0 + pix_chunk] += (d >= thr[p0 : p0 + pix_chunk]).sum(0)
                if pixels is None:
                    batch_max = torch.maximum(batch_max, d.amax(1))
            maxes.append(batch_max)
            done += len(wb)
            self.control.report(done, n_perm, stage)
        return exceed, maxes, done, False


def compare_groups(
    maps: np.ndarray,
    split: GroupSplit,
    n_permutations: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    device="cpu",
    dtype: str = "float32",
    permutations_per_batch: int = 250,
    max_elements: int = 2**26,
    *,
    max_permutations: int | None = None,
    control: RunControl | None = None,
) -> CompareResult:
    """Per-pixel permutation test of the difference of two groups' mean image-wise maps.

    Parameters
    ----------
    maps : numpy.ndarray, (n, H, W)
        Image-wise maps (as compared: :func:`.compare_normalise.prepare_maps`), one per image of ``split``.
    split : GroupSplit
        Images with ``assign == -1`` are left out.
    n_permutations : int
        Random permutations every pixel gets; when the distinct splits are no more, all of them (exact test).
    alpha : float
        Level of both corrections.
    seed : int
        Permutations are :func:`group_permutations` of the kept images' labels with this seed (stage ``s`` of the
        refinement: ``seed + s``).
    device : str or torch.device
        Where the matmuls run (``"auto"`` picks CUDA/MPS when present).
    dtype : {"float32", "float64"}
    permutations_per_batch : int
        Permutations per matmul (the unit of progress and cancel).
    max_elements : int
        Cap on the elements of one ``(permutations, pixels)`` block (memory knob).
    max_permutations : int, optional
        Refine the pixels where the p-floor binds (see the module Notes) up to this many permutations; None or
        ``≤ n_permutations``: no refinement.
    control : RunControl, optional
        Progress (stage ``"permutations"``, then ``"refining"``; one step per batch) and cancel, checked before each
        batch.

    Returns
    -------
    CompareResult

    Raises
    ------
    ValueError
        Maps and split of different lengths, or fewer than 1 permutation.
    Cancelled
        When cancelled before the first batch of permutations finished.
    """
    import torch

    from ..models.device import resolve_device

    maps = np.asarray(maps)
    if maps.ndim != 3 or len(maps) != len(split.assign):
        raise ValueError(f"maps {maps.shape} and {len(split.assign)} group assignments do not match")
    if n_permutations < 1:
        raise ValueError("n_permutations must be ≥ 1")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    keep = np.nonzero(split.assign >= 0)[0]
    labels = split.assign[keep].astype(np.int64)
    h, w = maps.shape[1:]
    dev = resolve_device(device)
    tdtype = getattr(torch, dtype)
    kept = maps if len(keep) == len(maps) else maps[keep]
    flat = np.ascontiguousarray(kept.reshape(len(keep), -1))
    borrowed = np.shares_memory(flat, maps) or not flat.flags.writeable  # the caller's memory: never write to it
    if not flat.flags.writeable:
        flat = flat.copy()
    x = torch.as_tensor(flat, device=dev).to(tdtype)
    borrowed = borrowed and x.device.type == "cpu" and flat.dtype == np.dtype(dtype)
    is_a = torch.as_tensor(labels == 1, device=dev)
    mean_a = x[is_a].mean(0)
    mean_b = x[~is_a].mean(0)
    tested = x.amax(0) > x.amin(0)
    if not bool(tested.all()):
        x = x[:, tested]
    elif borrowed:
        x = x.clone()
    x -= x.mean(0, keepdim=True)  # centring is exact (weights sum to 0) and cuts rounding
    control = control or RunControl()
    counter = _Counter(x, labels, dev, tdtype, permutations_per_batch, max_elements, control)
    splits = all_splits(labels, n_permutations)
    exact = splits is not None
    perms = splits if exact else group_permutations(labels, n_permutations, seed)
    exceed, maxes, done, cancelled = counter.run(perms)
    if done == 0:
        raise Cancelled("cancelled before any permutation finished")
    seen = torch.full_like(exceed, done)
    n_refined, deepest = 0, done
    stage = 0
    while not (exact or cancelled) and max_permutations and deepest < max_permutations:
        active = torch.nonzero(exceed < REFINE_BELOW).ravel()
        # BH already declares every such pixel when this many sit below the bar: more permutations change nothing
        if len(active) == 0 or len(active) * alpha / len(exceed) >= (REFINE_BELOW + 1) / (deepest + 1):
            break
        stage += 1
        more = min(9 * deepest, int(max_permutations) - deepest)
        add, _, add_done, cancelled = counter.run(group_permutations(labels, more, seed + stage), active, "refining")
        exceed[active] += add
        seen[active] += add_done
        n_refined = max(n_refined, len(active))
        deepest += add_done
    sorted_null = torch.sort(torch.cat(maxes)).values
    fwe_count = len(sorted_null) - torch.searchsorted(sorted_null, counter.threshold.contiguous(), right=False)
    if exact:
        p_t, pfwe_t = exceed.double() / done, fwe_count.double() / done
    else:
        p_t, pfwe_t = (1.0 + exceed.double()) / (1.0 + seen.double()), (1.0 + fwe_count.double()) / (1.0 + done)
    tested_np = tested.cpu().numpy().reshape(h, w)
    p = np.ones(h * w)
    p[tested_np.ravel()] = p_t.cpu().numpy()
    p_fwe = np.ones(h * w)
    p_fwe[tested_np.ravel()] = pfwe_t.cpu().numpy()
    p, p_fwe = p.reshape(h, w), p_fwe.reshape(h, w)
    ma, mb = mean_a.double().cpu().numpy().reshape(h, w), mean_b.double().cpu().numpy().reshape(h, w)
    diff = ma - mb
    sig, q = benjamini_hochberg(np.where(tested_np, p, np.nan), alpha)
    return CompareResult(
        diff,
        ma,
        mb,
        p,
        q,
        p_fwe,
        _code(sig, diff),
        _code(tested_np & (p_fwe <= alpha), diff),
        split,
        done,
        float(alpha),
        tested_np,
        cancelled,
        {"seed": int(seed), "dtype": dtype, "device": str(dev)},
        exact=exact,
        max_permutations=deepest,
        n_refined=n_refined,
    )


def significance_by_region(
    result: CompareResult, regions: np.ndarray, names: dict[int, str] | None = None, which: str = "fdr"
) -> list[dict]:
    """Where the significant pixels lie: count and share per region, split by direction.

    Parameters
    ----------
    result : CompareResult
    regions : numpy.ndarray, (H, W) int
        Region label image (e.g. :func:`napari_global_xai.analyses.regions.build_regions`).
    names : dict int -> str, optional
    which : {"fdr", "fwe"}

    Returns
    -------
    list of dict
        One row per region id present: ``region``, ``n_significant``, ``share_of_significant``,
        ``n_a_gt_b``, ``n_b_gt_a``, ``share_of_region`` (significant pixels / region pixels).
    """
    from .regions import REGION_NAMES

    regions = np.asarray(regions)
    if regions.shape != result.difference.shape:
        raise ValueError(f"region image {regions.shape} does not match the maps {result.difference.shape}")
    names = names or {i + 1: n for i, n in enumerate(REGION_NAMES)}
    sig = result.significant if which == "fdr" else result.significant_fwe
    total = int((sig > 0).sum())
    rows = []
    for rid in np.unique(regions):
        inside = regions == rid
        n = int((sig[inside] > 0).sum())
        rows.append(
            {
                "region": names.get(int(rid), "unassigned" if rid == 0 else f"region_{int(rid)}"),
                "id": int(rid),
                "n_significant": n,
                "share_of_significant": n / total if total else 0.0,
                "n_a_gt_b": int((sig[inside] == 1).sum()),
                "n_b_gt_a": int((sig[inside] == 2).sum()),
                "share_of_region": n / int(inside.sum()),
            }
        )
    return sorted(rows, key=lambda r: -r["n_significant"])
