"""Landmarks of a mean retina anatomy in the left-eye frame: the field of view (with the ellipse fitted to it), the
optic disc (brightest compact blob) and the fovea (darkest blob at a plausible distance temporal to the disc).

Step 1 of the region analysis (:mod:`.regions`, which re-exports these names and builds the regions from them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Landmarks", "field_of_view", "find_landmarks", "luminance"]


@dataclass
class Landmarks:
    """Optic disc and fovea ``(row, col)`` in the left-eye frame, and the field of view.

    Attributes
    ----------
    disc, fovea : tuple of float
    disc_radius : float
        Detected disc radius in pixels (NaN when the disc was given).
    fov : numpy.ndarray, (H, W) bool
    fov_centre : tuple of float
    fov_axes : numpy.ndarray, (2, 2)
        Rows are the ellipse's unit axes (row, col); :attr:`fov_radii` their semi-axis lengths.
    fov_radii : tuple of float
    source : str
        ``"detected"``, ``"given"`` or ``"csv"``.
    """

    disc: tuple[float, float]
    fovea: tuple[float, float]
    disc_radius: float
    fov: np.ndarray
    fov_centre: tuple[float, float]
    fov_axes: np.ndarray
    fov_radii: tuple[float, float]
    source: str = "detected"


def luminance(anatomy: np.ndarray) -> np.ndarray:
    """``(H, W[, C])`` → ``(H, W)`` float64 mean over channels."""
    a = np.asarray(anatomy, np.float64)
    return a if a.ndim == 2 else a.mean(axis=-1)


def field_of_view(anatomy: np.ndarray, threshold: float = 0.2):
    """The field of view of a mean anatomy and the ellipse fitted to it.

    Parameters
    ----------
    anatomy : numpy.ndarray, (H, W[, C])
    threshold : float
        Share of the 99th-percentile luminance above which a pixel counts as imaged.

    Returns
    -------
    fov : numpy.ndarray, (H, W) bool
        Largest connected bright component, holes filled.
    centre : tuple of float
    axes : numpy.ndarray, (2, 2)
        Unit axes of the fitted ellipse (rows).
    radii : tuple of float
        Semi-axis lengths (2·sqrt of the mask's second-moment eigenvalues: exact for a filled ellipse).

    Raises
    ------
    ValueError
        When nothing is brighter than the threshold (a blank anatomy).
    """
    lum = ndimage.gaussian_filter(luminance(anatomy), 2.0)
    top = np.percentile(lum, 99)
    if not np.isfinite(top) or top <= 0:
        raise ValueError("the mean anatomy is blank: no field of view to find")
    bright = lum > threshold * top
    lab, n = ndimage.label(bright)
    if n == 0:
        raise ValueError("the mean anatomy is blank: no field of view to find")
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    fov = ndimage.binary_fill_holes(lab == (int(np.argmax(sizes)) + 1))
    rows, cols = np.nonzero(fov)
    centre = (float(rows.mean()), float(cols.mean()))
    cov = np.cov(np.stack([rows, cols]).astype(np.float64), bias=True)
    eigval, eigvec = np.linalg.eigh(cov)
    radii = tuple(float(2.0 * np.sqrt(max(v, 1e-12))) for v in eigval)
    return fov, centre, eigvec.T, radii


def _fov_rho(shape, centre, axes, radii) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    a0 = (dy * axes[0][0] + dx * axes[0][1]) / radii[0]
    a1 = (dy * axes[1][0] + dx * axes[1][1]) / radii[1]
    return np.sqrt(a0**2 + a1**2)


def _blob_response(lum: np.ndarray, sigmas, bright: bool) -> np.ndarray:
    """Scale-normalised Laplacian-of-Gaussian responses ``(S, H, W)``; bright blobs positive when ``bright``."""
    sign = -1.0 if bright else 1.0
    return np.stack([sign * s * s * ndimage.gaussian_laplace(lum, s) for s in sigmas])


def find_landmarks(anatomy: np.ndarray, disc=None, fovea=None, fov_threshold: float = 0.2) -> Landmarks:
    """Optic disc, fovea and field of view on a mean anatomy in the left-eye frame.

    Parameters
    ----------
    anatomy : numpy.ndarray, (H, W[, C])
        Mean of the harmonised (left-eye frame) images.
    disc, fovea : (row, col), optional
        Given positions (e.g. points placed in napari); each one given skips its detection.
    fov_threshold : float
        See :func:`field_of_view`.

    Returns
    -------
    Landmarks

    Raises
    ------
    ValueError
        A blank anatomy, or a given position outside the image.

    Notes
    -----
    Disc: the maximum of the scale-normalised LoG bright-blob response over radii of 1.5-6 % of the image width,
    searched inside the inner 75 % of the field of view (the disc never sits at its rim, where the rim itself
    responds). Fovea: the maximum of the dark-blob response (σ 2-4 disc radii, the macular darkening is wider than
    the disc) among pixels 1.8-4.5 disc diameters from the disc, within 35° of the temporal direction, which is
    ``+col`` in the left-eye frame (the disc is nasal to the fovea). Real disc-fovea distances are 2.3-3 disc
    diameters; the wider window tolerates a poorly estimated disc radius.
    """
    lum = luminance(anatomy)
    h, w = lum.shape
    fov, centre, axes, radii = field_of_view(anatomy, fov_threshold)
    for name, p in (("disc", disc), ("fovea", fovea)):
        if p is not None and not (0 <= p[0] < h and 0 <= p[1] < w):
            raise ValueError(f"{name} position {tuple(p)} lies outside the {h}×{w} image")
    rho = _fov_rho(lum.shape, centre, axes, radii)
    inner = fov & (rho <= 0.75)
    radius = np.nan
    if disc is None:
        radii_px = np.geomspace(0.015 * w, 0.06 * w, 7)
        resp = _blob_response(lum, radii_px / np.sqrt(2.0), bright=True)
        resp[:, ~inner] = -np.inf
        s, r, c = np.unravel_index(int(np.argmax(resp)), resp.shape)
        disc, radius = (float(r), float(c)), float(radii_px[s])
    disc = (float(disc[0]), float(disc[1]))
    if fovea is None:
        r_disc = radius if np.isfinite(radius) else 0.03 * w
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        dy, dx = yy - disc[0], xx - disc[1]
        dist = np.hypot(dy, dx)
        angle = np.degrees(np.arctan2(np.abs(dy), dx))  # 0 = temporal (+col)
        window = fov & (dist >= 3.6 * r_disc) & (dist <= 9.0 * r_disc) & (angle <= 35.0)
        if not window.any():
            raise ValueError("no plausible fovea position temporal to the detected disc; give the fovea")
        resp = _blob_response(lum, [2.0 * r_disc, 3.0 * r_disc, 4.0 * r_disc], bright=False)
        resp[:, ~window] = -np.inf
        _, r, c = np.unravel_index(int(np.argmax(resp)), resp.shape)
        fovea = (float(r), float(c))
    fovea = (float(fovea[0]), float(fovea[1]))
    if np.hypot(fovea[0] - disc[0], fovea[1] - disc[1]) < 1.0:
        raise ValueError("disc and fovea coincide; give distinct positions")
    return Landmarks(disc, fovea, radius, fov, centre, axes, radii, "detected" if np.isfinite(radius) else "given")
