"""Gradients of several labels from one forward pass, and Integrated Gradients on a shared, adaptive path.

**One path, all labels.** When one image's maps are wanted for ``m`` labels, each path image is forwarded once and
the ``m`` labels' gradients are taken from that one graph (one backward per label on the retained graph). Measured on
the 2-core development CPU (EfficientNet-Lite0 at 224², the demo net at 384 × 512; 8 labels, 4 path images per pass):
the retained graph took 0.60–0.63 × the time of 8 separate forward+backward passes, ``torch.autograd.grad(...,
is_grads_batched=True)`` (a vmapped backward) 0.91–0.99 ×, so the retained graph is used. A label's backward
is about 0.6 of a forward+backward pass, so the saving is the shared forward: 8 labels of an EfficientNet-Lite0
image took 3.8 × one Captum IG-32 call instead of 8.8 × (``benchmarks/RESULTS.md``). SmoothGrad and gradient SHAP share
each noisy sample's forward the same way (:mod:`.noise`, :func:`backward_labels`).

**Nodes where the integral is** (``integration="adaptive"``): the path's end points (the baseline and the image) are
nodes, so ``f(baseline)`` and ``f(image)`` come from the gradient passes themselves, and the integral is the
trapezoid rule on the sorted nodes. Starting from the end points and ``INITIAL_INTERIOR`` Gauss–Legendre nodes, each
round bisects the ``ROUND_NODES`` intervals whose estimated error ``Δt · ‖(x − b) ⊙ (g(t_b) − g(t_a))‖`` (the
interval's length times the change of the attribution integrand across it, summed over the labels, each relative to
its map's norm) is largest, until ``n_steps`` forward+backward nodes are spent. No forward-only scan is needed (the
forward-only pass count is 0); the completeness error is reported per map. The constants were chosen on stored
path gradients of three photos (EfficientNet-Lite0); at 24 nodes its maps are about as close to a 512-step reference
as Captum's Gauss–Legendre IG-32 on held-out photos (0.73 of the time), and no better than Gauss–Legendre at equal
passes on the demo net, so it is an option, not the default. The labels of one image share its nodes (the
intervals' errors are summed over the labels), so its maps of several labels differ slightly from its one-label
maps; the Captum rules give the same maps either way.

Completeness of a map: ``|Σ attribution − (f(x) − f(b))| / |f(x) − f(b)|`` (:func:`completeness_error`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "PassCount",
    "backward_labels",
    "label_gradients",
    "path_integral",
    "adaptive_path_integral",
    "rule_nodes",
    "completeness_error",
    "INITIAL_INTERIOR",
    "ROUND_NODES",
]

#: Interior Gauss–Legendre nodes the adaptive rule starts from (besides the two end points).
INITIAL_INTERIOR = 2
#: Intervals bisected per round of the adaptive rule (one model batch per round and image).
ROUND_NODES = 2


@dataclass
class PassCount:
    """Model passes of one call, in images: ``forward`` without a graph (forward-only), ``forward_backward`` with a
    graph, ``backward`` label backwards through those graphs (``forward_backward × labels``)."""

    forward: int = 0
    forward_backward: int = 0
    backward: int = 0

    def as_dict(self) -> dict:
        return {"forward": self.forward, "forward_backward": self.forward_backward, "backward": self.backward}


def backward_labels(out, z, columns, row_weight, count: PassCount, consume) -> None:
    """``∂(Σ_r w_r · out[r, target_r]) / ∂z`` for each label column, one backward each on one retained graph; each
    gradient is handed to ``consume(j, gradient)`` at once, so only one label's gradient is alive at a time."""
    rows = torch.arange(len(out), device=out.device)
    last = max((j for j, col in enumerate(columns) if bool((col >= 0).any())), default=-1)
    for j, col in enumerate(columns):
        valid = col >= 0
        if not bool(valid.any()):  # no image of this batch has a j-th label: no backward
            consume(j, torch.zeros_like(z))
            continue
        v = torch.zeros_like(out)
        v[rows[valid], col[valid]] = row_weight.to(device=out.device, dtype=out.dtype)[valid]
        (g,) = torch.autograd.grad(out, z, v, retain_graph=j < last)
        count.backward += int(valid.sum())
        consume(j, g)


def label_gradients(forward, x: torch.Tensor, targets: torch.Tensor, count: PassCount | None = None) -> torch.Tensor:
    """Input gradients of several labels per image from one forward pass.

    Parameters
    ----------
    forward : callable
        ``x -> scores (k, n_outputs)``.
    x : (k, c, H, W)
    targets : (k, m) long
        Output index of each wanted map; ``-1`` where an image has fewer maps.

    Returns
    -------
    (k, m, c, H, W) tensor; zero where the target is ``-1``.
    """
    count = count if count is not None else PassCount()
    z = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = forward(z)
        count.forward_backward += len(z)
        grads = torch.zeros((len(z), targets.shape[1], *z.shape[1:]), dtype=z.dtype, device=z.device)
        columns = [targets[:, j] for j in range(targets.shape[1])]
        backward_labels(out, z, columns, torch.ones(len(z)), count, lambda j, g: grads[:, j].copy_(g))
    return grads


