"""Anatomical regions of an aligned retina stack and how much global-map mass each holds.

Three steps, each a plain function:

1. :func:`find_landmarks` locates the optic disc (brightest compact blob) and the fovea (darkest blob at a plausible
   distance temporal to the disc) on the mean anatomy, together with the field of view (in :mod:`.landmarks`,
   re-exported here);
2. :func:`build_regions` turns disc, fovea and field of view into an integer label image in the left-eye frame
   (a partition: every pixel has exactly one region, so it can be edited as a napari labels layer);
3. :func:`region_table` gives, per region (and per union of regions: nasal / temporal periphery, quadrants, mid and
   far periphery), the share of global-map mass, the area share and their ratio, the enrichment, with bootstrap
   intervals over images; both shares are taken inside the field of view when one is given (the ``outside_fov``
   row over the whole image), so 1 means "as much as a map uniform over the imaged retina".

A user's own label image (TIFF, any integer ids) can replace step 1-2: :func:`read_region_mask`.

Notes
-----
Region geometry is a choice (the issue and methods.md name regions, not their borders). Distances are in units of
the disc-fovea distance ``d`` (about 4.5 mm in adults, 2.5 disc diameters), measured in the frame with ``u`` along
the disc→fovea axis (temporal positive) and ``v`` perpendicular to it (superior positive), origin at the fovea:

* optic disc: within 0.4 d of the disc centre (disc plus peripapillary rim);
* macula: within 0.6 d of the fovea (5.5 mm diameter ≈ 1.2 d);
* superior / inferior arcade: ``0.7 ≤ |v| ≤ 1.4`` and ``-1.0 ≤ u ≤ 0.9`` (the temporal vascular arcades pass about
  one disc-fovea distance above and below the fovea);
* posterior pole: within 1.5 d of the fovea, not one of the above;
* far periphery: the outer fifth of the field of view (normalised elliptical radius ≥ 0.8 of an ellipse fitted to
  the field-of-view mask by its second moments), mid periphery the rest;
  both split into four quadrants at the fovea (superior/inferior by ``v``, temporal/nasal by ``u``);
* outside the field of view.

Earlier entries win where regions overlap. Bootstrap intervals resample images with replacement (percentile
intervals); the global map of a resample is the mean of its image-wise maps, so region masses are computed once per
image and each resample is one weighted sum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .landmarks import Landmarks, _fov_rho, field_of_view, find_landmarks, luminance

__all__ = [
    "FOV",
    "IMAGE",
    "REGION_GROUPS",
    "REGION_NAMES",
    "Landmarks",
    "RegionGeometry",
    "RegionTable",
    "build_regions",
    "draw_region_table",
    "field_of_view",
    "find_landmarks",
    "luminance",
    "read_region_mask",
    "region_table",
    "write_region_mask",
]

#: The two baselines of a region table's rows (:attr:`RegionTable.baseline`).
FOV, IMAGE = "field of view", "image"
#: Partition labels of :func:`build_regions` (id = position + 1).
REGION_NAMES = (
    "optic_disc",
    "macula",
    "superior_arcade",
    "inferior_arcade",
    "posterior_pole",
    "mid_superotemporal",
    "mid_inferotemporal",
    "mid_superonasal",
    "mid_inferonasal",
    "far_superotemporal",
    "far_inferotemporal",
    "far_superonasal",
    "far_inferonasal",
    "outside_fov",
)
#: Unions of partition regions reported as extra rows of the table.
REGION_GROUPS = {
    "mid_periphery": ("mid_superotemporal", "mid_inferotemporal", "mid_superonasal", "mid_inferonasal"),
    "far_periphery": ("far_superotemporal", "far_inferotemporal", "far_superonasal", "far_inferonasal"),
    "temporal_periphery": ("mid_superotemporal", "mid_inferotemporal", "far_superotemporal", "far_inferotemporal"),
    "nasal_periphery": ("mid_superonasal", "mid_inferonasal", "far_superonasal", "far_inferonasal"),
    "superotemporal_quadrant": ("mid_superotemporal", "far_superotemporal"),
    "inferotemporal_quadrant": ("mid_inferotemporal", "far_inferotemporal"),
    "superonasal_quadrant": ("mid_superonasal", "far_superonasal"),
    "inferonasal_quadrant": ("mid_inferonasal", "far_inferonasal"),
    "posterior_pole_all": ("optic_disc", "macula", "superior_arcade", "inferior_arcade", "posterior_pole"),
}


@dataclass(frozen=True)
class RegionGeometry:
    """Region borders in units of the disc-fovea distance (see the module Notes)."""

    disc_radius: float = 0.4
    macula_radius: float = 0.6
    arcade_v: tuple[float, float] = (0.7, 1.4)
    arcade_u: tuple[float, float] = (-1.0, 0.9)
    pole_radius: float = 1.5
    far_periphery_rho: float = 0.8


@dataclass
class RegionTable:
    """Per-region mass, area and enrichment of a global map, with bootstrap intervals over images.

    Attributes
    ----------
    names : list of str
        Partition regions first, then groups (:attr:`kinds` says which).
    kinds : list of str
        ``"region"`` or ``"group"``.
    area_share, mass_share, enrichment : numpy.ndarray, (R,)
    mass_ci, enrichment_ci : numpy.ndarray, (R, 2)
        Percentile bootstrap intervals (NaN without bootstrap or with fewer than 2 images).
    baseline : list of str
        Per row, what its shares are of: ``"field of view"`` (mass share of the map's mass inside the field of
        view, area share of the field of view: rows inside it when a field of view is given) or ``"image"`` (of
        the whole map and image: rows outside the field of view, or every row when none is given).
    mass_in_fov : float
        Share of the global map's mass inside the field of view (NaN when none is given).
    n_images : int
    n_boot : int
    ci : float
    label : str
    """

    names: list[str]
    kinds: list[str]
    area_share: np.ndarray
    mass_share: np.ndarray
    enrichment: np.ndarray
    mass_ci: np.ndarray
    enrichment_ci: np.ndarray
    n_images: int
    n_boot: int
    ci: float
    label: str = ""
    baseline: list[str] = field(default_factory=list)
    mass_in_fov: float = float("nan")

    def row(self, name: str) -> dict:
        """One row as a dict."""
        i = self.names.index(name)
        return {
            "region": name,
            "kind": self.kinds[i],
            "area_share": float(self.area_share[i]),
            "mass_share": float(self.mass_share[i]),
            "enrichment": float(self.enrichment[i]),
            "mass_lo": float(self.mass_ci[i, 0]),
            "mass_hi": float(self.mass_ci[i, 1]),
            "enrichment_lo": float(self.enrichment_ci[i, 0]),
            "enrichment_hi": float(self.enrichment_ci[i, 1]),
            "baseline": self.baseline[i] if self.baseline else IMAGE,
        }

    def best(self, kind: str = "region") -> str:
        """The region (or group) with the highest enrichment (inside the field of view when one was given)."""
        inside = [b != IMAGE for b in self.baseline] if FOV in self.baseline else [True] * len(self.names)
        idx = [i for i, k in enumerate(self.kinds) if k == kind and inside[i]]
        return self.names[idx[int(np.nanargmax(self.enrichment[idx]))]]


# -------------------------------------------------------------------------------------------------- regions


def build_regions(landmarks: Landmarks, shape=None, geometry: RegionGeometry = RegionGeometry()) -> np.ndarray:
    """Integer label image of :data:`REGION_NAMES` (ids 1..14) from disc, fovea and field of view.

    Parameters
    ----------
    landmarks : Landmarks
    shape : (H, W), optional
        Default the field-of-view mask's shape.
    geometry : RegionGeometry

    Returns
    -------
    numpy.ndarray, (H, W) uint8
        A partition: every pixel carries exactly one region id (see the module Notes for the borders).
    """
    h, w = shape or landmarks.fov.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    disc, fovea = np.asarray(landmarks.disc), np.asarray(landmarks.fovea)
    d = float(np.hypot(*(fovea - disc)))
    e_t = (fovea - disc) / d
    e_s = np.array([-e_t[1], e_t[0]]) if -e_t[1] < 0 else np.array([e_t[1], -e_t[0]])  # superior = up (row -)
    dy, dx = yy - fovea[0], xx - fovea[1]
    u = (dy * e_t[0] + dx * e_t[1]) / d
    v = (dy * e_s[0] + dx * e_s[1]) / d
    r_fovea = np.hypot(dy, dx) / d
    r_disc = np.hypot(yy - disc[0], xx - disc[1]) / d
    rho = _fov_rho((h, w), landmarks.fov_centre, landmarks.fov_axes, landmarks.fov_radii)
    g = geometry
    ids = {name: i + 1 for i, name in enumerate(REGION_NAMES)}
    out = np.zeros((h, w), np.uint8)
    free = np.ones((h, w), bool)

    def put(name, mask):
        nonlocal free
        mask = mask & free
        out[mask] = ids[name]
        free &= ~mask

    put("outside_fov", ~landmarks.fov)
    put("optic_disc", r_disc <= g.disc_radius)
    put("macula", r_fovea <= g.macula_radius)
    arcade = (np.abs(v) >= g.arcade_v[0]) & (np.abs(v) <= g.arcade_v[1]) & (u >= g.arcade_u[0]) & (u <= g.arcade_u[1])
    put("superior_arcade", arcade & (v > 0))
    put("inferior_arcade", arcade & (v <= 0))
    put("posterior_pole", r_fovea <= g.pole_radius)
    for zone, sel in (("far", rho >= g.far_periphery_rho), ("mid", rho < g.far_periphery_rho)):
        for vert, vsel in (("supero", v > 0), ("infero", v <= 0)):
            for side, usel in (("temporal", u > 0), ("nasal", u <= 0)):
                put(f"{zone}_{vert}{side}", sel & vsel & usel)
    return out


# ---------------------------------------------------------------------------------------------------- table


def region_table(
    image_maps: np.ndarray,
    regions: np.ndarray,
    names: dict[int, str] | None = None,
    groups: dict[str, tuple[str, ...]] | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    label: str = "",
    fov: np.ndarray | None = None,
) -> RegionTable:
    """Mass share, area share and enrichment of the mean of image-wise maps in each region.

    Parameters
    ----------
    image_maps : numpy.ndarray, (n, H, W)
        The image-wise maps whose mean is the global map (e.g. one label's maps of an explain run).
    regions : numpy.ndarray, (H, W) int
        Region label image; every id present becomes a row (``0`` is named ``unassigned``).
    names : dict int -> str, optional
        Region names; default :data:`REGION_NAMES` for ids 1..14, else ``region_<id>``.
    groups : dict str -> tuple of str, optional
        Unions reported as extra rows (groups naming absent regions are skipped). Default
        :data:`REGION_GROUPS` when the names are the built-in ones, else none.
    n_boot : int
        Bootstrap resamples of the images (0: no intervals).
    ci : float
        Central interval coverage.
    seed : int
    label : str
        Recorded in the result.
    fov : numpy.ndarray, (H, W) bool, optional
        The field of view: a row with pixels inside it is measured within it (its in-field part's mass over the
        map's mass inside the field of view, its in-field area over the field of view's area); a row wholly outside
        (``outside_fov``) over the whole map and image. Without it every row is over the whole image.

    Returns
    -------
    RegionTable

    Raises
    ------
    ValueError
        Shapes that do not match, no image, or a global map with no mass.

    Notes
    -----
    Mass share = region sum of the global map / its total; area share = region pixels / all pixels; enrichment =
    mass share / area share (1 = as much evidence as a uniform map would put there). With ``fov`` both are taken
    inside the field of view, so 1 means "as much as a map uniform over the imaged retina": over the whole image
    every ratio of a region inside the field of view was inflated by 1 / (field of view's area share), 1.47 on the
    sample (32 % of a 384×512 frame lies outside it). Signed maps are taken as they are (shares of the signed total).
    """
    maps = np.asarray(image_maps)
    regions = np.asarray(regions)
    if maps.ndim != 3 or maps.shape[1:] != regions.shape:
        raise ValueError(f"image maps {maps.shape} do not match the region image {regions.shape}")
    if len(maps) == 0:
        raise ValueError("no image-wise maps to tabulate")
    if regions.min() < 0:
        raise ValueError("region ids must be non-negative integers")
    flat = regions.astype(np.int64).ravel()
    present = np.unique(flat)
    k = int(present.max()) + 1
    default_names = names is None
    names = dict(names or {i + 1: n for i, n in enumerate(REGION_NAMES)})
    names.setdefault(0, "unassigned")
    inside = np.ones(flat.shape, bool) if fov is None else np.asarray(fov, bool).ravel()
    if inside.shape != flat.shape:
        raise ValueError(f"field of view {np.shape(fov)} does not match the region image {regions.shape}")
    flat_maps = maps.reshape(len(maps), -1).astype(np.float64)
    per_all = np.stack([np.bincount(flat, weights=m, minlength=k) for m in flat_maps])
    per_in = np.stack([np.bincount(flat[inside], weights=m[inside], minlength=k) for m in flat_maps])
    area_all = np.bincount(flat, minlength=k).astype(np.float64)
    area_in = np.bincount(flat[inside], minlength=k).astype(np.float64)
    cols = [int(i) for i in present]
    row_names = [names.get(i, f"region_{i}") for i in cols]
    kinds = ["region"] * len(cols)
    columns = [[i] for i in cols]
    if groups is None:
        groups = REGION_GROUPS if default_names else {}
    for gname, members in groups.items():
        member_ids = [cols[row_names.index(m)] for m in members if m in row_names]
        if member_ids and len(member_ids) == len(members):
            row_names.append(gname)
            kinds.append("group")
            columns.append(member_ids)
    select = np.zeros((k, len(columns)))
    for j, ids in enumerate(columns):
        select[ids, j] = 1.0
    in_fov = (area_in @ select > 0) if fov is not None else np.zeros(len(columns), bool)
    region_mass = np.where(in_fov, per_in @ select, per_all @ select)  # (n, R)
    total = np.where(in_fov, per_in.sum(axis=1)[:, None], per_all.sum(axis=1)[:, None])  # (n, R)
    area_share = np.where(in_fov, (area_in @ select) / max(area_in.sum(), 1.0), (area_all @ select) / area_all.sum())

    def shares(weights):
        tot = weights @ total
        return (weights @ region_mass) / np.where(np.abs(tot) > 0, tot, np.nan)

    n = len(maps)
    mass_share = shares(np.full(n, 1.0 / n))
    if not np.all(np.isfinite(mass_share[~in_fov])) or (in_fov.any() and not np.all(np.isfinite(mass_share[in_fov]))):
        raise ValueError(
            "the global map has no mass (all maps are zero)"
            if not np.abs(per_all.sum()) > 0
            else "the global map has no mass inside the field of view"
        )
    enrichment = mass_share / np.where(area_share > 0, area_share, np.nan)
    mass_ci = np.full((len(columns), 2), np.nan)
    enr_ci = np.full((len(columns), 2), np.nan)
    if n_boot and n > 1:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=int(n_boot)) / n
        boot = shares(counts)
        q = [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100]
        mass_ci = np.nanpercentile(boot, q, axis=0).T
        enr_ci = mass_ci / np.where(area_share > 0, area_share, np.nan)[:, None]
    mass_in = float(per_in.sum() / per_all.sum()) if fov is not None and abs(per_all.sum()) > 0 else float("nan")
    baseline = [FOV if b else IMAGE for b in in_fov]
    return RegionTable(
        row_names,
        kinds,
        area_share,
        mass_share,
        enrichment,
        mass_ci,
        enr_ci,
        n,
        int(n_boot),
        float(ci),
        label,
        baseline,
        mass_in,
    )


# ------------------------------------------------------------------------------------------------------ files


def write_region_mask(
    path, regions: np.ndarray, names: dict[int, str] | None = None, landmarks: Landmarks | None = None
) -> Path:
    """Write a region label image as a TIFF with its names (and landmarks) in the description, atomically."""
    import tifffile

    from ..io_utils import atomic_path, json_text

    names = names or {i + 1: n for i, n in enumerate(REGION_NAMES)}
    meta = {"regions": {str(k): v for k, v in names.items()}, "frame": "left"}
    if landmarks is not None:
        meta.update(disc=list(landmarks.disc), fovea=list(landmarks.fovea), landmarks=landmarks.source)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, np.asarray(regions).astype(np.uint16), compression="zlib", description=json_text(meta, indent=None)
        )
    return Path(path)


def read_region_mask(path, shape=None) -> tuple[np.ndarray, dict[int, str]]:
    """A user's region label image (single-page integer TIFF) and its names.

    Names come from a JSON description ``{"regions": {"1": "name", ...}}`` (as :func:`write_region_mask` writes);
    otherwise ids are named ``region_<id>``.

    Raises
    ------
    ValueError
        Not a readable TIFF, not a 2-D integer image, or a shape other than ``shape``.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            desc = tif.pages[0].description
    except FileNotFoundError:
        raise ValueError(f"region mask not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is one message
        raise ValueError(f"{path}: not a readable TIFF ({exc})") from None
    data = np.squeeze(data)
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"{path}: a region mask must be one 2-D integer image, got {data.dtype} {data.shape}")
    if shape is not None and tuple(data.shape) != tuple(shape):
        raise ValueError(f"{path}: region mask is {data.shape} but the maps are {tuple(shape)}")
    if data.min() < 0:
        raise ValueError(f"{path}: region ids must be non-negative")
    names = {}
    try:
        names = {int(k): str(v) for k, v in json.loads(desc)["regions"].items()}
    except (ValueError, TypeError, KeyError):
        pass
    names = {int(i): names.get(int(i), f"region_{int(i)}") for i in np.unique(data) if i != 0} | (
        {0: "unassigned"} if 0 in data else {}
    )
    return data.astype(np.int64), names


def draw_region_table(fig, table: RegionTable, kind: str = "region"):
    """Horizontal bar chart of enrichment (with bootstrap intervals) into a figure the caller owns.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Cleared and drawn into.
    table : RegionTable
    kind : {"region", "group", "all"}

    Returns
    -------
    matplotlib.axes.Axes
    """
    fig.clear()
    ax = fig.add_subplot(1, 1, 1)
    idx = [i for i, k in enumerate(table.kinds) if kind == "all" or k == kind]
    y = np.arange(len(idx))
    enr = table.enrichment[idx]
    lo = np.nan_to_num(enr - table.enrichment_ci[idx, 0], nan=0.0)
    hi = np.nan_to_num(table.enrichment_ci[idx, 1] - enr, nan=0.0)
    ax.barh(y, enr, xerr=np.stack([lo, hi]), color="tab:orange", ecolor="0.3", capsize=2)
    ax.axvline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set_yticks(y, [table.names[i] for i in idx], fontsize=8)
    ax.invert_yaxis()
    base = "within the field of view" if FOV in table.baseline else "over the whole image"
    ax.set_xlabel(f"enrichment (mass share / area share, {base})")
    pct = round(table.ci * 100)
    ax.set_title(f"{table.label or 'global map'}: {table.n_images} images, {pct}% bootstrap intervals", fontsize=9)
    fig.tight_layout()
    return ax
