"""Group difference maps: where does the evidence of two groups of images differ, with a permutation test.

The statistic at each pixel is the difference of the groups' mean image-wise maps. Its null distribution comes from
permuting the group labels of the images (≥ 1,000 permutations); every permutation's difference map is one row of a
matrix product ``W @ X`` (``W``: one row of ±1/n_group weights per permutation, ``X``: the centred maps as
``(n_images, n_pixels)``), so the test runs as a few batched matmuls on any torch device. Two corrections for the
number of pixels are reported: Benjamini-Hochberg FDR (:func:`benjamini_hochberg`) and the family-wise max-statistic
(each permutation's largest |difference| over pixels).

Notes
-----
* Two-sided test of |difference|; p = (1 + #{permutations with |d*| ≥ |d|}) / (1 + n_permutations), which never
  reaches 0 and is valid for random (not exhaustive) permutations (Phipson & Smyth 2010). Permuted statistics that
  equal the observed one within rounding (``64·eps·max|X|``) count as exceeding it (the conservative side).
* Pixels whose value is the same in every image (outside the field of view) cannot differ; they get p = 1 and are
  left out of the family that the corrections count (the issue is silent; counting them would only make BH
  stricter).
* Permuting labels assumes images are exchangeable between groups under the null (e.g. one image per patient);
  with several images per patient, permute patients instead (not implemented).
* A cancelled run returns the test with the permutations finished so far (still a valid, coarser test).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..batching import Cancelled
from ..control import RunControl

__all__ = [
    "TIE_EPS",
    "CompareResult",
    "GroupSplit",
    "benjamini_hochberg",
    "compare_groups",
    "draw_compare",
    "group_permutations",
    "significance_by_region",
    "split_groups",
]

#: Relative tie tolerance in units of the dtype's machine epsilon (see the module Notes).
TIE_EPS = 64


@dataclass
class GroupSplit:
    """Which images belong to group A (1), group B (0) or neither (-1).

    Attributes
    ----------
    assign : numpy.ndarray, (n,) int8
    names : tuple of str
        Names of group A and group B.
    description : str
    """

    assign: np.ndarray
    names: tuple[str, str]
    description: str = ""

    @property
    def n_a(self) -> int:
        return int((self.assign == 1).sum())

    @property
    def n_b(self) -> int:
        return int((self.assign == 0).sum())


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


@dataclass
class CompareResult:
    """Difference of two groups' mean image-wise maps and its permutation test.

    Attributes
    ----------
    difference : numpy.ndarray, (H, W)
        mean(group A) − mean(group B).
    mean_a, mean_b : numpy.ndarray, (H, W)
    p : numpy.ndarray, (H, W)
        Uncorrected permutation p-values (1 where untested).
    q : numpy.ndarray, (H, W)
        BH-adjusted p-values (NaN where untested).
    p_fwe : numpy.ndarray, (H, W)
        Family-wise (max-statistic) adjusted p-values.
    significant : numpy.ndarray, (H, W) uint8
        FDR-significant pixels: 1 where A > B, 2 where B > A, 0 elsewhere (a labels layer).
    significant_fwe : numpy.ndarray, (H, W) uint8
        Same coding, family-wise max-statistic at ``alpha``.
    split : GroupSplit
    n_permutations : int
        Permutations actually used.
    alpha : float
    tested : numpy.ndarray, (H, W) bool
    cancelled : bool
    by_region : list of dict, optional
        Where significant pixels lie, per region (:func:`significance_by_region`; set by the pipeline when it has
        a region image).
    """

    difference: np.ndarray
    mean_a: np.ndarray
    mean_b: np.ndarray
    p: np.ndarray
    q: np.ndarray
    p_fwe: np.ndarray
    significant: np.ndarray
    significant_fwe: np.ndarray
    split: GroupSplit
    n_permutations: int
    alpha: float
    tested: np.ndarray
    cancelled: bool = False
    metadata: dict = field(default_factory=dict)
    by_region: list | None = None

    @property
    def neg_log10_p(self) -> np.ndarray:
        return -np.log10(self.p)

    def summary(self) -> dict:
        n_sig = int((self.significant > 0).sum())
        return {
            "groups": list(self.split.names),
            "n_images": [self.split.n_a, self.split.n_b],
            "split": self.split.description,
            "n_permutations": self.n_permutations,
            "alpha": self.alpha,
            "n_pixels_tested": int(self.tested.sum()),
            "n_significant_fdr": n_sig,
            "n_significant_fdr_a_gt_b": int((self.significant == 1).sum()),
            "n_significant_fdr_b_gt_a": int((self.significant == 2).sum()),
            "n_significant_fwe": int((self.significant_fwe > 0).sum()),
            "min_p": float(self.p[self.tested].min()) if self.tested.any() else 1.0,
            "cancelled": self.cancelled,
            **self.metadata,
        }


def _code(sig: np.ndarray, diff: np.ndarray) -> np.ndarray:
    out = np.zeros(diff.shape, np.uint8)
    out[sig & (diff > 0)] = 1
    out[sig & (diff < 0)] = 2
    return out


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
    control: RunControl | None = None,
) -> CompareResult:
    """Per-pixel permutation test of the difference of two groups' mean image-wise maps.

    Parameters
    ----------
    maps : numpy.ndarray, (n, H, W)
        Image-wise maps (e.g. one label's maps of an explain run), one per image of ``split``.
    split : GroupSplit
        Images with ``assign == -1`` are left out.
    n_permutations : int
        Random permutations (the issue asks for ≥ 1,000).
    alpha : float
        Level of both corrections.
    seed : int
        Permutations are :func:`group_permutations` of the kept images' labels with this seed.
    device : str or torch.device
        Where the matmuls run (``"auto"`` picks CUDA/MPS when present).
    dtype : {"float32", "float64"}
    permutations_per_batch : int
        Permutations per matmul (the unit of progress and cancel).
    max_elements : int
        Cap on the elements of one ``(permutations, pixels)`` block (memory knob).
    control : RunControl, optional
        Progress (stage ``"permutations"``, one step per batch) and cancel, checked before each batch.

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
    n_a, n_b = int(labels.sum()), int((1 - labels).sum())
    is_a = torch.as_tensor(labels == 1, device=dev)
    mean_a = x[is_a].mean(0)
    mean_b = x[~is_a].mean(0)
    tested = x.amax(0) > x.amin(0)
    if not bool(tested.all()):
        x = x[:, tested]
    elif borrowed:
        x = x.clone()
    x -= x.mean(0, keepdim=True)  # centring is exact (weights sum to 0) and cuts rounding
    n_pix = x.shape[1]

    def weights(lab: np.ndarray) -> torch.Tensor:
        lab_t = torch.as_tensor(lab, device=dev, dtype=tdtype)
        return lab_t / n_a - (1 - lab_t) / n_b

    observed = (weights(labels[None]) @ x)[0].abs()
    tie = TIE_EPS * torch.finfo(tdtype).eps * float(x.abs().max()) if n_pix else 0.0
    threshold = observed - tie
    exceed = torch.zeros(n_pix, dtype=torch.int64, device=dev)
    max_null = []
    perms = group_permutations(labels, n_permutations, seed)
    per_batch = max(1, min(int(permutations_per_batch), n_permutations))
    pix_chunk = max(1, int(max_elements) // per_batch)
    done = 0
    cancelled = False
    control = control or RunControl()
    for start in range(0, n_permutations, per_batch):
        if control.cancelled():
            cancelled = True
            break
        wb = weights(perms[start : start + per_batch])
        batch_max = torch.zeros(len(wb), dtype=tdtype, device=dev)
        for p0 in range(0, n_pix, pix_chunk):
            d = (wb @ x[:, p0 : p0 + pix_chunk]).abs_()
            exceed[p0 : p0 + pix_chunk] += (d >= threshold[p0 : p0 + pix_chunk]).sum(0)
            batch_max = torch.maximum(batch_max, d.amax(1))
        max_null.append(batch_max)
        done += len(wb)
        control.report(done, n_permutations, "permutations")
    if done == 0:
        raise Cancelled("cancelled before any permutation finished")
    max_null_t = torch.cat(max_null) if max_null else torch.zeros(0, dtype=tdtype, device=dev)
    sorted_null = torch.sort(max_null_t).values
    fwe_count = len(sorted_null) - torch.searchsorted(sorted_null, threshold.contiguous(), right=False)
    p_t = (1.0 + exceed.double()) / (1.0 + done)
    pfwe_t = (1.0 + fwe_count.double()) / (1.0 + done)
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


def draw_compare(fig, result: CompareResult, anatomy: np.ndarray | None = None):
    """Difference map (diverging colormap, symmetric) and −log10 p with the FDR mask outlined, into ``fig``.

    Returns
    -------
    list of matplotlib.axes.Axes
    """
    fig.clear()
    axes = fig.subplots(1, 2)
    lim = float(np.nanmax(np.abs(result.difference))) or 1.0
    if anatomy is not None:
        from ..figures import anatomy_rgb

        axes[0].imshow(anatomy_rgb(anatomy).mean(-1), cmap="gray")
    im = axes[0].imshow(
        result.difference, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.85 if anatomy is not None else 1.0
    )
    fig.colorbar(im, ax=axes[0], fraction=0.04)
    a, b = result.split.names
    axes[0].set_title(f"mean({a}) − mean({b})", fontsize=9)
    im = axes[1].imshow(result.neg_log10_p, cmap="magma")
    fig.colorbar(im, ax=axes[1], fraction=0.04)
    if (result.significant > 0).any():
        axes[1].contour(result.significant > 0, levels=[0.5], colors="cyan", linewidths=0.8)
    axes[1].set_title(f"−log10 p ({result.n_permutations} permutations); cyan: FDR {result.alpha:g}", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return list(axes)
