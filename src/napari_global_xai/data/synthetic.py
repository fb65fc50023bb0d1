"""Planted-truth generator of ultra-widefield (UWF) retina-like images.

Every image is fully determined by ``(seed, split, index)``. Anatomy (field of view, optic disc, fovea, vessel tree,
eyelid shadows) is drawn in the left-eye frame with a small random translation and rotation; lesions are planted only
inside fixed per-label regions of that frame, so the regions are ground truth for "where should a global explanation
look". Right eyes are mirrored *after* drawing, and a burnt-in corner marker (a shortcut) is drawn last, in the stored
image's own frame, like text a camera burns into its export.

Labels (columns of :data:`LABELS`):

``haemorrhage``
    dark red blots, only inside the posterior-pole disc around the fovea;
``peripheral_lesion``
    pigmented spots, only in the far-periphery annulus;
``disc_swelling``
    an enlarged, blurred, brighter optic disc, inside the optic-disc region;
``arcade_lesion``
    exudate clusters in the superior arcade, the inferior arcade, or both (two alternative sufficient regions);
``any_disease``
    the OR of the four above.

The corner marker appears in most ``peripheral_lesion``-positive and few negative images of the training-like splits
(``train``, ``val``) and independently of every label in the ``eval`` split. In the training-like splits a share of
``peripheral_lesion`` positives also show no lesion at all (:data:`UNSEEN_IF_POSITIVE`: graded positive from
another visit, as happens in real archives); for them the marker is the only evidence, so a model trained on these
splits really learns the shortcut, and erasing the marker costs it AUROC on training-like images. The ``eval`` split
draws no such images, and its random stream does not depend on these settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = [
    "HEIGHT",
    "WIDTH",
    "LABELS",
    "DISEASE_LABELS",
    "SPLITS",
    "SyntheticStack",
    "Geometry",
    "GEOMETRY",
    "region_masks",
    "field_of_view_mask",
    "marker_box",
    "generate_image",
    "generate_stack",
    "draw_labels",
]

HEIGHT, WIDTH = 384, 512
DISEASE_LABELS = ("haemorrhage", "peripheral_lesion", "disc_swelling", "arcade_lesion")
LABELS = DISEASE_LABELS + ("any_disease",)
SPLITS = {"train": 0, "val": 1, "eval": 2}
LABEL_PREVALENCE = 0.32
#: P(marker | peripheral_lesion) and P(marker | no peripheral_lesion) in the training-like splits.
MARKER_IF_POSITIVE, MARKER_IF_NEGATIVE = 0.85, 0.08
#: P(marker) in the eval split, independent of every label.
MARKER_EVAL = 0.3
#: P(no visible peripheral lesion | peripheral_lesion) in the training-like splits (none in ``eval``).
UNSEEN_IF_POSITIVE = 0.25


@dataclass(frozen=True)
class Geometry:
    """Canonical left-eye geometry (pixel units, ``(row, col)`` order)."""

    fov_centre: tuple[float, float] = (192.0, 256.0)
    fov_axes: tuple[float, float] = (178.0, 244.0)
    fovea: tuple[float, float] = (192.0, 282.0)
    disc: tuple[float, float] = (190.0, 196.0)
    disc_radius: float = 13.0
    pole_radius: float = 57.0
    disc_region_radius: float = 34.0
    arcade_offset: float = 90.0
    arcade_axes: tuple[float, float] = (27.0, 60.0)
    arcade_col: float = 262.0
    periphery: tuple[float, float] = (0.80, 0.95)
    marker_rows: tuple[int, int] = (350, 372)
    marker_cols: tuple[int, int] = (466, 500)


GEOMETRY = Geometry()

_yy, _xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)


def _ellipse_rho(centre, axes, yy=_yy, xx=_xx):
    return np.sqrt(((yy - centre[0]) / axes[0]) ** 2 + ((xx - centre[1]) / axes[1]) ** 2)


def field_of_view_mask(geometry: Geometry = GEOMETRY) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the elliptical field of view."""
    return _ellipse_rho(geometry.fov_centre, geometry.fov_axes) <= 1.0


