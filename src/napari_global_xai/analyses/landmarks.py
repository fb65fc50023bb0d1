"""Landmarks of a mean retina anatomy in the left-eye frame: the field of view (with the ellipse fitted to it), the
optic disc (brightest compact blob) and the fovea (darkest blob at a plausible distance temporal to the disc), and
whether the two are plausible (:func:`landmark_problems`).

Step 1 of the region analysis (:mod:`.regions`, which re-exports these names and builds the regions from them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = ["HOW_TO_GIVE_LANDMARKS", "Landmarks", "field_of_view", "find_landmarks", "landmark_problems", "luminance"]

#: What a user can do when the landmarks found are not plausible (appended to the message).
HOW_TO_GIVE_LANDMARKS = (
    "give them by hand: --disc ROW COL --fovea ROW COL (left-eye frame), --landmarks CSV (per image), a points "
    "layer in napari, or your own --region-mask"
)


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
    problems : list of str
        Why disc and fovea are not plausible (:func:`landmark_problems`); empty when they are.
    """

    disc: tuple[float, float]
    fovea: tuple[float, float]
    disc_radius: float
    fov: np.ndarray
    fov_centre: tuple[float, float]
    fov_axes: np.ndarray
    fov_radii: tuple[float, float]
    source: str = "detected"
    problems: list[str] = field(default_factory=list)


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


#: Plausibility limits (:func:`landmark_problems`): the largest normalised field-of-view radius of disc and fovea,
#: the disc-fovea distance in disc radii and in mean field-of-view radii, the largest angle of the disc→fovea axis
#: from the temporal direction, and the mirrored-disc response share that says two eyes are mixed.
RIM_RHO = 0.8
DISTANCE_DISC_RADII = (3.0, 10.0)
DISTANCE_FOV_RADII = (0.08, 0.9)
MAX_ANGLE_DEG = 35.0
MIRRORED_DISC_SHARE = 0.35
#: Smallest detected disc radius in pixels that is taken as a disc at all.
MIN_DISC_RADIUS_PX = 2.0
#: Fovea search: at most this normalised field-of-view radius (the dark rim and eyelid shadows are not a fovea).
FOVEA_RHO = 0.7


