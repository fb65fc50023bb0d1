"""I-GOS and iGOS++: saliency by optimising a low-resolution deletion mask along an integrated-gradient path.

Both methods (methods.md §2.3, §2.4) optimise a ``gh × gw`` mask ``M ∈ [0, 1]`` (initialised to ones), upsample it
bilinearly to the image and compose ``φ(x, b, m) = x ⊙ m + b ⊙ (1 − m)`` with a baseline ``b`` (a blurred copy of the
image by default). The descent direction is the gradient of the class score averaged over the straight path
``t_k · U(M)``, ``t_k = k / N`` (or Gauss–Legendre nodes) with Gaussian input noise, plus the gradient of the
regulariser; each step is an Armijo backtracking line search. The map returned is ``1 − U(M)``. Named presets
(:data:`PRESETS`) give the official CLI's counts or fewer passes; optimisations that stall are detected
(:func:`stalled_masks`), warned about, flagged in ``last_flags`` and by default recovered.

Everything runs batched: the masks of ``k`` images are optimised together, the ``k × N`` path images go through the
model in chunks of at most ``max_batch``, and each image has its own line-search step size, so one forward covers
all images' trial points while every image's result is the one it would get alone (up to the rounding differences
of batched convolutions, which can flip a line-search decision only when its Armijo test is within rounding).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import BLUR_SIGMA_FRACTION  # noqa: F401 - re-exported: the official I-GOS blur, one default
from ..perturb.fills import BASELINES, make_fill
from .base import Choice, Flag, Float, Int, SaliencyMethod, register_method

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

#: Lower bound of the automatic score scale ``|f(x) − f(b)|``: 0.1 for probabilities; 0.4 for logits (the logit
#: change that moves a sigmoid probability near 0.5 by 0.1, slope 1/4).
SCORE_FLOOR = {"probability": 0.1, "logit": 0.4}
# The blur default (BLUR_SIGMA_FRACTION, imported above) is config's: the official ``cv2.GaussianBlur((51, 51),
# sigmaX=50)`` on 224 px is nearly a 51-px box, std 51/√12 ≈ 14.7 px, i.e. 6.6 % of the shorter side.
#: Typical line-search trials per iteration with ``alpha = 1000`` (measured: ~5 on the planted-region test model;
#: up to ~10 when the model barely reacts to the mask, e.g. random weights), for cost estimates only.
TYPICAL_TRIALS = 5
#: The same with the warm-started search (measured: 2.2 on EfficientNet-Lite0 and photos, benchmarks/RESULTS.md).
TYPICAL_WARM_TRIALS = 2


#: Pixels per model forward on a CPU. Measured on 2 cores with the demo model at 384 × 512 (I-GOS, 4 images):
#: 0.29 s per image with 4 path images per forward, 0.31 with 8, 0.35 with 16, 0.38 with 32 — larger batches
#: fall out of the cache, so a CPU gains nothing from them.
CPU_PATH_PIXELS = 4 * 384 * 512


def path_batch_size(x: torch.Tensor) -> int:
    """Default path images per forward for inputs like ``x``: 32 on accelerators, :data:`CPU_PATH_PIXELS` on CPU."""
    if x.device.type != "cpu":
        return 32
    return max(1, CPU_PATH_PIXELS // (x.shape[-2] * x.shape[-1]))


# ---------------------------------------------------------------------------------------------------------------------
# small pieces: grid, upsampling, composite, regularisers, score scale


def mask_grid_shape(image_hw: tuple[int, int], mask_size) -> tuple[int, int]:
    """Mask grid ``(gh, gw)`` for an image of ``image_hw``.

    Parameters
    ----------
    image_hw : (int, int)
        Image height and width.
    mask_size : int or (int, int)
        An int is the grid's shorter side; the longer side follows the image aspect ratio (rounded), e.g. 28 →
        28 × 37 for 384 × 512. A pair is used as given.
    """
    if isinstance(mask_size, (tuple, list)):
        gh, gw = (int(v) for v in mask_size)
    else:
        h, w = image_hw
        s = int(mask_size)
        if h <= w:
            gh, gw = s, max(1, round(s * w / h))
        else:
            gh, gw = max(1, round(s * h / w)), s
    if gh < 2 or gw < 2:
        raise ValueError(f"mask grid must be at least 2 × 2, got {gh} × {gw} (mask_size={mask_size!r})")
    return gh, gw


@functools.lru_cache(maxsize=32)
def interpolation_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(n_out, n_in)`` weights of 1-D linear interpolation, ``F.interpolate(..., align_corners=True)``'s own."""
    unit_signals = torch.eye(n_in, device=device, dtype=dtype).unsqueeze(1)  # (n_in, 1, n_in)
    return F.interpolate(unit_signals, size=n_out, mode="linear", align_corners=True)[:, 0].T.contiguous()


def upsample_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling ``(..., gh, gw)`` → ``(..., H, W)`` with ``align_corners=True`` (the official
    ``UpsamplingBilinear2d``).

    Computed as ``A_h · M · A_wᵀ`` with the separable interpolation matrices of ``F.interpolate``: the same values
    (to rounding), and a backward pass of two matrix products, deterministic on GPUs too (the CUDA backward of
    ``F.interpolate`` accumulates with atomics).
    """
    (gh, gw), (h, w) = masks.shape[-2:], size
    a_h = interpolation_matrix(gh, int(h), masks.device, masks.dtype)
    a_w = interpolation_matrix(gw, int(w), masks.device, masks.dtype)
    return a_h @ masks @ a_w.T


def composite(x: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``φ(x, b, m) = x ⊙ m + b ⊙ (1 − m)``: keep ``x`` where ``m = 1``, the baseline where ``m = 0``."""
    return b + (x - b) * m


def l1_norm(masks: torch.Tensor) -> torch.Tensor:
    """``mean |1 − M|`` per image, ``(n, 1, gh, gw)`` → ``(n,)``."""
    return (1 - masks).abs().flatten(1).mean(dim=1)