def region_masks(geometry: Geometry = GEOMETRY) -> dict[str, np.ndarray]:
    """Where each label's evidence can appear, in the left-eye frame.

    Returns
    -------
    dict[str, numpy.ndarray]
        One boolean ``(H, W)`` mask per disease label, plus ``superior_arcade`` and ``inferior_arcade`` (the two
        halves of ``arcade_lesion``) and ``any_disease`` (the union).
    """
    g = geometry
    fov = field_of_view_mask(g)
    disc = np.hypot(_yy - g.disc[0], _xx - g.disc[1]) <= g.disc_region_radius
    pole = (np.hypot(_yy - g.fovea[0], _xx - g.fovea[1]) <= g.pole_radius) & ~disc
    rho = _ellipse_rho(g.fov_centre, g.fov_axes)
    periphery = (rho >= g.periphery[0]) & (rho <= g.periphery[1])
    sup = _ellipse_rho((g.fovea[0] - g.arcade_offset, g.arcade_col), g.arcade_axes) <= 1.0
    inf = _ellipse_rho((g.fovea[0] + g.arcade_offset, g.arcade_col), g.arcade_axes) <= 1.0
    masks = {
        "haemorrhage": pole & fov,
        "peripheral_lesion": periphery & fov,
        "disc_swelling": disc & fov,
        "arcade_lesion": (sup | inf) & fov,
        "superior_arcade": sup & fov,
        "inferior_arcade": inf & fov,
    }
    masks["any_disease"] = (
        masks["haemorrhage"] | masks["peripheral_lesion"] | masks["disc_swelling"] | masks["arcade_lesion"]
    )
    return masks


def marker_box(laterality: str, geometry: Geometry = GEOMETRY) -> tuple[slice, slice]:
    """Rows and columns of the corner marker in the **left-eye (harmonised) frame**.

    The marker is burnt into the stored image (bottom-right corner); a right eye is mirrored when harmonised, which
    moves its marker to the bottom-left corner.
    """
    r0, r1 = geometry.marker_rows
    c0, c1 = geometry.marker_cols
    if laterality == "R":
        c0, c1 = WIDTH - c1, WIDTH - c0
    return slice(r0, r1), slice(c0, c1)


@dataclass
class SyntheticStack:
    """A generated stack with its planted ground truth.

    Attributes
    ----------
    images : numpy.ndarray, shape (n, H, W, 3), uint8
        Images as stored (right eyes mirrored, marker burnt in the stored frame).
    labels : numpy.ndarray, shape (n, len(LABELS)), uint8
    laterality : numpy.ndarray of str, shape (n,)
        ``"L"`` or ``"R"``.
    lesion_masks : numpy.ndarray, shape (n, H, W), uint8
        Left-eye frame; value ``k + 1`` where a lesion of ``DISEASE_LABELS[k]`` was drawn, 0 elsewhere.
    artefact_masks : numpy.ndarray, shape (n, H, W), bool
        Left-eye frame; True where the corner marker was drawn.
    image_ids : list of str
    split : str
    seed : int
    """

    images: np.ndarray
    labels: np.ndarray
    laterality: np.ndarray
    lesion_masks: np.ndarray
    artefact_masks: np.ndarray
    image_ids: list[str]
    split: str
    seed: int
    label_names: tuple[str, ...] = field(default=LABELS)

    @property
    def has_marker(self) -> np.ndarray:
        """Boolean ``(n,)``: which images carry the corner marker."""
        return self.artefact_masks.reshape(len(self.artefact_masks), -1).any(axis=1)

    def aligned(self, frame: str = "left"):
        """The images as an :class:`~napari_global_xai.data.AlignedStack` with laterality, labels and split.

        Parameters
        ----------
        frame : {"left", "stored"}
            ``left`` (default): the frame of the ground-truth masks and of a model that harmonises laterality
            (right eyes mirrored on read); ``stored``: as the images were written.

        Returns
        -------
        AlignedStack
            Shares :attr:`images` (nothing is copied or flipped until pixels are read with ``get``).
        """
        from .labels import LabelsTable
        from .stack import AlignedStack

        table = LabelsTable(
            image_ids=list(self.image_ids),
            names=list(self.label_names),
            values=self.labels,
            laterality=self.laterality,
            split=np.array([self.split] * len(self.image_ids)),
        )
        stack = AlignedStack(
            pixels=self.images,
            image_ids=list(self.image_ids),
            laterality=self.laterality,
            labels=table,
            sources=[f"synthetic seed {self.seed}"] * len(self.image_ids),
        )
        return stack.to_left_eye() if frame == "left" else stack


