"""The integrated-gradient path: score scale, quadrature, and the batched path loss and its gradient.

:class:`PathProblem` evaluates the score terms of a :class:`~.variants.Variant` along the path for ``k`` images at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .masks import bilateral_tv_norm, bilateral_weights, l1_norm, tv_norm, upsample_masks
from .variants import Variant

__all__ = ["SCORE_FLOOR", "score_scale", "QUADRATURES", "path_quadrature", "PathProblem"]

#: Lower bound of the automatic score scale ``|f(x) − f(b)|``: 0.1 for probabilities; 0.4 for logits (the logit
#: change that moves a sigmoid probability near 0.5 by 0.1, slope 1/4).
SCORE_FLOOR = {"probability": 0.1, "logit": 0.4}


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
    fresh_noise : bool
        The official noise: every evaluation (the gradient, the line search's base loss, each trial) gets new
        noise (:meth:`fresh_draw`) instead of one draw per iteration shared by the gradient and all trials
        (:meth:`noise`).
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
        fresh_noise: bool = False,
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
        self.quadrature, self.antithetic, self.fresh = quadrature, bool(antithetic), bool(fresh_noise)
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

    def fresh_draw(self, iteration: int, evaluation: int) -> torch.Tensor | None:
        """Path noise ``(n_terms · N, H, W, c)`` of one evaluation of ``iteration`` with ``fresh_noise``; None
        without noise.

        Evaluation 0 is the gradient, 1 the line search's base loss, 2, 3, … its trials. The draw depends only on
        ``(seed, iteration, evaluation)`` and is shared by the images of the call, so an image's result does not
        depend on its batch neighbours (all images of one search are at the same trial). Drawn in
        ``(rows, c, H, W)`` order, as the official ``torch.randn_like`` on a contiguous ``(1, N, c, H, W)`` batch.
        """
        if self.noise_std <= 0:
            return None
        gen = _noise_generator(torch.device("cpu"), _mix_seed(self.seed, iteration, 2, evaluation))
        c, h, w = self.x.shape[1:]
        rows = self.n_terms * self.ig_iter
        eps = torch.randn((rows, c, h, w), generator=gen, dtype=self.x.dtype).permute(0, 2, 3, 1)
        return eps.contiguous().to(self.x.device).mul_(self.noise_std)

    def begin_iteration(self, iteration: int) -> torch.Tensor | None:
        """The path noise of ``iteration`` (:meth:`noise`); with the ``"stratified"`` rule also this iteration's
        path nodes, shifted by a uniform draw that depends only on ``(seed, iteration)``. The gradient and every
        line-search trial of the iteration share both."""
        if self.quadrature == "stratified":
            shift = np.random.default_rng(_mix_seed(self.seed, iteration, 1)).random()
            nodes, _ = path_quadrature(self.ig_iter, "stratified", shift)
            self.path_t = torch.as_tensor(nodes, device=self.x.device, dtype=self.x.dtype)
        return self.fresh_draw(iteration, 0) if self.fresh else self.noise(iteration)

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