def _diffs(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbour differences along rows (dim −2) and columns (dim −1)."""
    return m[..., 1:, :] - m[..., :-1, :], m[..., :, 1:] - m[..., :, :-1]


def tv_norm(masks: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """``mean |ΔM_rows|^β + mean |ΔM_cols|^β`` per image (official ``tv_norm``), ``(n, 1, gh, gw)`` → ``(n,)``."""
    dr, dc = _diffs(masks)
    return dr.abs().pow(beta).flatten(1).mean(dim=1) + dc.abs().pow(beta).flatten(1).mean(dim=1)


def bilateral_weights(x: torch.Tensor, sigma: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge weights ``exp(−Δx² / σ)`` (channel mean) between vertical and horizontal pixel neighbours of ``x``.

    Returns ``(rows (n, 1, H−1, W), cols (n, 1, H, W−1))``; they stay fixed during the optimisation.
    """
    dr, dc = _diffs(x)
    return torch.exp(-dr.pow(2) / sigma).mean(dim=1, keepdim=True), torch.exp(-dc.pow(2) / sigma).mean(1, True)


def bilateral_tv_norm(
    masks: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor], beta: float = 2.0
) -> torch.Tensor:
    """iGOS++ bilateral TV: ``½ [TV(M) + mean(w_rows |ΔU(M)_rows|^β) + mean(w_cols |ΔU(M)_cols|^β)]`` per image.

    ``masks`` is the grid mask ``(n, 1, gh, gw)``; ``weights`` from :func:`bilateral_weights` set the image size.
    """
    wr, wc = weights
    up = upsample_masks(masks, (wc.shape[-2], wr.shape[-1]))
    dr, dc = _diffs(up)
    bil = (wr * dr.abs().pow(beta)).flatten(1).mean(dim=1) + (wc * dc.abs().pow(beta)).flatten(1).mean(dim=1)
    return 0.5 * (tv_norm(masks, beta) + bil)


def score_scale(f_image: torch.Tensor, f_baseline: torch.Tensor, mode, probability: bool) -> torch.Tensor:
    """Per-image divisor of the score terms.

    ``mode="auto"``: ``max(|f(x) − f(b)|, floor)`` with ``floor`` from :data:`SCORE_FLOOR`, so the score term
    measures the fraction of the image's own score change and one ``alpha`` suits logits and probabilities alike.
    A number: that constant (``1.0`` reproduces the official code).
    """
    if mode == "auto":
        floor = SCORE_FLOOR["probability" if probability else "logit"]
        return (f_image - f_baseline).abs().clamp_min(floor)
    value = float(mode)
    if not value > 0:
        raise ValueError(f"score_scale must be 'auto' or a positive number, got {mode!r}")
    return torch.full_like(f_image, value)


#: Path quadrature rules (:func:`path_quadrature`).
QUADRATURES = ("uniform", "gausslegendre", "stratified")


def path_quadrature(n: int, rule: str = "uniform", shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``t_k`` and weights ``w_k`` of ``∫₀¹ f(t) dt ≈ Σ_k w_k f(t_k)`` with ``n`` points.

    ``"uniform"``: the official right Riemann sum ``t_k = k/n``, ``w_k = 1/n`` (error O(1/n), biased towards the
    masked end of the path). ``"gausslegendre"``: Gauss–Legendre nodes mapped to ``[0, 1]`` (exact for polynomials
    of degree ``2n − 1``), so a few points reach the accuracy of many uniform ones on a smooth path.
    ``"stratified"``: the uniform grid moved back by ``shift ∈ [0, 1)`` of a cell, ``t_k = (k − shift)/n``; with a
    fresh uniform ``shift`` per iteration (:meth:`PathProblem.begin_iteration`) each iteration's sum is an unbiased
    estimate of the path integral, and over the iterations the nodes cover the whole path instead of ``n`` fixed
    points (``shift = 0`` is the uniform rule).
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"ig_iter must be at least 1, got {n}")
    if rule in ("uniform", "stratified"):
        return (np.arange(1, n + 1) - (float(shift) if rule == "stratified" else 0.0)) / n, np.full(n, 1.0 / n)
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return (x + 1) / 2, w / 2
    raise ValueError(f"quadrature must be one of {QUADRATURES}, got {rule!r}")


def stalled_masks(
    masks: torch.Tensor, move_tol: float = 0.01, tie_fraction: float = 0.9, tie_tol: float = 1e-6
) -> tuple[torch.Tensor, list[str]]:
    """Which optimised masks are stuck, and why.

    A mask ``(k, 1, gh, gw)`` is flagged when it **did not move** (its deepest cell is above ``1 − move_tol``,
    i.e. the saliency ``1 − M`` never reaches ``move_tol``), or when its **top cells are ties**: more than
    ``tie_fraction`` of the cells lie within ``tie_tol`` of the most salient value, so any deletion/insertion
    order is mostly the tie order.

    Returns
    -------
    flags : (k,) bool tensor
    reasons : list of str
        One line per image ("" where not flagged).
    """
    sal = (1 - masks).flatten(1)
    top = sal.max(dim=1).values
    tied = (sal >= top.unsqueeze(1) - tie_tol).sum(dim=1)
    cells = sal.shape[1]
    flags, reasons = [], []
    for i in range(len(sal)):
        if top[i] < move_tol:
            flags.append(True)
            reasons.append(f"the mask did not move (largest change {top[i].item():.2g} < {move_tol:g})")
        elif tied[i] > tie_fraction * cells:
            flags.append(True)
            reasons.append(f"{int(tied[i])} of {cells} cells tie at the top saliency {top[i].item():.3g}")
        else:
            flags.append(False)
            reasons.append("")
    return torch.tensor(flags, dtype=torch.bool), reasons


class _PathImages(torch.autograd.Function):
    """Path images ``z_j = start[r] + ε[e_j] + t_j · delta[r] ⊙ U_j`` of a model batch, built run by run.

    ``up`` holds the full-size term masks ``(u · terms, H, W, 1)`` of the batch's images, ``t`` the path position of
    every job ``(n,)``, ``start``, ``delta`` ``(rows, H, W, c)`` the paths' start points and directions (one row per
    image and path kind), ``ε`` the noise rows ``(terms · N, H, W, c)`` or None, and ``runs`` the
    ``(first, stop, path row, first noise row, mask row)`` of each run of jobs sharing one image and term
    (:meth:`PathProblem._runs`). A run multiplies its direction by its mask once and adds ``t_j`` times that product
    to each of its path images: no per-job mask is materialised, no full-size tensor is gathered, and the one
    broadcast over a size-1 channel dimension (slow on CPUs) happens once per run, not once per path image. The
    backward needs only ``∂z_j/∂U = t_j · delta``, summed over the run's jobs.
    """

    @staticmethod
    def forward(ctx, up, t, start, delta, noise, runs):
        z = torch.empty((len(t), *start.shape[1:]), dtype=start.dtype, device=start.device)
        for a, b, row, e, mrow in runs:
            if noise is None:
                z[a:b] = start[row]
            else:
                torch.add(start[row], noise[e : e + b - a], out=z[a:b])
            z[a:b].addcmul_(t[a:b].view(-1, 1, 1, 1), delta[row] * up[mrow])
        ctx.save_for_backward(t, delta)
        ctx.runs, ctx.up_shape = runs, up.shape
        return z

    @staticmethod
    def backward(ctx, grad_z):
        t, delta = ctx.saved_tensors
        grad_up = torch.zeros(ctx.up_shape, dtype=grad_z.dtype, device=grad_z.device)
        for a, b, row, _, mrow in ctx.runs:
            # Σ_j t_j ∂L/∂z_j as one matrix-vector product, then Σ_c (…) · delta as a product and an addcmul per
            # further channel (a sum over a last dimension of 2 or 3 elements is 2–3× slower on CPUs)
            g = torch.tensordot(t[a:b], grad_z[a:b], dims=1)  # (H, W, c)
            out = grad_up[mrow]
            out.addcmul_(g[..., :1], delta[row, ..., :1])
            for ch in range(1, g.shape[-1]):
                out.addcmul_(g[..., ch : ch + 1], delta[row, ..., ch : ch + 1])
        return grad_up, None, None, None, None, None


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    """``(n, c, H, W)`` → contiguous ``(n, H, W, c)``."""
    return t.permute(0, 2, 3, 1).contiguous()