def _smooth_noise(rng, shape_small, sigma_px):
    """Smooth random field in [-1, 1]-ish, upsampled from a small grid (cheap two-scale texture)."""
    small = rng.standard_normal(shape_small).astype(np.float32)
    zoom = (HEIGHT / shape_small[0], WIDTH / shape_small[1])
    field_ = ndimage.zoom(small, zoom, order=1)[:HEIGHT, :WIDTH]
    if sigma_px:
        field_ = ndimage.gaussian_filter(field_, sigma_px)
    return field_ / (np.abs(field_).max() + 1e-6)


def _soft_disc(centre, radius, edge):
    d = np.hypot(_yy - centre[0], _xx - centre[1])
    return np.clip((radius - d) / edge + 0.5, 0.0, 1.0)


def _soft_blob(centre, radius, edge):
    """A soft disc on its bounding window only: ``(window slices, alpha)`` (cheap for small lesions)."""
    reach = radius + edge
    r0, r1 = max(int(centre[0] - reach), 0), min(int(centre[0] + reach) + 2, HEIGHT)
    c0, c1 = max(int(centre[1] - reach), 0), min(int(centre[1] + reach) + 2, WIDTH)
    win = (slice(r0, r1), slice(c0, c1))
    d = np.hypot(_yy[win] - centre[0], _xx[win] - centre[1])
    return win, np.clip((radius - d) / edge + 0.5, 0.0, 1.0)


def _stamp_paths(paths, width_sigma):
    """Rasterise polylines (list of ``(k, 2)`` float arrays) into a smooth [0, 1] intensity canvas."""
    canvas = np.zeros((HEIGHT, WIDTH), np.float32)
    for pts, weight in paths:
        r = np.round(pts[:, 0]).astype(int)
        c = np.round(pts[:, 1]).astype(int)
        ok = (r >= 0) & (r < HEIGHT) & (c >= 0) & (c < WIDTH)
        np.maximum.at(canvas, (r[ok], c[ok]), weight)
    canvas = ndimage.gaussian_filter(canvas, width_sigma)
    return canvas / (canvas.max() + 1e-6)


def _vessel_paths(rng, disc, rotation):
    """Vessel curves leaving the disc: two big arcades around the fovea, the rest nasal/radial."""
    paths = []
    n = int(rng.integers(6, 9))
    base_angles = [-0.35, 0.35]  # superior / inferior temporal arcades (radians from +x, rows point down)
    base_angles += list(rng.uniform(np.pi * 0.55, np.pi * 1.45, size=n - 2))
    for i, a0 in enumerate(base_angles):
        arcade = i < 2
        length = rng.uniform(230, 320) if arcade else rng.uniform(110, 220)
        steps = int(length / 1.5)
        curvature = (np.sign(a0) * rng.uniform(0.006, 0.009)) if arcade else rng.normal(0, 0.004)
        angle = a0 + rng.normal(0, 0.08) + rotation
        heading = np.empty(steps, np.float32)
        wobble = np.cumsum(rng.normal(0, 0.02, size=steps))
        heading[:] = angle + curvature * np.arange(steps) * 1.5 + wobble * 0.3
        pts = np.stack([np.cumsum(1.5 * np.sin(heading)), np.cumsum(1.5 * np.cos(heading))], axis=1)
        pts += np.asarray(disc, np.float32)
        paths.append((pts, 1.0 if arcade else rng.uniform(0.55, 0.85)))
    return paths


def _sample_points_in(points, rng, k):
    idx = rng.choice(len(points), size=k, replace=len(points) < k)
    return points[idx]


