"""The I-GOS optimisation: the per-image Armijo line search and the loop that drives it (:func:`optimise_masks`).

The loop is kept whole in one function: warm start, early stopping and the statistics it returns all act on the
same per-image state within one iteration, and read best together.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .path import PathProblem

__all__ = ["armijo_line_search", "optimise_masks"]


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
    failed: str = "keep",
):
    """Per-image backtracking line search on the box ``[0, 1]``, all images' trials in one ``loss_fn`` call.

    Image ``i`` accepts the first ``α ∈ {alpha, alpha·decay, …} (≥ min_alpha)`` with
    ``L(clip(M_i − α g_i)) ≤ L(M_i) − c · α · ‖g_i‖²``; an image that accepts (or runs out of steps) leaves the
    search. With ``failed="keep"`` the steps end at ``min_alpha`` and an image that never accepts keeps its mask;
    with ``failed="last"`` (the official ``line_search``) the search goes on to the first step below ``min_alpha``
    and an image that rejects that one too takes it anyway.

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
    failed : {"keep", "last"}
        What an image whose every trial is rejected does (see above).

    Returns
    -------
    new_masks : (k, ...)
    step : (k,)
        Accepted step size (with ``failed="last"`` also the step taken after a failed search), 0 where the mask
        was kept.
    trials : (k,)
        Loss evaluations per image.
    new_loss : (k,)
        Only with ``return_losses``.
    """
    if failed not in ("keep", "last"):
        raise ValueError(f"failed must be 'keep' or 'last', got {failed!r}")
    official_tail = failed == "last"
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
        take = ok | (a < min_alpha) if official_tail else ok  # the official applies its last, rejected step
        new[active[take]] = trial[take]
        new_loss[active[take]] = trial_loss[take]
        step[active[take]] = a[take]
        active = active[~take & ((a >= min_alpha) if official_tail else (a * decay >= min_alpha))]
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
    failed_search: str = "keep",
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
    failed_search : {"keep", "last"}
        ``failed`` of :func:`armijo_line_search`: keep the mask after a failed search, or take the last (tiny) step
        tried, as the official code.

    Returns
    -------
    masks : (k, n_masks, 1, gh, gw)
    stats : dict
        ``step_sizes``, ``line_search_trials`` ``(k, iterations)`` (0 after an image stopped), ``iterations_run``
        ``(k,)``, ``score_direction_sum`` (the score part of the descent directions summed over each image's
        iterations: for a mask stuck at ``M = 1``, the integrated gradient there averaged over every noise draw).
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
    direction_sum = None
    active = torch.arange(k, device=dev)
    for it in range(int(iterations)):
        if not active.numel():
            break
        noise = problem.begin_iteration(it)
        direction, base, score_dir = problem.gradient(masks[active], noise, active)
        if direction_sum is None:
            direction_sum = torch.zeros_like(masks)
        direction_sum[active] += score_dir
        draws = iter(range(1, 1 << 30))  # fresh noise: evaluation 0 is the gradient, 1 the base loss, then trials
        if problem.fresh:  # the official search: its base loss and every trial with new noise
            base = problem.loss(masks[active], active, problem.fresh_draw(it, next(draws)))

        def trial_loss(m, j, active=active, noise=noise, it=it, draws=draws):
            return problem.loss(m, active[j], problem.fresh_draw(it, next(draws)) if problem.fresh else noise)

        new, step, n_trials, new_loss = armijo_line_search(
            masks[active],
            direction,
            base,
            trial_loss,
            start[active],
            armijo_c,
            decay,
            min_alpha,
            return_losses=True,
            failed=failed_search,
        )
        masks[active] = new
        steps[active, it], trials[active, it] = step, n_trials
        iterations_run[active] += 1
        if warm_start:
            start[active] = torch.where(  # a failed search (no step, or the official tiny one) restarts at alpha
                step >= min_alpha, (step / decay).clamp_max(float(alpha)), torch.full_like(step, float(alpha))
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
        "score_direction_sum": direction_sum,
    }
    return masks, stats
