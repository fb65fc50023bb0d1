"""Sanity check by model-parameter randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps").

A map that explains the model must change when the model's weights are destroyed. The check recomputes the
image-wise maps of a sample of images while the layers are re-initialised one after another from the output down
(*cascading*), and one layer at a time (*independent*), and compares every recomputed map with the original:
Spearman rank correlation and SSIM, image by image and for the *global* map (the mean of the sample's maps). The
verdicts, image-wise and global, are relative to references computed in the same run (maps of unrelated image
pairs, a model-free edge map) with bootstrap intervals over the images: :mod:`.sanity_stats`.

Notes
-----
* Works on every model format (``nn.Module``, TorchScript, ``torch.export`` graph): layers are found, ordered and
  re-initialised through :mod:`napari_global_xai.models.taps` (:func:`~napari_global_xai.models.taps.submodule`,
  :func:`~napari_global_xai.models.taps.call_order`), never through module hooks or methods a format lacks.
* Layers are the modules that own parameters, grouped by the first ``depth`` components of their name (``None``:
  every such module on its own), ordered by where they run in a forward pass; randomisation goes from the last to
  run (the output layer) down.
* Re-initialisation, one rule for every format (so a TorchScript copy of a model gives the nn.Module's numbers):
  a weight of ≥ 2 dimensions is drawn from U(−1/√fan_in, 1/√fan_in) (PyTorch's default for convolutions and linear
  layers, ``kaiming_uniform_(a=√5)``) and its bias likewise; a 1-D ``weight`` (a normalisation's scale) becomes 1
  and its ``bias`` 0, and running statistics are reset (mean 0, variance 1); any other parameter is redrawn from a
  normal with the parameter's own standard deviation (0.01 when it is constant). Each parameter has its own seeded
  generator (seed and name), so the draw depends on neither the order of the parameters nor the device. The model
  is deep-copied to the CPU for this, so the original is never touched.
* The explained output of each image is fixed before randomising (the label asked for, else the original model's
  most probable label), so every step explains the same output.
* SSIM compares maps scaled to [0, 1] between their minimum and 99th percentile (clipped above): saliency maps
  are heavy-tailed, and a plain min-max scaling squeezes almost every pixel to ~0 in both maps, so SSIM stays
  near 1 whatever the maps show (measured: 0.97 for fully randomised IG maps). Adebayo et al. normalise to
  [0, 1] without saying how.
* Similarities are computed inside the field of view when the pipeline finds one (pixels outside it are zero in
  every map of an input-multiplying method whatever the weights, and such shared ties inflate ρ); Adebayo et al.
  use the whole image of natural photographs, which have no such border.
* Spearman ρ of a map that became constant is 0 (it ranks nothing); of an original constant map, NaN.
"""

from __future__ import annotations

import copy
import zlib

import numpy as np

from ..batching import Cancelled
from ..control import RunControl
from . import sanity_stats as stats
from .sanity_result import SanityResult

__all__ = [
    "minmax",
    "parameterised_layers",
    "randomise_layers",
    "run_sanity_check",
    "spearman",
    "ssim",
]


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
    """Layers of a model in forward order: ``[(layer name, [module names])]``, any format.

    Parameters
    ----------
    module : torch.nn.Module, TorchScript module or ``torch.export`` graph module
    example : torch.Tensor
        One input (an ``nn.Module`` runs it once to see the order of execution; graphs are read, not run).
    depth : int, optional
        Group modules by the first ``depth`` name components (``1``: top-level children); None: each module that
        owns parameters is a layer.
    """
    from ..models.taps import call_order

    owners = [name for name, m in module.named_modules() if any(True for _ in m.parameters(recurse=False))]
    order = call_order(module, example)
    after = max(order.values(), default=0) + 1  # the module itself, and layers that did not run, come last
    ordered = sorted(owners, key=lambda n: order.get(n, after + owners.index(n)))
    layers: dict[str, list[str]] = {}
    for name in ordered:
        key = name if depth is None else ".".join(name.split(".")[:depth]) or name
        layers.setdefault(key or "(root)", []).append(name)
    return list(layers.items())


def _generator(seed: int, name: str):
    import torch

    return torch.Generator().manual_seed(zlib.crc32(f"{int(seed)}:{name}".encode()))