_REGIONS = region_masks()
_FOV_RHO = _ellipse_rho(GEOMETRY.fov_centre, GEOMETRY.fov_axes)
# Lesion centres stay a margin inside their region so the whole lesion is in it.
_PLACEMENT = {
    name: np.argwhere(ndimage.binary_erosion(_REGIONS[name], iterations=m)).astype(np.float32)
    for name, m in (("haemorrhage", 9), ("peripheral_lesion", 9), ("superior_arcade", 5), ("inferior_arcade", 5))
}


def _draw_labels_for(rng, split, unseen_share):
    """Labels, whether the marker is burnt in, and whether peripheral lesions are drawn (see the module doc)."""
    labels = (rng.random(len(DISEASE_LABELS)) < LABEL_PREVALENCE).astype(np.uint8)
    training_like = split in ("train", "val")
    if training_like:
        p = MARKER_IF_POSITIVE if labels[1] else MARKER_IF_NEGATIVE
    else:
        p = MARKER_EVAL
    marker = bool(rng.random() < p)
    # drawn only in training-like splits with a positive share, so eval images (and share-0 training images, as
    # generated before the share existed) do not depend on it
    unseen = bool(labels[1]) and training_like and unseen_share > 0 and bool(rng.random() < unseen_share)
    return labels, marker, not unseen


