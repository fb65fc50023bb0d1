"""Erased / restored images of a PEPPR ranking in raw pixel space, for display and TIFF export.

The fills and masks are the curve engine's (:mod:`napari_global_xai.perturb`); only the mapping back to raw pixels
is added here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io_utils import atomic_path, json_text
from ..perturb.blend import apply_fill
from ..perturb.rankings import removed_mask

__all__ = ["filled_images", "write_filled_tiff"]


def _normalisation(model, images: np.ndarray):
    """(normalised (n, c, H, W) tensor, mean, std, pixel scale) on the CPU; identity without a model."""
    if model is None:
        arr = np.asarray(images, np.float32)
        arr = arr[..., None] if arr.ndim == 3 else arr
        c = arr.shape[-1]
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), [0.0] * c, [1.0] * c, 1.0
    card = model.card
    return model.preprocess(images, device=torch.device("cpu")).contiguous(), card.mean, card.std, card.pixel_scale


def filled_images(
    model,
    images,
    ranking: np.ndarray,
    fractions: Sequence[float],
    fill: str = "zero",
    mode: str = "erase",
    *,
    fill_sigma: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Erased or restored images at chosen fractions, in raw pixel space, for display or TIFF export.

    Parameters
    ----------
    model : LoadedModel or None
        Its card gives the input channels, ``mean``, ``std`` and ``pixel_scale``; without a model all channels are
        used and the fill is applied to the raw values (``zero`` and ``black`` then both mean raw 0).
    images : array-like, (n, H, W, C)
        Raw harmonised pixels.
    ranking : numpy.ndarray, (H * W,)
    fractions : sequence of float
    fill : {"zero", "black", "blur", "impute"}
    mode : {"erase", "restore"}
    fill_sigma : float, optional
    seed : int
        Seed of the ``impute`` noise.

    Returns
    -------
    numpy.ndarray, (n, F, H, W, c)
        uint8 (rounded and clipped to 0..255) when ``images`` are uint8, else float32.

    Notes
    -----
    The fill is applied as in the curve engine (:func:`napari_global_xai.perturb.apply_fill` on normalised inputs,
    same masks) and mapped back with ``raw = (x * std + mean) * pixel_scale``; for ``zero`` that is the training mean
    intensity of each channel. Only the ``impute`` noise draws differ from the engine's (seeded per image here).
    """
    images = np.asarray(images)
    x, mean, std, scale = _normalisation(model, images)
    h, w = x.shape[-2:]
    m = torch.as_tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    out = []
    for p in fractions:
        removed = torch.from_numpy(removed_mask(ranking, (h, w), mode, p))
        y = apply_fill(
            x, removed, fill, mean=mean, std=std, sigma=fill_sigma, noise_seeds=[seed + i for i in range(len(x))]
        )
        out.append(((y * s + m) * scale).permute(0, 2, 3, 1).numpy())
    result = np.stack(out, axis=1)
    if images.dtype == np.uint8:
        return np.clip(np.rint(result), 0, 255).astype(np.uint8)
    return result.astype(np.float32)


def write_filled_tiff(
    path: str | Path,
    model,
    images,
    ranking: np.ndarray,
    fractions: Sequence[float],
    fill: str = "zero",
    mode: str = "erase",
    **kwargs,
) -> Path:
    """Write :func:`filled_images` as an ImageJ hyperstack TIFF (T = image, Z = fraction, C = channel), atomically.

    The fractions, fill and mode are stored in the ImageJ metadata (``Info``).
    """
    import tifffile

    data = filled_images(model, images, ranking, fractions, fill, mode, **kwargs)  # (n, F, H, W, c)
    data = np.ascontiguousarray(np.moveaxis(data, -1, 2))  # (n, F, c, H, W)
    info = json_text({"mode": mode, "fill": fill, "fractions": [float(p) for p in fractions]}, indent=None)
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, metadata={"axes": "TZCYX", "Info": info})
    return path