def randomise_layers(module, names, seed: int) -> None:
    """Re-initialise the parameters (and running statistics) of the named sub-modules in place (module Notes)."""
    import torch

    from ..models.taps import submodule

    with torch.no_grad():
        for name in names:
            sub = submodule(module, name)
            params = dict(sub.named_parameters(recurse=False))
            weight = params.get("weight")
            fan_in = int(np.prod(weight.shape[1:])) if weight is not None and weight.ndim >= 2 else 0
            for pname, p in params.items():
                gen = _generator(seed, f"{name}.{pname}")
                if (p.ndim >= 2 or (pname == "bias" and fan_in)) and fan_in:
                    bound = 1.0 / np.sqrt(fan_in)
                    p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
                elif pname == "weight" and p.ndim == 1:
                    p.fill_(1.0)
                elif pname == "bias" and weight is not None and weight.ndim == 1:
                    p.zero_()
                else:
                    std = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.01
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * std)
            for bname, b in sub.named_buffers(recurse=False):
                if bname == "running_var":
                    b.fill_(1.0)
                elif bname in ("running_mean", "num_batches_tracked"):
                    b.zero_()


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
    n_boot: int = 1000,
    control: RunControl | None = None,
) -> SanityResult:
    """Cascading (and independent) randomisation of a model; maps recomputed, compared and judged at each step.

    Parameters
    ----------
    model : LoadedModel
        Any format (nn.Module, TorchScript, ``torch.export`` graph).
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
        Layer ``j`` (top down) is re-initialised with seed ``seed + j`` in both modes; the bootstrap uses ``seed``.
    mask : numpy.ndarray, (H, W) bool, optional
        Pixels compared (e.g. the field of view); default all.
    n_boot : int
        Bootstrap resamples of the image-wise intervals (the global ones use a share,
        :data:`~.sanity_stats.GLOBAL_RESAMPLE_SHARE`).
    control : RunControl, optional
        Progress (stage ``"sanity"``, one step per method and model variant) and cancel.

    Returns
    -------
    SanityResult
        On cancel: the steps finished so far, ``cancelled=True`` and undecided verdicts (raises
        :class:`~napari_global_xai.batching.Cancelled` before the original maps are done).

    Raises
    ------
    ValueError
        No image, a target per image missing, a model without parameters; a method's own refusal (unknown name, bad
        parameter, a format it cannot read) comes first, before any model pass.
    """
    from ..models.card import LoadedModel
    from ..saliency.engine import ImageMapEngine

    images = np.asarray(images)
    targets = np.asarray(targets, np.int64)
    if len(images) != len(targets) or len(images) == 0:
        raise ValueError(f"{len(images)} images and {len(targets)} targets: need one target per image, ≥ 1 image")
    names = _config_names(configs)
    control = control or RunControl()
    all_targets = list(range(len(model.labels)))
    for config in configs:  # the methods' own checks (name, parameters, model format) before any work
        ImageMapEngine(model, config, all_targets)
    base = copy.deepcopy(model.module).cpu()
    layers = parameterised_layers(base, model.preprocess(images[:1], device="cpu"), depth)[::-1]
    if not layers:
        raise ValueError("the model has no parameters to randomise")
    total = (1 + len(layers) * (2 if independent else 1)) * len(configs)
    done = 0
    pairs = np.zeros((len(images), len(model.labels)), bool)
    pairs[np.arange(len(images)), targets] = True

    def maps_of(module):
        nonlocal done
        variant = LoadedModel(copy.deepcopy(module).to(model.device), model.card, model.device)
        out = {}
        for name, config in zip(names, configs):
            control.check("sanity check cancelled")
            computed = ImageMapEngine(variant, config, all_targets).compute(images, pairs, control=control)
            out[name] = computed[np.arange(len(images)), targets].astype(np.float64)
            done += 1
            control.report(done, total, "sanity")
        return out

    original = maps_of(base)
    orig_ranks = {m: stats.rank_rows(original[m], mask) for m in names}
    orig_global = {m: stats.rank_rows(original[m].mean(0)[None], mask)[0][0] for m in names}
    edges = stats.edge_magnitude(images, model.card.input_channels)
    edge_ranks, _ = stats.rank_rows(edges, mask)

    def norm(a):
        return minmax(a if mask is None else np.where(mask, a, np.nanmin(a[mask])))

    def compare(maps):
        out = {}
        for m in names:
            ranks, const = stats.rank_rows(maps[m], mask)
            rho = np.where(orig_ranks[m][1], np.nan, stats.row_rho(orig_ranks[m][0], ranks))
            ss = np.array([ssim(norm(o), norm(r), mask=mask) for o, r in zip(original[m], maps[m])])
            g_map = maps[m].mean(0)
            g_rho = float(orig_global[m] @ stats.rank_rows(g_map[None], mask)[0][0])
            g_ss = ssim(norm(original[m].mean(0)), norm(g_map), mask=mask)
            out[m] = (rho, ss, g_rho, g_ss)
        return out

    def interval(rho, tag):
        return stats.bootstrap_mean(np.abs(rho), n_boot, seed, tag)

    first = compare(original)
    for m in names:  # each original map against itself: 1 by definition (not 1 ± rounding)
        rho, ss, g_rho, g_ss = first[m]
        first[m] = (np.where(np.isfinite(rho), 1.0, np.nan), ss, 1.0 if np.isfinite(g_rho) else np.nan, g_ss)
    result = SanityResult(
        names,
        ["original"],
        {m: [first[m][0]] for m in names},
        {m: [first[m][1]] for m in names},
        {m: [first[m][2]] for m in names},
        {m: [first[m][3]] for m in names},
        [n for n, _ in layers],
        step_intervals={m: [interval(first[m][0], f"{m}:step0")] for m in names},
        unrelated={m: stats.unrelated_pairs(*orig_ranks[m]) for m in names},
        model_free={
            m: np.where(orig_ranks[m][1], np.nan, np.abs(stats.row_rho(orig_ranks[m][0], edge_ranks))) for m in names
        },
        targets=[model.labels[t] for t in targets],
        n_boot=int(n_boot),
        seed=int(seed),
        original_maps=original,
    )
    if independent:
        for d in (result.independent_spearman, result.independent_ssim, result.independent_global_spearman):
            d.update({m: [] for m in names})
        result.independent_intervals = {m: [] for m in names}
    final = original
    try:
        cascade = copy.deepcopy(base)
        for j, (layer, members) in enumerate(layers):
            randomise_layers(cascade, members, seed + j)
            final = maps_of(cascade)
            step = compare(final)
            for m in names:
                for d, value in zip(
                    (result.spearman, result.ssim, result.global_spearman, result.global_ssim), step[m]
                ):
                    d[m].append(value)
                result.step_intervals[m].append(interval(step[m][0], f"{m}:step{j + 1}"))
            result.steps.append(layer)
        if independent:
            for j, (_layer, members) in enumerate(layers):
                alone = copy.deepcopy(base)
                randomise_layers(alone, members, seed + j)
                step = compare(maps_of(alone))
                for m in names:
                    result.independent_spearman[m].append(step[m][0])
                    result.independent_ssim[m].append(step[m][1])
                    result.independent_global_spearman[m].append(step[m][2])
                    result.independent_intervals[m].append(interval(step[m][0], f"{m}:alone{j + 1}"))
    except Cancelled:
        result.cancelled = True
    for d in (result.spearman, result.ssim, result.independent_spearman, result.independent_ssim):
        for m in list(d):
            d[m] = np.array(d[m], np.float64).reshape(len(d[m]), len(images))
    for d in (result.global_spearman, result.global_ssim, result.independent_global_spearman):
        for m in list(d):
            d[m] = np.array(d[m], np.float64)
    _judge(result, original, final, edges, mask)
    return result


def _judge(result: SanityResult, original: dict, final: dict, edges: np.ndarray, mask) -> None:
    """The image-wise and global verdicts of every method, on the last finished cascading step."""
    randomised = len(result.steps) - 1
    decided = randomised == len(result.layers)
    where = (
        f"{len(result.targets)} images, all {len(result.layers)} layers randomised"
        if decided
        else f"only {randomised} of {len(result.layers)} layers randomised (cancelled)"
    )
    for m in result.methods:
        image = stats.judge_images(
            m,
            result.spearman[m][-1],
            result.ssim[m][-1],
            result.unrelated[m],
            result.model_free[m],
            n_boot=result.n_boot,
            seed=result.seed,
            where=where,
            decided=decided,
        )
        glob = stats.judge_global(
            m,
            original[m],
            final[m],
            edges,
            image.unrelated,
            mask,
            n_boot=result.n_boot,
            seed=result.seed,
            where=where,
            decided=decided,
            signed=float(result.global_spearman[m][-1]),
            ssim_value=float(result.global_ssim[m][-1]),
        )
        result.judgements[m] = {"image": image, "global": glob}