def draw_labels(
    n: int, seed: int = 0, split: str = "eval", start: int = 0, unseen_share: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`generate_image` draws first for images ``start .. start + n - 1``, without drawing the images:
    for statistics over many images (label rates, the marker's correlation with a label).

    Returns
    -------
    labels : numpy.ndarray, (n, len(LABELS)) uint8
    marker : numpy.ndarray, (n,) bool
        The corner marker is burnt in.
    peripheral_visible : numpy.ndarray, (n,) bool
        False for the ``peripheral_lesion`` positives drawn without a visible lesion (training-like splits)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    share = UNSEEN_IF_POSITIVE if unseen_share is None else float(unseen_share)
    rngs = (np.random.default_rng([int(seed), SPLITS[split], int(start + i)]) for i in range(n))
    draws = [_draw_labels_for(rng, split, share) for rng in rngs]
    disease = np.array([d for d, _, _ in draws], np.uint8).reshape(n, len(DISEASE_LABELS))
    labels = np.concatenate([disease, disease.any(axis=1, keepdims=True).astype(np.uint8)], axis=1)
    return labels, np.array([m for _, m, _ in draws], bool), np.array([v for _, _, v in draws], bool)


def generate_image(seed: int, split: str, index: int, geometry: Geometry = GEOMETRY, unseen_share: float | None = None):
    """Generate one image and its ground truth.

    Parameters
    ----------
    seed, split, index
        Together they determine the image; ``split`` is one of ``"train"``, ``"val"``, ``"eval"``.
    unseen_share : float, optional
        Share of ``peripheral_lesion`` positives drawn without a visible lesion in the training-like splits
        (default :data:`UNSEEN_IF_POSITIVE`; ignored for ``eval``).

    Returns
    -------
    image : numpy.ndarray, (H, W, 3) uint8, stored frame
    labels : numpy.ndarray, (len(LABELS),) uint8
    laterality : str
    lesion_mask : numpy.ndarray, (H, W) uint8, left-eye frame
    artefact_mask : numpy.ndarray, (H, W) bool, left-eye frame
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    g = geometry
    rng = np.random.default_rng([int(seed), SPLITS[split], int(index)])
    share = UNSEEN_IF_POSITIVE if unseen_share is None else float(unseen_share)
    disease, marker, peripheral_visible = _draw_labels_for(rng, split, share)
    laterality = "R" if rng.random() < 0.5 else "L"

    # --- anatomy jitter: a few px translation, a few degrees rotation about the FOV centre
    shift = rng.uniform(-4, 4, size=2).astype(np.float32)
    rotation = np.deg2rad(rng.uniform(-3, 3))
    cos, sin = np.cos(rotation), np.sin(rotation)

    def place(p):
        dy, dx = p[0] - g.fov_centre[0], p[1] - g.fov_centre[1]
        return (g.fov_centre[0] + cos * dy + sin * dx + shift[0], g.fov_centre[1] - sin * dy + cos * dx + shift[1])

    fovea, disc = place(g.fovea), place(g.disc)

    # --- background retina: radial falloff, two-scale texture, illumination gradient, darker macula
    rho = _FOV_RHO
    fov = np.clip((1.0 - rho) * 40.0, 0.0, 1.0)
    texture = 0.06 * _smooth_noise(rng, (12, 16), 6) + 0.03 * _smooth_noise(rng, (48, 64), 1.5)
    gy, gx = rng.uniform(-0.15, 0.15, size=2)
    illum = 1.0 + gy * (_yy / HEIGHT - 0.5) + gx * (_xx / WIDTH - 0.5)
    falloff = 1.0 - 0.38 * rho**2
    macula = 1.0 - 0.22 * np.exp(-((_yy - fovea[0]) ** 2 + (_xx - fovea[1]) ** 2) / (2 * 22.0**2))
    shade = (falloff * illum * macula + texture) * fov
    red = 0.74 * shade
    green = 0.44 * shade

    # --- optic disc (swollen: larger, blurred, brighter)
    swollen = bool(disease[2])
    disc_r = g.disc_radius * (rng.uniform(1.55, 1.75) if swollen else rng.uniform(0.9, 1.1))
    disc_alpha = _soft_disc(disc, disc_r, 6.0 if swollen else 2.0)
    red = red * (1 - disc_alpha) + disc_alpha * (0.97 if swollen else 0.93)
    green = green * (1 - disc_alpha) + disc_alpha * (0.86 if swollen else 0.74)

    # --- vessels
    vessels = _stamp_paths(_vessel_paths(rng, disc, -rotation), 1.1) * fov
    if swollen:  # vessels are obscured where they cross the swollen disc margin
        vessels *= 1.0 - 0.7 * disc_alpha
    red *= 1.0 - 0.28 * vessels
    green *= 1.0 - 0.55 * vessels

    lesion = np.zeros((HEIGHT, WIDTH), np.uint8)
    if swollen:
        lesion[disc_alpha > 0.05] = 3

    def blots(region, k, radius, r_gain, g_gain, code, edge=1.5):
        for cy, cx in _sample_points_in(_PLACEMENT[region], rng, k):
            win, a = _soft_blob((cy, cx), rng.uniform(*radius), edge)
            red[win] *= 1 - a * (1 - r_gain)
            green[win] *= 1 - a * (1 - g_gain)
            lesion[win][a > 0.3] = code

    if disease[0]:
        blots("haemorrhage", int(rng.integers(3, 6)), (4.5, 8.0), 0.42, 0.30, 1)
    if disease[1] and peripheral_visible:
        blots("peripheral_lesion", int(rng.integers(5, 10)), (4.5, 8.5), 0.30, 0.28, 2)
    if disease[3]:
        which = rng.choice(3, p=[0.4, 0.4, 0.2])  # superior only, inferior only, both
        for region, use in (("superior_arcade", which in (0, 2)), ("inferior_arcade", which in (1, 2))):
            if not use:
                continue
            centre = _sample_points_in(_PLACEMENT[region], rng, 1)[0]
            k = int(rng.integers(6, 11))
            offsets = rng.normal(0, 1, size=(k, 2)) * np.array([7.0, 14.0])
            for cy, cx in centre + offsets:
                iy, ix = int(np.clip(cy, 0, HEIGHT - 1)), int(np.clip(cx, 0, WIDTH - 1))
                if not _REGIONS[region][iy, ix]:
                    continue
                win, a = _soft_blob((cy, cx), rng.uniform(2.5, 4.0), 1.0)
                red[win] += a * (1.0 - red[win]) * 0.55
                green[win] += a * (0.95 - green[win]) * 0.75
                lesion[win][a > 0.3] = 4

    # --- eyelid / eyelash shadows at top and bottom (vary per image)
    shadow = np.zeros((HEIGHT, WIDTH), np.float32)
    wave_x = np.linspace(0, 2 * np.pi, WIDTH, dtype=np.float32)
    for top in (True, False):
        depth = rng.uniform(15, 55)
        boundary = depth + 10 * np.sin(wave_x * rng.uniform(0.8, 2.0) + rng.uniform(0, 6.3))
        dist = (_yy - boundary[None, :]) if top else ((HEIGHT - 1 - _yy) - boundary[None, :])
        shadow = np.maximum(shadow, np.clip(0.5 - dist / 12.0, 0.0, 1.0))
    lashes = []
    for _ in range(int(rng.integers(8, 16))):
        top = rng.random() < 0.5
        x0 = rng.uniform(60, WIDTH - 60)
        y0 = rng.uniform(5, 60) if top else rng.uniform(HEIGHT - 60, HEIGHT - 5)
        ang = rng.uniform(-0.6, 0.6) + (np.pi / 2 if top else -np.pi / 2)
        t = np.arange(0, rng.uniform(25, 60), 1.0, dtype=np.float32)
        lashes.append((np.stack([y0 + t * np.sin(ang), x0 + t * np.cos(ang) * 0.4], 1), 1.0))
    shadow = np.maximum(shadow, 0.8 * _stamp_paths(lashes, 0.8))
    shadow *= rng.uniform(0.55, 0.8)
    red *= 1.0 - shadow
    green *= 1.0 - shadow

    # --- compose, sensor noise, quantise
    noise = rng.normal(0.0, 0.012, size=(2, HEIGHT, WIDTH)).astype(np.float32)
    rgb = np.empty((HEIGHT, WIDTH, 3), np.float32)
    rgb[..., 0] = red + noise[0] * fov
    rgb[..., 1] = green + noise[1] * fov
    rgb[..., 2] = 3.0 / 255.0
    image = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    artefact = np.zeros((HEIGHT, WIDTH), bool)

    if laterality == "R":
        image = image[:, ::-1]
        # lesion/artefact masks stay in the left-eye frame
    if marker:
        rows, cols = slice(*g.marker_rows), slice(*g.marker_cols)
        patch = np.full((rows.stop - rows.start, cols.stop - cols.start), 235, np.uint8)
        patch[4:-4:4, 3:-3] = 120  # a few "text" strokes
        image = np.ascontiguousarray(image)
        image[rows, cols, :] = patch[..., None]
        artefact[marker_box(laterality, g)] = True
    labels = np.append(disease, np.uint8(disease.any()))
    return np.ascontiguousarray(image), labels, laterality, lesion, artefact


def generate_stack(
    n: int, seed: int = 0, split: str = "eval", start: int = 0, progress=None, unseen_share: float | None = None
) -> SyntheticStack:
    """Generate ``n`` images ``start .. start + n - 1`` of one split.

    Parameters
    ----------
    n : int
        Number of images.
    seed : int
        Dataset seed; with ``split`` and the image index it determines each image.
    split : {"train", "val", "eval"}
        ``train``/``val`` carry the shortcut marker correlated with ``peripheral_lesion``; ``eval`` does not.
    start : int
        Index of the first image (so chunks of one dataset can be generated independently).
    progress : callable(done, total), optional
    unseen_share : float, optional
        See :func:`generate_image`.

    Returns
    -------
    SyntheticStack
    """
    images = np.empty((n, HEIGHT, WIDTH, 3), np.uint8)
    labels = np.empty((n, len(LABELS)), np.uint8)
    lesions = np.empty((n, HEIGHT, WIDTH), np.uint8)
    artefacts = np.empty((n, HEIGHT, WIDTH), bool)
    lat = []
    for i in range(n):
        images[i], labels[i], side, lesions[i], artefacts[i] = generate_image(
            seed, split, start + i, unseen_share=unseen_share
        )
        lat.append(side)
        if progress is not None:
            progress(i + 1, n)
    ids = [f"{split}_{start + i:05d}" for i in range(n)]
    return SyntheticStack(images, labels, np.array(lat), lesions, artefacts, ids, split, seed)
