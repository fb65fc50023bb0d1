"""Sanity check by model-parameter randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps").

A map that explains the model must change when the model's weights are destroyed. The check recomputes the
image-wise maps of a few images while the layers are re-initialised one after another from the output down
(*cascading*), and optionally one layer at a time (*independent*), and compares every recomputed map with the
original: Spearman rank correlation, SSIM of the min-max normalised maps, and the same two for the *global* map (the
mean of the sample's maps). A method whose fully randomised maps still correlate with the originals is flagged.

Notes
-----
* Layers are the modules that own parameters, grouped by the first ``depth`` components of their name (``None``:
  every such module on its own), ordered by when they first run in a forward pass; randomisation goes from the last
  to run (the output layer) down.
* Re-initialisation: a module's own ``reset_parameters()`` (PyTorch's default initialisation; batch-norm also resets
  its running statistics) under a seeded generator; a parameter of a module without one is redrawn from a seeded
  normal with the parameter's own standard deviation (0.01 when it is constant). The model is deep-copied to the
  CPU for this, so the original is never touched and the draw does not depend on the device.
* The explained output of each image is fixed before randomising (the label asked for, else the original model's
  most probable label), so every step explains the same output.
* SSIM compares maps scaled to [0, 1] between their minimum and 99th percentile (clipped above): saliency maps
  are heavy-tailed, and a plain min-max scaling squeezes almost every pixel to ~0 in both maps, so SSIM stays
  near 1 whatever the maps show (measured: 0.97 for fully randomised IG maps). Adebayo et al. normalise to
  [0, 1] without saying how.
* Similarities are computed inside the field of view when the pipeline finds one (pixels outside it are zero in
  every map of an input-multiplying method whatever the weights, and such shared ties inflate ρ: measured 0.19
  over the whole image vs. lower inside the field of view for fully randomised IG maps); Adebayo et al. use the
  whole image of natural photographs, which have no such border.
* Spearman ρ of a map that became constant is 0 (it ranks nothing); of an original constant map, NaN.
* Verdict threshold: Adebayo et al. give none; a method *passes* when the mean rank correlation of the fully
  randomised maps is below :data:`PASS_BELOW` (0.5), chosen half-way between "unchanged" (1) and "unrelated" (0).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from ..batching import Cancelled
from ..control import RunControl

__all__ = [
    "PASS_BELOW",
    "SanityResult",
    "draw_sanity",
    "minmax",
    "parameterised_layers",
    "randomise_layers",
    "run_sanity_check",
    "spearman",
    "ssim",
    "verdict",
]

PASS_BELOW = 0.5


def minmax(a: np.ndarray, upper: float = 99.0) -> np.ndarray:
    """Scale a map to [0, 1]: minimum → 0, the ``upper`` percentile → 1, clipped (a constant map becomes 0)."""
    a = np.asarray(a, np.float64)
    lo, hi = np.nanmin(a), np.nanpercentile(a, upper)
    if not hi > lo:
        hi = np.nanmax(a)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(a)


def spearman(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Spearman rank correlation of two maps over the pixels of ``mask`` (default all; average ranks for ties).

    ``scipy.stats.spearmanr``, with the two degenerate cases decided here: NaN when ``a`` is constant (nothing to
    compare against), 0 when only ``b`` is (a randomised map that lost all structure is uncorrelated).
    """
    from scipy.stats import spearmanr

    if mask is not None:
        a, b = np.asarray(a)[mask], np.asarray(b)[mask]
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0:
        return float("nan")
    if np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def ssim(
    a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = 1.5, mask: np.ndarray | None = None
) -> float:
    """Mean structural similarity (Wang et al. 2004) of two 2-D images, over ``mask`` when given.

    scikit-image's ``structural_similarity`` (Gaussian window σ = 1.5 truncated at 3.5 σ, population (co)variances,
    constants ``(0.01·data_range)²`` and ``(0.03·data_range)²``); its mean is over pixels at least half a window
    from the border, and this one over those of them inside ``mask`` (NaN for an image smaller than the window).
    """
    from skimage.metrics import structural_similarity

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim needs two 2-D images of one shape, got {a.shape} and {b.shape}")
    pad = int(3.5 * sigma + 0.5)  # half of scikit-image's window 2·⌊3.5σ + ½⌋ + 1
    if min(a.shape) <= 2 * pad:  # no pixel lies half a window from every border
        return float("nan")
    _, s = structural_similarity(
        a, b, data_range=data_range, gaussian_weights=True, sigma=sigma, use_sample_covariance=False, full=True
    )
    inner = np.zeros(s.shape, bool)
    inner[pad : s.shape[0] - pad, pad : s.shape[1] - pad] = True
    if mask is not None:
        inner &= np.asarray(mask, bool)
    return float(s[inner].mean())