def find_landmarks(anatomy: np.ndarray, disc=None, fovea=None, fov_threshold: float = 0.2) -> Landmarks:
    """Optic disc, fovea and field of view on a mean anatomy in the left-eye frame, checked for plausibility.

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
        With :attr:`Landmarks.problems` filled by :func:`landmark_problems` (the caller decides what to do).

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
    ``+col`` in the left-eye frame (the disc is nasal to the fovea), and inside the inner 70 % of the field of view:
    without that bound the dark rim and eyelid shadows won on an anatomy whose disc was found on the wrong side
    (a stack mixing both eyes without laterality put the fovea at the rim, ρ 1.0). Real disc-fovea distances are
    2.3-3 disc diameters; the wider window tolerates a poorly estimated disc radius.
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
    mirrored = np.nan
    dark = (np.nan, np.nan)
    if disc is None:
        radii_px = np.geomspace(0.015 * w, 0.06 * w, 7)
        resp = _blob_response(lum, radii_px / np.sqrt(2.0), bright=True)
        resp[:, ~inner] = -np.inf
        s, r, c = np.unravel_index(int(np.argmax(resp)), resp.shape)
        disc, radius = (float(r), float(c)), float(radii_px[s])
        best = resp.max(axis=0)
        mc, half = w - 1 - int(c), max(2, int(round(radius / 2)))
        window = best[max(0, r - half) : r + half + 1, max(0, mc - half) : mc + half + 1]
        mirrored = float(window.max() / best[r, c]) if np.isfinite(window).any() and best[r, c] > 0 else np.nan
    disc = (float(disc[0]), float(disc[1]))
    if fovea is None:
        r_disc = radius if np.isfinite(radius) else 0.03 * w
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        dy, dx = yy - disc[0], xx - disc[1]
        dist = np.hypot(dy, dx)
        angle = np.degrees(np.arctan2(np.abs(dy), dx))  # 0 = temporal (+col)
        window = fov & (rho <= FOVEA_RHO) & (dist >= 3.6 * r_disc) & (dist <= 9.0 * r_disc) & (angle <= 35.0)
        if not window.any():
            raise ValueError(
                f"no plausible fovea position temporal to the disc found at {tuple(round(v) for v in disc)}; "
                + HOW_TO_GIVE_LANDMARKS
            )
        resp = _blob_response(lum, [2.0 * r_disc, 3.0 * r_disc, 4.0 * r_disc], bright=False).max(axis=0)
        nasal = fov & (rho <= FOVEA_RHO) & (dist >= 3.6 * r_disc) & (dist <= 9.0 * r_disc) & (180.0 - angle <= 35.0)
        r, c = np.unravel_index(int(np.argmax(np.where(window, resp, -np.inf))), resp.shape)
        fovea = (float(r), float(c))
        dark = (float(resp[r, c]), float(np.where(nasal, resp, -np.inf).max()) if nasal.any() else np.nan)
    fovea = (float(fovea[0]), float(fovea[1]))
    if np.hypot(fovea[0] - disc[0], fovea[1] - disc[1]) < 1.0:
        raise ValueError("disc and fovea coincide; give distinct positions")
    found = Landmarks(disc, fovea, radius, fov, centre, axes, radii, "detected" if np.isfinite(radius) else "given")
    found.problems = landmark_problems(found, mirrored_disc=mirrored, fovea_darkness=dark)
    return found


def landmark_problems(
    landmarks: Landmarks, mirrored_disc: float = np.nan, fovea_darkness=(np.nan, np.nan)
) -> list[str]:
    """Why disc and fovea are not a plausible left-eye pair (empty when they are), one short phrase each.

    Checked: a detected disc is at least :data:`MIN_DISC_RADIUS_PX` in radius; each lies inside the field of view
    and off its rim (normalised elliptical radius ≤ :data:`RIM_RHO`); the disc-fovea distance is
    :data:`DISTANCE_DISC_RADII` disc radii (when the radius was measured) and :data:`DISTANCE_FOV_RADII` mean
    field-of-view radii; the fovea lies temporal (``+col``) to the disc within :data:`MAX_ANGLE_DEG` of the
    horizontal; and the mean anatomy does not show a second disc at the mirrored position (``mirrored_disc``: its
    blob response as a share of the disc's, a stack mixing both eyes without
    laterality). ``fovea_darkness`` (detected fovea only): the dark-blob response at the fovea and the best one in
    the mirrored (nasal) search window; the fovea must be darker than its surround (response > 0) and darker than
    anything nasal to the disc (else the images look like right eyes not mirrored).
    """
    lm = landmarks
    h, w = lm.fov.shape
    rho = _fov_rho((h, w), lm.fov_centre, lm.fov_axes, lm.fov_radii)
    problems = []
    for name, (r, c) in (("disc", lm.disc), ("fovea", lm.fovea)):
        ri, ci = int(round(min(max(r, 0), h - 1))), int(round(min(max(c, 0), w - 1)))
        where = f"the {name} at ({r:.0f}, {c:.0f})"
        if not lm.fov[ri, ci]:
            problems.append(f"{where} lies outside the field of view")
        elif rho[ri, ci] > RIM_RHO:
            problems.append(f"{where} lies on the rim of the field of view (ρ {rho[ri, ci]:.2f} > {RIM_RHO})")
    if np.isfinite(lm.disc_radius) and lm.disc_radius < MIN_DISC_RADIUS_PX:
        problems.append(
            f"the image is too small to find a disc (radius {lm.disc_radius:.1f} px < {MIN_DISC_RADIUS_PX} px)"
        )
    dy, dx = lm.fovea[0] - lm.disc[0], lm.fovea[1] - lm.disc[1]
    d = float(np.hypot(dy, dx))
    fov_r = float(np.mean(lm.fov_radii))
    lo, hi = DISTANCE_FOV_RADII
    if not lo <= d / fov_r <= hi:
        problems.append(f"disc and fovea are {d / fov_r:.2f} field-of-view radii apart (plausible {lo}-{hi})")
    if np.isfinite(lm.disc_radius):
        lo, hi = DISTANCE_DISC_RADII
        if not lo <= d / lm.disc_radius <= hi:
            problems.append(f"disc and fovea are {d / lm.disc_radius:.1f} disc radii apart (plausible {lo:g}-{hi:g})")
    angle = float(np.degrees(np.arctan2(abs(dy), dx)))
    if angle > MAX_ANGLE_DEG:
        side = "nasal to" if dx < 0 else "above or below"
        problems.append(
            f"the fovea lies {side} the disc ({angle:.0f}° from the temporal direction, plausible ≤ "
            f"{MAX_ANGLE_DEG:.0f}°; a right eye not mirrored?)"
        )
    if np.isfinite(mirrored_disc) and mirrored_disc > MIRRORED_DISC_SHARE:
        problems.append(
            f"a second disc-like blob sits at the mirrored position ({mirrored_disc:.0%} of the disc's response): the "
            "mean anatomy mixes left and right eyes (give each image's laterality, e.g. --labels with a laterality "
            "column)"
        )
    here, nasal = fovea_darkness
    if np.isfinite(here) and here <= 0:
        problems.append("the fovea found is not darker than its surround (no macular darkening temporal to the disc)")
    if np.isfinite(nasal) and nasal > max(here, 0.0):
        problems.append(
            "a darker fovea-like blob lies nasal to the disc: the images look like right eyes not mirrored to the "
            "left-eye frame (give each image's laterality)"
        )
    return problems
