"""Stalled I-GOS optimisations: which masks did not move or tie at the top, and the recovery choices."""

from __future__ import annotations

import torch

__all__ = ["stalled_masks", "RECOVERIES"]

#: What replaces the map of an image whose optimisation stalled (:func:`stalled_masks`): ``"rescale"`` its own
#: saliency stretched to a maximum of 1 where that gives a usable map (the mask moved a little, its top cells do not
#: tie), else the integrated-gradient signal; ``"ig"`` always the integrated-gradient signal; ``"none"`` nothing.
RECOVERIES = ("rescale", "ig", "none")


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