def parameterised_layers(module, example, depth: int | None = None) -> list[tuple[str, list[str]]]:
    """Layers of a model in forward order: ``[(layer name, [module names])]``.

    Parameters
    ----------
    module : torch.nn.Module
    example : torch.Tensor
        One input for a forward pass (order of execution).
    depth : int, optional
        Group modules by the first ``depth`` name components (``1``: top-level children); None: each module that
        owns parameters is a layer.
    """
    import torch

    owners = [name for name, m in module.named_modules() if any(True for _ in m.parameters(recurse=False))]
    first: dict[str, int] = {}
    hooks = []
    for name in owners:

        def hook(_m, _i, _o, name=name):
            first.setdefault(name, len(first))

        hooks.append(module.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    ordered = sorted(owners, key=lambda n: first.get(n, len(first) + owners.index(n)))
    layers: dict[str, list[str]] = {}
    for name in ordered:
        key = name if depth is None else ".".join(name.split(".")[:depth]) or name
        layers.setdefault(key or "(root)", []).append(name)
    return list(layers.items())


def randomise_layers(module, names, seed: int) -> None:
    """Re-initialise the parameters of the named sub-modules in place (see the module Notes)."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for name in names:
            sub = module.get_submodule(name)
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
                continue
            with torch.no_grad():
                for p in sub.parameters(recurse=False):
                    std = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.01
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


@dataclass
class SanityResult:
    """Similarity of recomputed maps to the original ones, per method and randomisation step.

    Attributes
    ----------
    methods : list of str
        One name per configuration (method, or method plus a suffix when a method appears twice).
    steps : list of str
        Cascading steps: ``"original"`` then the layers randomised so far, top down (the name of the layer added).
    spearman, ssim : dict str -> numpy.ndarray, (S, k)
        Per method: image-wise similarity at each cascading step (row 0: the original, 1 by definition).
    global_spearman, global_ssim : dict str -> numpy.ndarray, (S,)
        Similarity of the sample's global map to the original one.
    layers : list of str
        Layers in randomisation order (top down).
    independent_spearman, independent_ssim : dict str -> numpy.ndarray, (len(layers), k)
        Only that layer randomised (empty when not run).
    image_indices : list of int
    targets : list of str
        Explained label per image.
    verdicts : dict str -> str
    cancelled : bool
    """

    methods: list[str]
    steps: list[str]
    spearman: dict
    ssim: dict
    global_spearman: dict
    global_ssim: dict
    layers: list[str]
    independent_spearman: dict = field(default_factory=dict)
    independent_ssim: dict = field(default_factory=dict)
    image_indices: list[int] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    verdicts: dict = field(default_factory=dict)
    cancelled: bool = False
    original_maps: dict = field(default_factory=dict)

    def final_spearman(self, method: str) -> float:
        """Mean image-wise rank correlation at the last finished cascading step."""
        return float(np.nanmean(self.spearman[method][-1]))

    def to_rows(self) -> list[dict]:
        """Flat rows (method, mode, step, layer, metric means) for a CSV."""
        rows = []
        for m in self.methods:
            for s, step in enumerate(self.steps):
                rows.append(
                    {
                        "method": m,
                        "mode": "cascading",
                        "step": s,
                        "layer": step,
                        "spearman_mean": float(np.nanmean(self.spearman[m][s])),
                        "spearman_std": float(np.nanstd(self.spearman[m][s])),
                        "ssim_mean": float(np.nanmean(self.ssim[m][s])),
                        "global_spearman": float(self.global_spearman[m][s]),
                        "global_ssim": float(self.global_ssim[m][s]),
                    }
                )
            for j, layer in enumerate(self.layers[: len(self.independent_spearman.get(m, []))]):
                rows.append(
                    {
                        "method": m,
                        "mode": "independent",
                        "step": j + 1,
                        "layer": layer,
                        "spearman_mean": float(np.nanmean(self.independent_spearman[m][j])),
                        "spearman_std": float(np.nanstd(self.independent_spearman[m][j])),
                        "ssim_mean": float(np.nanmean(self.independent_ssim[m][j])),
                        "global_spearman": float("nan"),
                        "global_ssim": float("nan"),
                    }
                )
        return rows


def verdict(result: SanityResult, method: str, threshold: float = PASS_BELOW) -> str:
    """One line: does the method's map depend on the weights?"""
    rho = result.final_spearman(method)
    full = len(result.steps) - 1 == len(result.layers)
    where = (
        "all layers randomised"
        if full
        else f"{len(result.steps) - 1} of {len(result.layers)} layers randomised (cancelled)"
    )
    if not np.isfinite(rho):
        return f"{method}: undecided: the original maps are constant"
    if rho < threshold:
        return f"{method}: passes: maps change when weights are randomised (rank correlation {rho:.2f} with {where})"
    return (
        f"{method}: FAILS: maps barely change when weights are randomised (rank correlation {rho:.2f} ≥ "
        f"{threshold:g} with {where}); they do not explain this model"
    )


def _config_names(configs) -> list[str]:
    names, seen = [], {}
    for c in configs:
        seen[c.method] = seen.get(c.method, 0) + 1
        names.append(c.method if seen[c.method] == 1 else f"{c.method}#{seen[c.method]}")
    return names


def run_sanity_check(
    model,
    images: np.ndarray,
    configs,
    targets: np.ndarray,
    depth: int | None = None,
    independent: bool = False,
    seed: int = 0,
    mask: np.ndarray | None = None,
    *,
    control: RunControl | None = None,
) -> SanityResult:
    """Cascading (and independent) randomisation of a model; maps recomputed and compared at each step.

    Parameters
    ----------
    model : LoadedModel
    images : numpy.ndarray, (k, H, W, C)
        Harmonised raw images (the sample).
    configs : list of ExplainConfig
        One per method to check (method, parameters, reduction, normalisation).
    targets : numpy.ndarray, (k,) int
        Model output explained for each image.
    depth : int, optional
        Layer grouping (:func:`parameterised_layers`).
    independent : bool
        Also randomise each layer alone.
    seed : int
        Layer ``j`` (top down) is re-initialised with seed ``seed + j`` in both modes.
    mask : numpy.ndarray, (H, W) bool, optional
        Pixels compared (e.g. the field of view); default all.
    control : RunControl, optional
        Progress (stage ``"sanity"``, one step per method and model variant) and cancel.

    Returns
    -------
    SanityResult
        On cancel: the steps finished so far, ``cancelled=True`` (raises
        :class:`~napari_global_xai.batching.Cancelled` before the original maps are done).
    """
    from ..models.card import LoadedModel
    from ..saliency.engine import ImageMapEngine

    images = np.asarray(images)
    targets = np.asarray(targets, np.int64)
    if len(images) != len(targets) or len(images) == 0:
        raise ValueError(f"{len(images)} images and {len(targets)} targets: need one target per image, ≥ 1 image")
    names = _config_names(configs)
    base = copy.deepcopy(model.module).cpu()
    layers = parameterised_layers(base, model.preprocess(images[:1], device="cpu"), depth)[::-1]
    if not layers:
        raise ValueError("the model has no parameters to randomise")
    n_layers = len(layers)
    total = (1 + n_layers * (2 if independent else 1)) * len(configs)
    done = 0
    control = control or RunControl()
    all_targets = list(range(len(model.labels)))
    pairs = np.zeros((len(images), len(model.labels)), bool)
    pairs[np.arange(len(images)), targets] = True

    def maps_of(module):
        nonlocal done
        variant = LoadedModel(copy.deepcopy(module).to(model.device), model.card, model.device)
        out = {}
        for name, config in zip(names, configs):
            control.check("sanity check cancelled")
            engine = ImageMapEngine(variant, config, all_targets)
            computed = engine.compute(images, pairs, control=control)
            out[name] = computed[np.arange(len(images)), targets].astype(np.float64)
            done += 1
            control.report(done, total, "sanity")
        return out

    original = maps_of(base)
    orig_global = {m: original[m].mean(0) for m in names}

    def compare(maps):
        def norm(a):
            return minmax(a if mask is None else np.where(mask, a, np.nanmin(a[mask])))

        rho = {m: np.array([spearman(o, r, mask) for o, r in zip(original[m], maps[m])]) for m in names}
        ss = {m: np.array([ssim(norm(o), norm(r), mask=mask) for o, r in zip(original[m], maps[m])]) for m in names}
        g_rho = {m: spearman(orig_global[m], maps[m].mean(0), mask) for m in names}
        g_ss = {m: ssim(norm(orig_global[m]), norm(maps[m].mean(0)), mask=mask) for m in names}
        return rho, ss, g_rho, g_ss

    rho0, ss0, g0, gs0 = compare(original)
    result = SanityResult(
        names,
        ["original"],
        {m: [rho0[m]] for m in names},
        {m: [ss0[m]] for m in names},
        {m: [g0[m]] for m in names},
        {m: [gs0[m]] for m in names},
        [n for n, _ in layers],
        targets=[model.labels[t] for t in targets],
        original_maps=original,
    )
    if independent:
        result.independent_spearman = {m: [] for m in names}
        result.independent_ssim = {m: [] for m in names}
    try:
        cascade = copy.deepcopy(base)
        for j, (layer, members) in enumerate(layers):
            randomise_layers(cascade, members, seed + j)
            rho, ss, g_rho, g_ss = compare(maps_of(cascade))
            for m in names:
                result.spearman[m].append(rho[m])
                result.ssim[m].append(ss[m])
                result.global_spearman[m].append(g_rho[m])
                result.global_ssim[m].append(g_ss[m])
            result.steps.append(layer)
        if independent:
            for j, (_layer, members) in enumerate(layers):
                alone = copy.deepcopy(base)
                randomise_layers(alone, members, seed + j)
                rho, ss, _, _ = compare(maps_of(alone))
                for m in names:
                    result.independent_spearman[m].append(rho[m])
                    result.independent_ssim[m].append(ss[m])
    except Cancelled:
        result.cancelled = True
    for d in (result.spearman, result.ssim, result.independent_spearman, result.independent_ssim):
        for m in list(d):
            d[m] = np.array(d[m]).reshape(len(d[m]), len(images))
    for d in (result.global_spearman, result.global_ssim):
        for m in list(d):
            d[m] = np.array(d[m], np.float64)
    result.verdicts = {m: verdict(result, m) for m in names}
    return result


def draw_sanity(fig, result: SanityResult):
    """Similarity against the randomised layer, one line per method, into a figure the caller owns.

    Three panels: image-wise Spearman ρ (mean ± sd over the sample), image-wise SSIM, and Spearman ρ of the global
    map; cascading steps solid, independent randomisation dashed (image-wise panels only).

    Returns
    -------
    list of matplotlib.axes.Axes
    """
    fig.clear()
    axes = fig.subplots(1, 3, sharex=True)
    x = np.arange(len(result.steps))
    colours = [f"C{i}" for i in range(len(result.methods))]
    for m, colour in zip(result.methods, colours):
        for ax, data in ((axes[0], result.spearman[m]), (axes[1], result.ssim[m])):
            mean, sd = np.nanmean(data, axis=1), np.nanstd(data, axis=1)
            ax.plot(x, mean, "-o", color=colour, ms=3, label=m)
            ax.fill_between(x, mean - sd, mean + sd, color=colour, alpha=0.15, lw=0)
        axes[2].plot(x, result.global_spearman[m], "-o", color=colour, ms=3, label=m)
        for ax, d in ((axes[0], result.independent_spearman), (axes[1], result.independent_ssim)):
            if m in d and len(d[m]):
                ax.plot(
                    np.arange(1, len(d[m]) + 1),
                    np.nanmean(d[m], axis=1),
                    "--",
                    color=colour,
                    lw=1,
                    label=f"{m} (independent)" if ax is axes[0] else None,
                )
    titles = ("image-wise rank correlation", "image-wise SSIM", "global-map rank correlation")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_ylim(-0.3, 1.05)
        ax.set_xticks(x, result.steps, rotation=70, fontsize=7, ha="right")
        ax.set_xlabel("randomised down to layer (cascading)", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return list(axes)