def _noise_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` when the backend has one (CUDA, MPS), else on the CPU; never the global RNG."""
    try:
        gen = torch.Generator(device=device)
    except (RuntimeError, TypeError):
        gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def _mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy ``SeedSequence``)."""
    state = np.random.SeedSequence([int(v) & 0xFFFFFFFF for v in values]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


# ---------------------------------------------------------------------------------------------------------------------
# the method family


@dataclass(frozen=True)
class PathTerm:
    """One path-integrated score term of the loss.

    Attributes
    ----------
    insertion : bool
        False: deletion path ``φ(x, b, t·m)`` (keep the image where ``m = 1``); True: insertion path
        ``φ(b, x, t·m)`` (baseline where ``m = 1``).
    sign : float
        ``+1``: the score is minimised; ``−1``: maximised.
    masks : tuple of int
        Which masks are multiplied (after upsampling) to form this term's mask.
    """

    insertion: bool
    sign: float
    masks: tuple[int, ...]


@dataclass(frozen=True)
class Variant:
    """What distinguishes I-GOS from iGOS++: the masks, the score terms, their gradient weight, the regulariser."""

    n_masks: int
    terms: tuple[PathTerm, ...]
    #: Factor on the score-term gradient (iGOS++ halves it "to balance ... with the regularization terms").
    grad_weight: float
    #: Bilateral TV on the image (iGOS++) instead of plain TV (I-GOS).
    bilateral: bool


IGOS_VARIANT = Variant(1, (PathTerm(False, 1.0, (0,)),), 1.0, False)
#: Masks 0 = deletion M_d, 1 = insertion M_i: D(U_d·U_i) − S_I(U_d·U_i) + D(U_d) − S_I(U_i).
IGOS_PP_VARIANT = Variant(
    2,
    (
        PathTerm(False, 1.0, (0, 1)),
        PathTerm(True, -1.0, (0, 1)),
        PathTerm(False, 1.0, (0,)),
        PathTerm(True, -1.0, (1,)),
    ),
    0.5,
    True,
)


class PathProblem:
    """The loss and its integrated gradient for ``k`` images, evaluated in model batches of at most ``max_batch``.

    Parameters
    ----------
    score_fn : callable(z, targets) -> (n,)
        The explained score of each image (a logit or a probability).
    x, baseline : torch.Tensor, (k, c, H, W)
    targets : torch.LongTensor, (k,)
    scale : torch.Tensor, (k,)
        Divisor of every score term (:func:`score_scale`).
    variant : Variant
    grid : (int, int)
    ig_iter : int
        Path steps ``N``.
    l1, tv, tv_beta : float
        Regulariser weights and TV exponent.
    noise_std : float
        Standard deviation of the Gaussian noise added to every path image (normalised units).
    max_batch : int
        Most images per model forward.
    seed : int
    bilateral_sigma : float
        σ of the bilateral TV edge weights (iGOS++).
    quadrature : {"uniform", "gausslegendre", "stratified"}
        Path nodes and weights (:func:`path_quadrature`): the official right Riemann sum, Gauss–Legendre, or the
        Riemann grid shifted by a random fraction of a cell drawn per iteration (:meth:`begin_iteration`).
    antithetic : bool
        Antithetic path noise: consecutive path steps get ``ε`` and ``−ε`` (each still ``N(0, noise_std²)``, so the
        expected gradient is unchanged while its part linear in the noise cancels pairwise).
    """

    def __init__(
        self,
        score_fn: Callable,
        x,
        baseline,
        targets,
        scale,
        variant: Variant,
        grid,
        ig_iter: int,
        l1: float,
        tv: float,
        tv_beta: float,
        noise_std: float,
        max_batch: int,
        seed: int,
        bilateral_sigma: float = 0.01,
        quadrature: str = "uniform",
        antithetic: bool = False,
    ):
        self.score_fn = score_fn
        self.x, self.b, self.targets, self.scale = x, baseline, targets, scale
        self.variant, self.grid, self.ig_iter = variant, tuple(grid), int(ig_iter)
        self.l1, self.tv, self.tv_beta = float(l1), float(tv), float(tv_beta)
        self.noise_std, self.max_batch, self.seed = float(noise_std), max(1, int(max_batch)), int(seed)
        self.size = tuple(x.shape[-2:])
        channels_last = x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        dev = x.device
        self.quadrature, self.antithetic = quadrature, bool(antithetic)
        nodes, weights = path_quadrature(self.ig_iter, quadrature)
        self.path_t = torch.as_tensor(nodes, device=dev, dtype=x.dtype)
        self.path_w = torch.as_tensor(weights, device=dev, dtype=x.dtype)
        self.term_insertion = torch.tensor([t.insertion for t in variant.terms], device=dev)
        self.term_sign = torch.tensor([t.sign for t in variant.terms], device=dev, dtype=x.dtype)
        self.edge_weights = bilateral_weights(x, bilateral_sigma) if variant.bilateral else None
        # φ(x, b, m) = b + (x − b) m (deletion) and φ(b, x, m) = x + (b − x) m (insertion): start and direction
        # of every image's two paths, row 2·image + insertion, so a model batch is two row gathers and one addcmul.
        # Kept channels-last as (rows, H, W, c): gathered rows are then already in the model's layout (no copy).
        self.path_start = _nhwc(torch.stack([baseline, x], dim=1).flatten(0, 1))
        self.path_delta = _nhwc(torch.stack([x - baseline, baseline - x], dim=1).flatten(0, 1))
        self.forward_images = 0
        self.backward_images = 0

    @property
    def n_terms(self) -> int:
        return len(self.variant.terms)

    def initial_masks(self) -> torch.Tensor:
        """All-ones masks ``(k, n_masks, 1, gh, gw)`` (the official initialisation)."""
        return torch.ones(len(self.x), self.variant.n_masks, 1, *self.grid, device=self.x.device, dtype=self.x.dtype)

    def noise(self, iteration: int) -> torch.Tensor | None:
        """Path noise ``(n_terms · N, H, W, c)`` for one iteration, shared by all images; None without noise.

        It depends only on ``(seed, iteration)``, so an image's result does not depend on its batch neighbours.
        """
        if self.noise_std <= 0:
            return None
        gen = _noise_generator(self.x.device, _mix_seed(self.seed, iteration))
        c, h, w = self.x.shape[1:]
        rows = self.n_terms * self.ig_iter
        draws = (rows + 1) // 2 if self.antithetic else rows
        eps = torch.randn((draws, h, w, c), generator=gen, device=gen.device, dtype=self.x.dtype)
        if self.antithetic:  # path steps 2j and 2j + 1 of a term get ε_j and −ε_j (across terms when N is odd)
            eps = torch.stack([eps, -eps], dim=1).flatten(0, 1)[:rows]
        return eps.to(self.x.device).mul_(self.noise_std)  # (term·N + step, H, W, c), the layout of the path rows

    def begin_iteration(self, iteration: int) -> torch.Tensor | None:
        """The path noise of ``iteration`` (:meth:`noise`); with the ``"stratified"`` rule also this iteration's
        path nodes, shifted by a uniform draw that depends only on ``(seed, iteration)``. The gradient and every
        line-search trial of the iteration share both."""
        if self.quadrature == "stratified":
            shift = np.random.default_rng(_mix_seed(self.seed, iteration, 1)).random()
            nodes, _ = path_quadrature(self.ig_iter, "stratified", shift)
            self.path_t = torch.as_tensor(nodes, device=self.x.device, dtype=self.x.dtype)
        return self.noise(iteration)

    def term_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Upsampled mask of every term: ``(u, n_masks, 1, gh, gw)`` → ``(u, n_terms, 1, H, W)``."""
        up = upsample_masks(masks, self.size)
        out = []
        for term in self.variant.terms:
            m = up[:, term.masks[0]]
            for j in term.masks[1:]:
                m = m * up[:, j]
            out.append(m)
        return torch.stack(out, dim=1)

    def path_scores(self, masks: torch.Tensor, idx: torch.Tensor, noise, with_grad: bool):
        """Path-averaged, scaled score of every term, and optionally the gradient of the weighted score sum.

        Parameters
        ----------
        masks : (n, n_masks, 1, gh, gw)
            Masks of images ``idx`` (indices into the problem's images).
        with_grad : bool
            Also return ``∂/∂masks Σ_τ grad_weight · sign_τ · S_τ`` (forward+backward passes); otherwise forward
            passes only, under ``no_grad``.

        Returns
        -------
        scores : (n, n_terms)
            ``S_τ = Σ_k w_k f(φ(·, ·, t_k U_τ) + ε_{τ,k}) / scale`` (``w_k = 1/N``, ``t_k = k/N`` for the
            uniform rule).
        grads : (n, n_masks, 1, gh, gw) or None
        """
        n, n_terms, n_steps = len(idx), self.n_terms, self.ig_iter
        per_image = n_terms * n_steps
        total = n * per_image
        values = torch.empty(total, device=masks.device, dtype=masks.dtype)  # one per job (image, term, step)
        weight = self.term_sign * self.variant.grad_weight
        idx_list = idx.tolist()
        # every term's full-size mask once per call (not once per model batch); model batches differentiate w.r.t.
        # these, and one backward at the end carries their summed gradient to the grid masks
        leaf = masks.detach().requires_grad_(with_grad)
        with torch.set_grad_enabled(with_grad):
            up_graph = self.term_masks(leaf)  # (n, n_terms, 1, H, W)
        up = up_graph.detach()
        grad_up = torch.zeros_like(up) if with_grad else None
        for start in range(0, total, self.max_batch):
            stop = min(start + self.max_batch, total)
            first, last = start // per_image, (stop - 1) // per_image
            job = torch.arange(start, stop, device=masks.device)
            img, term, step = job // per_image - first, (job // n_steps) % n_terms, job % n_steps
            part = up[first : last + 1].requires_grad_(with_grad)
            runs = self._runs(start, stop, idx_list)
            with torch.set_grad_enabled(with_grad):
                s = self._chunk_scores(part, idx[first : last + 1][img], step, noise, runs)
            if with_grad:
                (g,) = torch.autograd.grad((s * weight[term]).sum(), part)
                grad_up[first : last + 1] += g
                self.backward_images += stop - start
            else:
                self.forward_images += stop - start
            values[start:stop] = s.detach()
        grads = torch.autograd.grad(up_graph, leaf, grad_up)[0] if with_grad else None
        # summed in a fixed order, whatever the chunking: results do not depend on the batch composition
        return values.view(n, n_terms, n_steps).sum(dim=2), grads

    def _runs(self, start: int, stop: int, idx_list: list) -> list[tuple[int, int, int, int, int]]:
        """Jobs ``start .. stop`` as runs sharing one image and term: ``(first, stop, path row, first noise row,
        mask row)`` with ``first``/``stop`` relative to ``start`` and the mask row counted from the batch's first
        image (row ``image · terms + term`` of the batch's term masks). Within a run the noise rows are consecutive."""
        n_steps, per_image = self.ig_iter, self.n_terms * self.ig_iter
        first_image = start // per_image
        runs, j = [], start
        while j < stop:
            end = min(stop, (j // n_steps + 1) * n_steps)
            term = (j // n_steps) % self.n_terms
            row = 2 * idx_list[j // per_image] + int(self.variant.terms[term].insertion)
            mrow = (j // per_image - first_image) * self.n_terms + term
            runs.append((j - start, end - start, row, term * n_steps + j % n_steps, mrow))
            j = end
        return runs

    def _chunk_scores(self, up, gidx, step, noise, runs) -> torch.Tensor:
        """Scores of one model batch: job ``j`` is image ``gidx[j]`` at path step ``step[j]``; ``up``
        ``(u, n_terms, 1, H, W)`` holds the term masks of the batch's images."""
        t = self.path_t[step]
        up_rows = up.reshape(-1, *self.size, 1)  # (u · terms, H, W, 1): the same memory, channels-last shaped
        z = _PathImages.apply(up_rows, t, self.path_start, self.path_delta, noise, runs)  # (n, H, W, c)
        z = z.permute(0, 3, 1, 2)  # NCHW view with channels-last strides: the layout the model runs in
        if self.memory_format != torch.channels_last:
            z = z.contiguous()
        return self.score_fn(z, self.targets[gidx]) * (self.path_w[step] / self.scale[gidx])

    def regulariser(self, masks: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``L1 · mean|1 − M| + L2 · TV(M)`` (I-GOS) or ``… + L2 · BTV(x, M)`` (iGOS++) of the product mask."""
        m = masks.prod(dim=1)
        if self.edge_weights is None:
            smooth = tv_norm(m, self.tv_beta)
        else:
            smooth = bilateral_tv_norm(m, tuple(w[idx] for w in self.edge_weights), self.tv_beta)
        return self.l1 * l1_norm(m) + self.tv * smooth

    def loss(self, masks: torch.Tensor, idx: torch.Tensor, noise) -> torch.Tensor:
        """Line-search loss ``Σ_τ sign_τ S_τ + Reg`` per image (forward passes only)."""
        with torch.no_grad():
            scores, _ = self.path_scores(masks, idx, noise, with_grad=False)
            return scores @ self.term_sign + self.regulariser(masks, idx)

    def gradient(
        self, masks: torch.Tensor, noise, idx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Descent direction, loss and score-term direction at ``masks`` of images ``idx`` (default: all).

        The direction is ``grad_weight · Σ_τ sign_τ ∇S_τ + ∇Reg``; the loss reuses the same forward passes. The
        third value is the score part alone (the integrated-gradient signal, used by the stall recovery).
        """
        if idx is None:
            idx = torch.arange(len(masks), device=masks.device)
        scores, grads = self.path_scores(masks, idx, noise, with_grad=True)
        leaf = masks.detach().requires_grad_(True)
        with torch.enable_grad():
            reg = self.regulariser(leaf, idx)
            (g_reg,) = torch.autograd.grad(reg.sum(), leaf)
        return grads + g_reg, scores @ self.term_sign + reg.detach(), grads


def armijo_line_search(
    masks: torch.Tensor,
    direction: torch.Tensor,
    base_loss: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    alpha=1000.0,
    c: float = 1e-4,
    decay: float = 0.2,
    min_alpha: float = 1e-5,
    return_losses: bool = False,
):
    """Per-image backtracking line search on the box ``[0, 1]``, all images' trials in one ``loss_fn`` call.

    Image ``i`` accepts the first ``α ∈ {alpha, alpha·decay, …} (≥ min_alpha)`` with
    ``L(clip(M_i − α g_i)) ≤ L(M_i) − c · α · ‖g_i‖²``; an image that accepts (or runs out of steps) leaves the
    search, and one that never accepts keeps its mask.

    Parameters
    ----------
    masks, direction : (k, ...)
    base_loss : (k,)
    loss_fn : callable(trial_masks (n, ...), idx (n,)) -> (n,)
        Loss of the trial masks of images ``idx``.
    alpha : float or (k,) tensor
        First step tried, for all images or per image.
    return_losses : bool
        Also return the loss at the new masks (``base_loss`` where no step was accepted).

    Returns
    -------
    new_masks : (k, ...)
    step : (k,)
        Accepted step size, 0 where none was accepted.
    trials : (k,)
        Loss evaluations per image.
    new_loss : (k,)
        Only with ``return_losses``.
    """
    k = len(masks)
    alphas = torch.as_tensor(alpha, device=masks.device, dtype=masks.dtype).expand(k).clone()
    step = torch.zeros_like(alphas)
    trials = torch.zeros(k, dtype=torch.long, device=masks.device)
    new = masks.clone()
    new_loss = base_loss.clone()
    slope = c * direction.flatten(1).pow(2).sum(dim=1)
    active = torch.arange(k, device=masks.device)
    shape = (-1,) + (1,) * (masks.ndim - 1)
    while active.numel():
        a = alphas[active]
        trial = (masks[active] - a.view(shape) * direction[active]).clamp_(0, 1)
        trial_loss = loss_fn(trial, active)
        ok = trial_loss <= base_loss[active] - a * slope[active]
        trials[active] += 1
        new[active[ok]] = trial[ok]
        new_loss[active[ok]] = trial_loss[ok]
        step[active[ok]] = a[ok]
        active = active[~ok & (a * decay >= min_alpha)]
        alphas[active] *= decay
    if return_losses:
        return new, step, trials, new_loss
    return new, step, trials


def optimise_masks(
    problem: PathProblem,
    iterations: int,
    alpha: float,
    armijo_c: float = 1e-4,
    decay: float = 0.2,
    min_alpha: float = 1e-5,
    warm_start: bool = False,
    early_stop: float = 0.0,
    patience: int = 2,
    min_iterations: int = 3,
) -> tuple[torch.Tensor, dict]:
    """Run the I-GOS-family optimisation; returns the masks ``(k, n_masks, 1, gh, gw)`` and statistics.

    Parameters
    ----------
    warm_start : bool
        Each image's search starts at ``min(alpha, last accepted step / decay)`` (one step above the last accepted
        one) instead of ``alpha`` (not in the official code).
    early_stop : float
        0 disables. Otherwise an image stops (leaves the batch, no further passes) once, for ``patience``
        consecutive iterations after the first ``min_iterations``, its loss decrease in an iteration (measured with
        that iteration's noise draw, so it is noise-free) is below ``early_stop`` times its total decrease so far.

    Returns
    -------
    masks : (k, n_masks, 1, gh, gw)
    stats : dict
        ``step_sizes``, ``line_search_trials`` ``(k, iterations)`` (0 after an image stopped), ``iterations_run``
        ``(k,)``, ``first_score_direction`` (the score part of the first descent direction, at ``M = 1``).
    """
    masks = problem.initial_masks()
    k = len(masks)
    dev, dt = masks.device, masks.dtype
    start = torch.full((k,), float(alpha), device=dev, dtype=dt)
    steps = torch.zeros(k, int(iterations), device=dev, dtype=dt)
    trials = torch.zeros(k, int(iterations), device=dev, dtype=torch.long)
    total_decrease = torch.zeros(k, device=dev, dtype=dt)
    quiet = torch.zeros(k, device=dev, dtype=torch.long)
    iterations_run = torch.zeros(k, device=dev, dtype=torch.long)
    first_direction = None
    active = torch.arange(k, device=dev)
    for it in range(int(iterations)):
        if not active.numel():
            break
        noise = problem.begin_iteration(it)
        direction, base, score_dir = problem.gradient(masks[active], noise, active)
        if first_direction is None:
            first_direction = score_dir.clone()
        new, step, n_trials, new_loss = armijo_line_search(
            masks[active],
            direction,
            base,
            lambda m, j, active=active, noise=noise: problem.loss(m, active[j], noise),
            start[active],
            armijo_c,
            decay,
            min_alpha,
            return_losses=True,
        )
        masks[active] = new
        steps[active, it], trials[active, it] = step, n_trials
        iterations_run[active] += 1
        if warm_start:
            start[active] = torch.where(
                step > 0, (step / decay).clamp_max(float(alpha)), torch.full_like(step, float(alpha))
            )
        if early_stop > 0:
            decrease = (base - new_loss).clamp_min(0)
            total_decrease[active] += decrease
            small = decrease <= float(early_stop) * total_decrease[active]
            quiet[active] = torch.where(small, quiet[active] + 1, torch.zeros_like(quiet[active]))
            if it + 1 >= int(min_iterations):
                active = active[quiet[active] < int(patience)]
    stats = {
        "step_sizes": steps if iterations else None,
        "line_search_trials": trials if iterations else None,
        "iterations_run": iterations_run,
        "first_score_direction": first_direction,
    }
    return masks, stats


# ---------------------------------------------------------------------------------------------------------------------
# registered methods


#: Named parameter sets. ``"official"``: the counts and solver of the official CLI (khorrams/IGOS_pp ``main.py``,
#: which passes ``--ig_iter`` as the iterations and ``--iterations`` as the path steps: 20 iterations × 15 uniform
#: path steps, line search restarted at ``alpha`` every iteration, no early stop). ``"fast"`` (the default):
#: 25 iterations × 4 path steps (1/3 of the official forward+backward passes) with a warm-started line search,
#: chosen among the variants of two tuning rounds on 18 tuning image-seeds and run once on 18 held-out ones
#: (benchmarks/RESULTS.md, EfficientNet-Lite0 and real photos at 96 px): there deletion 27 % worse and insertion
#: 12 % lower than the official code's means (standard errors 27 % and 6.5 %), i.e. short of matching it. More
#: iterations with fewer path points beat the reverse at equal passes; Gauss–Legendre or randomly shifted
#: ("stratified") nodes, antithetic noise and early stopping are available but off: on that benchmark none of
#: them helped.
PRESETS = {
    "official": {"iterations": 20, "ig_iter": 15, "quadrature": "uniform", "warm_start": False, "early_stop": 0.0},
    "fast": {"iterations": 25, "ig_iter": 4, "quadrature": "uniform", "warm_start": True, "early_stop": 0.0},
}
#: iGOS++'s presets: its ``"fast"`` keeps 16 iterations × 6 path steps (0.32 of the official passes; against the
#: official ``iGOS_pp`` on 6 image-seeds: deletion 23 % better, insertion 2 % lower, benchmarks/RESULTS.md); the
#: 25 × 4 of I-GOS was not measured for iGOS++.
IGOS_PP_PRESETS = {
    **PRESETS,
    "fast": {"iterations": 16, "ig_iter": 6, "quadrature": "uniform", "warm_start": True, "early_stop": 0.0},
}
#: What replaces the map of an image whose optimisation stalled (:func:`stalled_masks`).
RECOVERIES = ("ig", "none")


class _IGOSFamily(SaliencyMethod):
    """Shared I-GOS / iGOS++ front end: baseline, score scale, grid, counters. Subclasses set :attr:`variant`.

    Attributes
    ----------
    last_forward_images, last_backward_images : int
        Images sent through forward-only / forward+backward passes by the last :meth:`attribute` call.
    last_stats : dict
        ``step_sizes`` and ``line_search_trials``, ``(k, iterations)`` each, ``iterations_run`` and
        ``score_scale`` ``(k,)``, ``stall_reasons`` (one line per image, "" when not stalled).
    last_masks : torch.Tensor
        The optimised product masks ``(k, 1, gh, gw)`` at grid resolution (after any recovery).
    last_flags : torch.BoolTensor
        ``(k,)``: True where the optimisation of that image (row of the last :meth:`attribute` call) stalled
        (:func:`stalled_masks`), whether or not the recovery replaced its map. A caller (the engine) can mark
        those maps and leave them out of global maps.
    last_recovered : torch.BoolTensor
        ``(k,)``: True where the recovery replaced a stalled map.
    """

    variant: Variant = IGOS_VARIANT
    #: The named parameter sets of this method (:data:`PRESETS`, :data:`IGOS_PP_PRESETS`).
    presets: dict = PRESETS
    spatial_output = True
    needs_grad = True
    defaults = {
        "preset": "fast",
        **PRESETS["fast"],
        "mask_size": 28,
        "l1": 1.0,
        "tv": 20.0,
        "tv_beta": 2.0,
        "alpha": 1000.0,
        "noise": 0.2,
        "antithetic": False,
        "baseline": "blur",
        "blur_sigma": None,
        "score_scale": "auto",
        "max_batch": None,
        "seed": 0,
        "armijo_c": 1e-4,
        "decay": 0.2,
        "min_alpha": 1e-5,
        "recovery": "ig",
        "stall_move_tol": 0.01,
        "stall_tie_fraction": 0.9,
    }
    param_rules = {
        "mask_size": Int(1, pair=True),
        "iterations": Int(1),
        "ig_iter": Int(1),
        "l1": Float(0),
        "tv": Float(0),
        "tv_beta": Float(0, open_low=True),
        "alpha": Float(0, open_low=True),
        "noise": Float(0),
        "antithetic": Flag(),
        "baseline": Choice(*BASELINES),
        "blur_sigma": Float(0, open_low=True, none=True),
        "score_scale": Float(0, open_low=True, words=("auto",)),
        "max_batch": Int(1, none=True),
        "seed": Int(0, 2**32 - 1),
        "armijo_c": Float(0, 1, open_low=True, open_high=True),
        "decay": Float(0, 1, open_low=True, open_high=True),
        "min_alpha": Float(0, open_low=True),
        "warm_start": Flag(),
        "preset": Choice(*PRESETS),
        "quadrature": Choice(*QUADRATURES),
        "early_stop": Float(0),
        "recovery": Choice(*RECOVERIES),
        "stall_move_tol": Float(0),
        "stall_tie_fraction": Float(0, 1, open_low=True),
    }

    last_forward_images = 0
    last_backward_images = 0
    last_stats: dict = {}
    last_masks = None
    last_flags = None
    last_recovered = None

    def __init__(self, model, probability: bool = False, **params):
        preset = self.presets.get(params.get("preset", "fast"), {})  # an unknown preset is refused by its rule
        super().__init__(model, probability, **{**preset, **params})

    def passes_per_map(self) -> int:
        """About ``iterations · terms · N · (1 + trials / 2)``: one forward+backward per path image for the
        gradient, and :data:`TYPICAL_TRIALS` (:data:`TYPICAL_WARM_TRIALS` with ``warm_start``) forward-only
        line-search evaluations (a forward ≈ half the cost)."""
        p = self.params
        trials = TYPICAL_WARM_TRIALS if p["warm_start"] else TYPICAL_TRIALS
        per_iter = len(self.variant.terms) * int(p["ig_iter"]) * (1 + trials / 2)
        return max(1, round(int(p["iterations"]) * per_iter))

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """The baseline ``b``: blur (default, σ = 6.6 % of the shorter side), zero or black."""
        card, kind = self.model.card, self.params["baseline"]
        sigma = self.params["blur_sigma"]
        if kind == "blur" and sigma is None:
            sigma = BLUR_SIGMA_FRACTION * min(x.shape[-2:])
        return make_fill(kind, x, card.mean, card.std, sigma)

    def _score(self, z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.forward_module(z).gather(1, targets.view(-1, 1)).squeeze(1)

    def _end_scores(self, x, b, targets, max_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``f(x)`` and ``f(b)`` for every image (forward only, chunked)."""
        both = torch.cat([x, b])
        t2 = torch.cat([targets, targets])
        with torch.no_grad():
            out = torch.cat(
                [self._score(both[i : i + max_batch], t2[i : i + max_batch]) for i in range(0, len(both), max_batch)]
            )
        return out[: len(x)], out[len(x) :]

    def _label_name(self, target: int) -> str:
        labels = list(getattr(self.model.card, "labels", []) or [])
        return repr(labels[target]) if 0 <= target < len(labels) else f"#{target}"

    def _recover(self, masks: torch.Tensor, flags: torch.Tensor, first_direction) -> torch.Tensor:
        """Product masks ``(k, 1, gh, gw)`` with stalled rows replaced by ``1 − g⁺ / max g⁺`` (``g`` the score part
        of the first descent direction, summed over the masks: the integrated gradient of the score along the
        blur-to-image path; ``g⁺`` its positive part, the cells whose deletion lowers the score)."""
        if first_direction is None or not bool(flags.any()):
            return masks
        g = first_direction.sum(dim=1).clamp_min(0)  # (k, 1, gh, gw)
        top = g.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
        usable = flags.to(masks.device) & (top.view(-1) > 0)
        rec = 1 - g / top.clamp_min(torch.finfo(g.dtype).tiny)
        return torch.where(usable.view(-1, 1, 1, 1), rec, masks)

    def attribute(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Maps ``1 − U(M)`` ``(k, 1, H, W)``; sets the counters, :attr:`last_flags` and warns about stalled images.

        Warns
        -----
        RuntimeWarning
            One per stalled image, naming its row in ``x``, its label and what the recovery did.
        """
        p = self.params
        x = x.detach().clone()  # never an inference tensor: composites are differentiated w.r.t. the masks
        targets = torch.as_tensor(targets, device=x.device).long().view(-1)
        b = self.baseline(x)
        max_batch = max(1, int(p["max_batch"] or path_batch_size(x)))
        f_x, f_b = self._end_scores(x, b, targets, max_batch)
        scale = score_scale(f_x, f_b, p["score_scale"], self.probability)
        problem = PathProblem(
            self._score,
            x,
            b,
            targets,
            scale,
            self.variant,
            mask_grid_shape(x.shape[-2:], p["mask_size"]),
            p["ig_iter"],
            p["l1"],
            p["tv"],
            p["tv_beta"],
            p["noise"],
            max_batch,
            p["seed"],
            p.get("bilateral_sigma", 0.01),
            p["quadrature"],
            bool(p["antithetic"]),
        )
        masks, stats = optimise_masks(
            problem,
            p["iterations"],
            p["alpha"],
            p["armijo_c"],
            p["decay"],
            p["min_alpha"],
            bool(p["warm_start"]),
            float(p["early_stop"]),
        )
        first = stats.pop("first_score_direction")
        product = masks.prod(dim=1)
        flags, reasons = stalled_masks(product, float(p["stall_move_tol"]), float(p["stall_tie_fraction"]))
        recovered = torch.zeros_like(flags)
        if p["recovery"] == "ig":
            product = self._recover(product, flags, first)
            recovered = flags & ~stalled_masks(product, float(p["stall_move_tol"]), float(p["stall_tie_fraction"]))[0]
        self._warn_stalled(flags, recovered, reasons, targets)
        self.last_forward_images = problem.forward_images + 2 * len(x)
        self.last_backward_images = problem.backward_images
        self.last_stats = {**stats, "score_scale": scale, "stall_reasons": reasons}
        self.last_masks, self.last_flags, self.last_recovered = product.detach(), flags, recovered
        saliency = 1 - upsample_masks(product, x.shape[-2:])
        return saliency.clamp_(0, 1).detach()

    def _warn_stalled(self, flags, recovered, reasons, targets) -> None:
        for i in torch.nonzero(flags).view(-1).tolist():
            t = int(targets[i])
            if recovered[i]:
                what = "its map is the first iteration's integrated-gradient signal (recovery='ig')"
            elif self.params["recovery"] == "ig":
                what = "the recovery found no positive integrated-gradient signal: the map is uninformative"
            else:
                what = "the map is kept as is (recovery='none'); its deletion/insertion order is mostly ties"
            warnings.warn(
                f"{self.name}: image {i} (label {self._label_name(t)}, class index {t}): the optimisation "
                f"stalled: {reasons[i]}; {what}. The map is flagged in last_flags.",
                RuntimeWarning,
                stacklevel=3,
            )


@register_method
class IGOS(_IGOSFamily):
    """I-GOS (Qi, Khorram, Li, AAAI 2020): one deletion mask optimised with integrated gradients.

    Parameters
    ----------
    model : LoadedModel
    probability : bool
        Explain the probability instead of the logit (default).
    preset : {"fast", "official"}
        Named values of ``iterations``, ``ig_iter``, ``quadrature``, ``warm_start`` and ``early_stop``
        (:data:`PRESETS`); explicit parameters override them. ``"official"``: the official CLI's 20 iterations ×
        15 uniform path steps, no warm start, no early stop. ``"fast"`` (default): 25 iterations × 4 uniform path
        steps with a warm-started line search: 1/3 of the official forward+backward passes and ~0.1 of its
        forwards (benchmarks/RESULTS.md for the quality measured against the official code).
    mask_size : int or (int, int)
        Shorter side of the mask grid (the other follows the aspect ratio), or the grid itself. Default 28.
    iterations : int
        Most optimisation steps (preset).
    ig_iter : int
        Path points ``N`` of the integrated gradient (preset).
    quadrature : {"uniform", "gausslegendre", "stratified"}
        Path rule (:func:`path_quadrature`): the official right Riemann sum ``t_k = k/N``, Gauss–Legendre, or the
        Riemann grid shifted by a fresh random fraction of a step every iteration.
    antithetic : bool
        Consecutive path points get noise ``ε`` and ``−ε`` (False).
    l1, tv, tv_beta : float
        Weights of ``mean|1 − M|`` (1) and of TV (20), TV exponent β (2).
    alpha : float
        First line-search step (1000).
    noise : float
        Std of the Gaussian noise added to each path image, normalised units (0.2; 0 disables).
    baseline : {"blur", "zero", "black"}
        What deleted pixels become (blur).
    blur_sigma : float, optional
        Blur σ in pixels; None = 6.6 % of the shorter side (the official 51 × 51, σ = 50 kernel at 224 px).
    score_scale : "auto" or float
        Divisor of the score terms; "auto" = ``max(|f(x) − f(b)|, floor)`` per image (see Notes).
    max_batch : int, optional
        Most path images per model forward; None (default) = :func:`path_batch_size`: 32 on accelerators, on a CPU
        as many as fit :data:`CPU_PATH_PIXELS` (4 images of 384 × 512).
    seed : int
        Seed of the path noise (0).
    armijo_c, decay, min_alpha : float
        Armijo constant (1e-4), backtracking factor (0.2), smallest step tried (1e-5).
    warm_start : bool
        Start each line search at ``min(alpha, previous accepted step / decay)`` per image (False: always
        ``alpha``, as the official code, whose first 3–4 trials of almost every search are rejected).
    early_stop : float
        Per-image early stopping tolerance (0 = off): an image stops after two consecutive iterations (past the
        third) whose loss decrease — measured with the iteration's own noise draw — is below ``early_stop`` times
        its total decrease so far. Stopped images leave the model batches.
    recovery : {"ig", "none"}
        What happens to a stalled image's map (see Notes): ``"ig"`` replaces it by the first iteration's
        integrated-gradient signal, ``"none"`` keeps it. Either way it is flagged in :attr:`last_flags` and a
        ``RuntimeWarning`` names the image and its label.
    stall_move_tol, stall_tie_fraction : float
        Stall rules of :func:`stalled_masks`: the mask moved less than ``stall_move_tol`` (0.01) everywhere, or
        more than ``stall_tie_fraction`` (0.9) of its cells tie at the top saliency.

    Notes
    -----
    Follows khorrams/IGOS_pp ``methods.py::IGOS`` (methods.md §2.3; ``preset="official"`` gives the official CLI's
    counts, 20 iterations × 15 path steps — its ``main.py`` passes ``--ig_iter`` as ``iterations`` and
    ``--iterations`` as ``ig_iter`` — while the function defaults there are 15 × 20): mask initialised to ones,
    ``φ(x, b, U(M))`` with bilinear ``align_corners=True`` upsampling, loss
    ``S(M) + L1·mean|1 − M| + L2·TV(M)`` where ``S`` is the noisy path average
    ``(1/N) Σ_k f_c(φ(x, b, (k/N)·U(M)) + ε_k)``, descent direction = its gradient, step
    ``M ← clip(M − α g, 0, 1)`` by Armijo backtracking, saliency ``1 − U(M)``. Choices where the source is silent
    or where this implementation departs from it:

    * **Score scale.** The official ``alpha = 1000`` assumes softmax probabilities. Here every score term is divided
      per image by ``max(|f(x) − f(b)|, floor)`` (floor 0.1 for probabilities, 0.4 for logits), i.e. measured in
      units of the image's own full-deletion score change. The optimisation is then invariant to a rescaling of the
      logits, the same ``alpha`` works for logits (default, as in the published UWF code) and probabilities, and a
      confident probability (``f(x) − f(b) ≈ 1``) matches the official scale. ``score_scale=1.0`` restores it.
    * **Non-square grids.** ``mask_size`` is the shorter grid side; the official code assumes square images.
    * **Common random numbers.** One noise draw per iteration (depending only on ``seed`` and the iteration) serves
      the gradient, the line search's base loss (reused from the gradient's forward passes instead of a fresh
      forward) and every trial, so accept/reject reflects the mask change rather than the noise. The official code
      draws fresh noise in every evaluation.
    * **Batching.** All images are optimised together with per-image step sizes; the official code loops over
      images for the gradient. An image's map does not depend on the other images in its batch (up to rounding
      differences of batched convolutions). The noise is drawn independently per score term and path step and is
      the same for every image of the batch.
    * **Failed line search.** An image that accepts no step ``≥ min_alpha`` keeps its mask for that iteration (the
      official code applies the last, tiny, rejected step).
    * The original zhongangqi/IGOS L1 schedule (dividing ``L1`` when the score stalls) is not used, as in IGOS_pp.
    * The map is ``1 − U(M)`` in ``[0, 1]`` without the min-max rescaling of the official ``save_heatmap``.
    * **Fewer passes (``preset="fast"``, not in the official code).** More iterations with fewer path points
      (25 × 4 instead of 20 × 15: the integrated gradient of 4 points is a coarse, noisy estimate, but 25 of them
      summed by the optimisation average the noise out) and a warm-started line search (the official search
      restarts at ``alpha = 1000`` and rejects its first 3–4 trials in almost every iteration). Optional, off in
      both presets (measured not to help, benchmarks/RESULTS.md): Gauss–Legendre or per-iteration randomly shifted
      path points (``quadrature``; Gauss–Legendre integrates the path *score* 10–20× more accurately than the
      Riemann sum at equal points, the mask *gradient* of a real network only sometimes better), antithetic noise
      (``antithetic``) and per-image early stopping (``early_stop``).
    * **Stalled optimisations.** When ``f(x) − f(b)`` is tiny (a weakly predicted class whose blurred baseline
      scores like the image), the score gradient is far smaller than the slope of ``L1 · mean|1 − M|`` just below
      ``M = 1``; every trial step then raises the loss, the Armijo search rejects all of them and the mask stays at
      1 — a constant map whose deletion/insertion order is the tie order. Such images are detected
      (:func:`stalled_masks`), warned about and flagged; the default recovery replaces the map by
      ``g⁺ / max g⁺``, ``g`` the score part of the first descent direction (the integrated gradient of the path
      score w.r.t. the mask at ``M = 1``, i.e. how much blurring each cell lowers the score), which needs no extra
      pass. The source is silent on such images.
    """

    name = "igos"
    description = "I-GOS: mask optimised with integrated gradients, L1 + TV, Armijo line search (saliency = 1 − M)."
    variant = IGOS_VARIANT
    defaults = dict(_IGOSFamily.defaults)


@register_method
class IGOSPlusPlus(_IGOSFamily):
    """iGOS++ (Khorram, Lawson, Li, ACM-CHIL 2021): deletion and insertion masks, bilateral TV.

    Parameters are those of :class:`IGOS`, plus

    bilateral_sigma : float
        σ of the bilateral TV edge weights ``exp(−Δx² / σ)`` on the normalised image (0.01).

    Notes
    -----
    Follows khorrams/IGOS_pp ``methods.py::iGOS_pp`` (methods.md §2.4): masks ``M_d``, ``M_i`` initialised to ones;
    with ``D(m)`` the noisy deletion path score (``φ(x, b, t·m)``) and ``S_I(m)`` the insertion one
    (``φ(b, x, t·m)``), the line-search loss is
    ``D(U_d) − S_I(U_i) + D(U_d U_i) − S_I(U_d U_i) + L1·mean|1 − M_d M_i| + L2·BTV(x, M_d M_i)``; the descent
    direction is half the gradient of the four score terms plus the regulariser gradient; one Armijo search moves
    both masks; the saliency is ``1 − U(M_d M_i)``. Every choice listed in :class:`IGOS` applies. In addition the
    bilateral TV weights use the channel mean of ``exp(−Δx² / σ)`` in both directions (the official code takes the
    channel mean before the exponential for vertical neighbours and after it for horizontal ones).
    """

    name = "igos++"
    description = "iGOS++: deletion + insertion masks with integrated gradients, bilateral TV, Armijo line search."
    variant = IGOS_PP_VARIANT
    presets = IGOS_PP_PRESETS
    defaults = {**_IGOSFamily.defaults, **IGOS_PP_PRESETS["fast"], "bilateral_sigma": 0.01}
    param_rules = {**_IGOSFamily.param_rules, "bilateral_sigma": Float(0, open_low=True)}
