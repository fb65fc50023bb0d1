"""I-GOS masks: the grid shape, bilinear upsampling to the image, the composite and the regularisers."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = [
    "mask_grid_shape",
    "interpolation_matrix",
    "upsample_masks",
    "composite",
    "l1_norm",
    "tv_norm",
    "bilateral_weights",
    "bilateral_tv_norm",
]


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