def rule_nodes(rule: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of Captum's path rule ``rule`` (``riemann_*`` or ``gausslegendre``) with ``n`` steps."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(rule)
    return np.asarray(alphas(n), np.float64), np.asarray(step_sizes(n), np.float64)


def _run_jobs(forward, x, baseline, job_image, job_t, job_w, columns, path_batch, count, keep=False):
    """Forward+backward of the path images ``b_i + t (x_i − b_i)`` of the jobs, in batches of ``path_batch``.

    Returns ``(sums, per_job, scores)``: ``sums[j]`` (k, c, H, W) = Σ_jobs w · gradient of label column ``j`` (None
    when ``keep``);
    ``per_job[j]`` (jobs, c, H, W) the unweighted gradients when ``keep`` (else None); ``scores`` (jobs, m) the
    targets' scores at the path images.
    """
    m = len(columns)
    delta = x - baseline
    sums = None if keep else [torch.zeros_like(x) for _ in range(m)]
    per_job = (
        [torch.empty((len(job_t), *x.shape[1:]), dtype=x.dtype, device=x.device) for _ in range(m)] if keep else None
    )
    scores = torch.zeros((len(job_t), m), dtype=torch.float64)
    t_all = torch.as_tensor(job_t, dtype=x.dtype, device=x.device)
    w_all = torch.as_tensor(job_w, dtype=torch.float64)
    img_all = torch.as_tensor(job_image, dtype=torch.long, device=x.device)
    for start in range(0, len(job_t), max(1, int(path_batch))):
        sl = slice(start, min(len(job_t), start + max(1, int(path_batch))))
        img = img_all[sl]
        z = (baseline[img] + t_all[sl].view(-1, *([1] * (x.ndim - 1))) * delta[img]).requires_grad_(True)
        cols = [c[img] for c in columns]
        with torch.enable_grad():
            out = forward(z)
            count.forward_backward += len(z)
            rows = torch.arange(len(out), device=out.device)
            for j, c in enumerate(cols):
                scores[sl, j] = out[rows, c.clamp_min(0)].detach().double().cpu()
            weight = torch.ones(len(z)) if keep else w_all[sl]

            def consume(j, g, sl=sl, img=img):
                if keep:
                    per_job[j][sl] = g
                else:
                    sums[j].index_add_(0, img, g)

            backward_labels(out, z, cols, weight, count, consume)
        del z, out
    return sums, per_job, scores


def completeness_error(attr_sum: torch.Tensor, f_image: torch.Tensor, f_baseline: torch.Tensor) -> torch.Tensor:
    """``|Σ attribution − (f(x) − f(b))| / |f(x) − f(b)|`` (NaN where the score does not change along the path)."""
    change = (f_image - f_baseline).double()
    err = (attr_sum.double() - change).abs() / change.abs()
    return torch.where(change != 0, err, torch.full_like(err, float("nan")))


def path_integral(forward, x, baseline, targets, nodes, weights, path_batch: int, count: PassCount | None = None):
    """Integrated Gradients of several labels per image on one fixed rule, each path image forwarded once.

    Parameters
    ----------
    forward : callable ``x -> scores (k, n_outputs)``
    x, baseline : (k, c, H, W)
    targets : (k, m) long, ``-1`` = no map
    nodes, weights : (n,) the path rule (:func:`rule_nodes`)
    path_batch : int
        Path images per forward.

    Returns
    -------
    (k, m, c, H, W) attributions (zero where the target is ``-1``).
    """
    count = count if count is not None else PassCount()
    k, n = len(x), len(nodes)
    # node-major job order, as Captum's IG (steps outer, images inner)
    job_image = np.tile(np.arange(k), n)
    job_t = np.repeat(np.asarray(nodes, np.float64), k)
    job_w = np.repeat(np.asarray(weights, np.float64), k)
    columns = [targets[:, j] for j in range(targets.shape[1])]
    sums, _, _ = _run_jobs(forward, x, baseline, job_image, job_t, job_w, columns, path_batch, count)
    delta = (x - baseline).detach()
    out = torch.stack([s * delta for s in sums], 1)
    return out * (targets >= 0).view(k, -1, *([1] * (x.ndim - 1))).to(out.dtype)


@dataclass
class _Path:
    """One image's adaptive path: sorted nodes, each with its per-label gradients and scores, and per interval the
    change of ``delta ⊙ g`` across it (norm per label), kept up to date as nodes are inserted."""

    delta: torch.Tensor
    t: list = field(default_factory=list)
    grads: list = field(default_factory=list)  # per node: (m, c, H, W)
    scores: list = field(default_factory=list)  # per node: (m,) float64
    change: list = field(default_factory=list)  # per interval: (m,) float64

    def _change(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        return ((b - a) * self.delta).flatten(1).norm(dim=1).double().cpu().numpy()

    def add(self, t, grads, scores):
        i = int(np.searchsorted(self.t, t))
        self.t.insert(i, float(t))
        self.grads.insert(i, grads)
        self.scores.insert(i, scores)
        if len(self.t) == 1:
            return
        if 0 < i < len(self.t) - 1:  # split interval i - 1
            self.change[i - 1 : i] = [self._change(self.grads[i - 1], grads), self._change(grads, self.grads[i + 1])]
        elif i == 0:
            self.change.insert(0, self._change(grads, self.grads[1]))
        else:
            self.change.append(self._change(self.grads[i - 1], grads))

    def weights(self) -> np.ndarray:
        """Trapezoid weights on the sorted nodes (the end points 0 and 1 are nodes)."""
        t = np.asarray(self.t)
        w = np.zeros(len(t))
        w[:-1] += np.diff(t) / 2
        w[1:] += np.diff(t) / 2
        return w

    def integral(self) -> torch.Tensor:
        """``delta ⊙ Σ_k w_k g_k``, ``(m, c, H, W)``."""
        total = torch.zeros_like(self.grads[0])
        for w, g in zip(self.weights(), self.grads):
            total.add_(g, alpha=float(w))
        return total * self.delta

    def split_candidates(self, scale: np.ndarray) -> np.ndarray:
        """Estimated error of each interval: its length × the change of ``delta ⊙ g`` across it, summed over the
        labels, each relative to ``scale`` (the norm of the label's first map)."""
        return np.diff(np.asarray(self.t)) * (np.asarray(self.change) / scale).sum(1)


def adaptive_path_integral(
    forward, x, baseline, targets, n_steps: int, path_batch: int, count: PassCount | None = None
):
    """Integrated Gradients with nodes placed where the integrand changes (module docstring), all labels at once.

    Parameters
    ----------
    forward, x, baseline, targets, path_batch : as :func:`path_integral`
    n_steps : int
        Forward+backward path images per image (at least 3: the two end points and one interior node).

    Returns
    -------
    (attributions (k, m, c, H, W), f_image (k, m), f_baseline (k, m), nodes: list of arrays per image)
    """
    count = count if count is not None else PassCount()
    k, m = len(x), targets.shape[1]
    n_steps = max(3, int(n_steps))
    columns = [targets[:, j] for j in range(m)]
    valid = targets >= 0
    delta = (x - baseline).detach()
    paths = [_Path(delta[i]) for i in range(k)]

    def evaluate(jobs):  # jobs: list of (image, t)
        if not jobs:
            return
        img = np.array([j[0] for j in jobs])
        ts = np.array([j[1] for j in jobs], np.float64)
        _, per_job, scores = _run_jobs(
            forward, x, baseline, img, ts, np.ones(len(ts)), columns, path_batch, count, keep=True
        )
        for r, (i, t) in enumerate(jobs):
            paths[i].add(t, torch.stack([g[r] for g in per_job]), scores[r])

    first = np.r_[0.0, rule_nodes("gausslegendre", min(INITIAL_INTERIOR, n_steps - 2))[0], 1.0]
    evaluate([(i, float(t)) for i in range(k) for t in first])
    # each label's scale: the norm of its first map (a label without a map gets an infinite scale: no weight)
    scales = [
        np.where(valid[i].cpu().numpy(), p.integral().flatten(1).norm(dim=1).double().cpu().numpy(), np.inf)
        for i, p in enumerate(paths)
    ]
    scales = [np.where(sc > 0, sc, np.inf) for sc in scales]
    while len(paths[0].t) < n_steps:
        jobs = []
        for i, p in enumerate(paths):
            err = p.split_candidates(scales[i])
            take = min(ROUND_NODES, n_steps - len(p.t), len(err))
            for a in np.argsort(-err, kind="stable")[:take]:
                jobs.append((i, (p.t[a] + p.t[a + 1]) / 2))
        evaluate(jobs)
    attrs, f_image, f_base, nodes = [], [], [], []
    for p in paths:
        attrs.append(p.integral())
        f_image.append(p.scores[-1])
        f_base.append(p.scores[0])
        nodes.append(np.asarray(p.t))
    out = torch.stack(attrs) * valid.view(k, m, *([1] * (x.ndim - 1))).to(x.dtype)
    return out, torch.stack(f_image), torch.stack(f_base), nodes
