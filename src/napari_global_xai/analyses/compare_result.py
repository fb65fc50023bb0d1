"""The group comparison's result and its results folder: the one place that names the folder's files, writes them
and reads them back. Torch-free.

A compare folder (``global-xai compare --out FOLDER``, ``run_compare(out_dir=FOLDER)``) holds (names: :data:`FILES`)::

    compare_difference.tif       mean(A) − mean(B) of the compared (normalised, smoothed) maps (float32, left-eye
                                 frame)
    compare_neglog10p.tif        −log10 of the uncorrected permutation p-values
    compare_significant.tif      FDR-significant pixels (uint8: 1 = A higher, 2 = B higher)
    compare_significant_fwe.tif  the same at the family-wise (max-statistic) level
    compare_stats.tif            float32 planes mean_a, mean_b, p, q, p_fwe, tested (names in the description)
    compare_summary.json         settings, normalisation and what a lower pixel means, smoothing σ, p-floor,
                                 counts, total evidence, per-region counts, group assignment
    compare.png                  the difference and −log10 p with the FDR pixels outlined

:meth:`CompareResult.write` writes the folder, :meth:`CompareResult.open` reads it back (the report draws from it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["FILES", "CompareFiles", "CompareResult", "GroupSplit", "draw_compare", "fdr_min_pixels"]


@dataclass(frozen=True)
class CompareFiles:
    """Names of the files of a compare results folder (see the module notes)."""

    difference: str = "compare_difference.tif"
    neglog10p: str = "compare_neglog10p.tif"
    significant: str = "compare_significant.tif"
    significant_fwe: str = "compare_significant_fwe.tif"
    stats: str = "compare_stats.tif"
    summary: str = "compare_summary.json"
    figure: str = "compare.png"


#: The names of a compare results folder's files.
FILES = CompareFiles()
_STAT_PLANES = ("mean_a", "mean_b", "p", "q", "p_fwe", "tested")


@dataclass
class GroupSplit:
    """Which images belong to group A (1), group B (0) or neither (-1).

    Attributes
    ----------
    assign : numpy.ndarray, (n,) int8
    names : tuple of str
        Names of group A and group B.
    description : str
    """

    assign: np.ndarray
    names: tuple[str, str]
    description: str = ""

    @property
    def n_a(self) -> int:
        return int((self.assign == 1).sum())

    @property
    def n_b(self) -> int:
        return int((self.assign == 0).sum())


def fdr_min_pixels(n_tested: int, p_floor: float, alpha: float) -> int:
    """The fewest pixels Benjamini-Hochberg can declare at level ``alpha`` when no p-value is below ``p_floor``.

    BH rejects the ``k`` smallest p-values when ``p_(k) ≤ alpha·k/m``; with every ``p ≥ p_floor`` this needs
    ``k ≥ m·p_floor/alpha``: an effect on fewer pixels cannot be found, however strong.
    """
    return max(1, math.ceil(n_tested * p_floor / alpha - 1e-9)) if n_tested else 0


@dataclass
class CompareResult:
    """Difference of two groups' mean image-wise maps and its permutation test.

    Attributes
    ----------
    difference : numpy.ndarray, (H, W)
        mean(group A) − mean(group B) of the compared maps (after ``normalisation``).
    mean_a, mean_b : numpy.ndarray, (H, W)
    p : numpy.ndarray, (H, W)
        Uncorrected permutation p-values (1 where untested).
    q : numpy.ndarray, (H, W)
        BH-adjusted p-values (NaN where untested).
    p_fwe : numpy.ndarray, (H, W)
        Family-wise (max-statistic) adjusted p-values.
    significant : numpy.ndarray, (H, W) uint8
        FDR-significant pixels: 1 where A > B, 2 where B > A, 0 elsewhere (a labels layer).
    significant_fwe : numpy.ndarray, (H, W) uint8
        Same coding, family-wise max-statistic at ``alpha``.
    split : GroupSplit
    n_permutations : int
        Permutations every tested pixel saw (the first stage; exhaustive when ``exact``).
    alpha : float
    tested : numpy.ndarray, (H, W) bool
    cancelled : bool
    metadata : dict
        Seed, dtype, device; the pipeline adds the normalisation, its meaning and the total-evidence test.
    by_region : list of dict, optional
        Where significant pixels lie, per region (set by the pipeline when it has a region image).
    exact : bool
        Every distinct split was enumerated (p-values exact, not estimated).
    max_permutations : int
        Permutations the most refined pixels saw (more than ``n_permutations`` where the p-floor was lowered).
    n_refined : int
        Pixels that got more permutations because their p sat near the floor.
    """

    difference: np.ndarray
    mean_a: np.ndarray
    mean_b: np.ndarray
    p: np.ndarray
    q: np.ndarray
    p_fwe: np.ndarray
    significant: np.ndarray
    significant_fwe: np.ndarray
    split: GroupSplit
    n_permutations: int
    alpha: float
    tested: np.ndarray
    cancelled: bool = False
    metadata: dict = field(default_factory=dict)
    by_region: list | None = None
    exact: bool = False
    max_permutations: int = 0
    n_refined: int = 0

    @property
    def neg_log10_p(self) -> np.ndarray:
        return -np.log10(self.p)

    @property
    def p_floor(self) -> float:
        """The smallest p-value any pixel could reach: ``1/(1 + permutations)`` (``1/splits`` when exact)."""
        n = max(self.max_permutations, self.n_permutations)
        return 1.0 / n if self.exact else 1.0 / (1.0 + n)

    def summary(self) -> dict:
        """The JSON-ready summary (:data:`FILES` ``.summary`` without ``by_region`` and the group assignment)."""
        n_sig = int((self.significant > 0).sum())
        n_tested = int(self.tested.sum())
        return {
            "groups": list(self.split.names),
            "n_images": [self.split.n_a, self.split.n_b],
            "split": self.split.description,
            "n_permutations": self.n_permutations,
            "max_permutations": max(self.max_permutations, self.n_permutations),
            "exact": self.exact,
            "n_refined": self.n_refined,
            "alpha": self.alpha,
            "n_pixels_tested": n_tested,
            "n_significant_fdr": n_sig,
            "n_significant_fdr_a_gt_b": int((self.significant == 1).sum()),
            "n_significant_fdr_b_gt_a": int((self.significant == 2).sum()),
            "n_significant_fwe": int((self.significant_fwe > 0).sum()),
            "n_significant_fwe_a_gt_b": int((self.significant_fwe == 1).sum()),
            "n_significant_fwe_b_gt_a": int((self.significant_fwe == 2).sum()),
            "min_p": float(self.p[self.tested].min()) if self.tested.any() else 1.0,
            "p_floor": self.p_floor,
            "fdr_min_pixels": fdr_min_pixels(n_tested, self.p_floor, self.alpha),
            "cancelled": self.cancelled,
            **self.metadata,
        }

    def write(self, folder, anatomy: np.ndarray | None = None) -> dict[str, Path]:
        """Write every file of :data:`FILES` into ``folder`` (created), each atomically.

        Returns
        -------
        dict
            File role (the :class:`CompareFiles` field) → path.
        """
        import tifffile

        from ..figures import save_figure
        from ..io_utils import atomic_path, save_json

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        desc = {"groups": list(self.split.names), "frame": "left"}
        planes = {
            "difference": self.difference.astype(np.float32),
            "neglog10p": self.neg_log10_p.astype(np.float32),
            "significant": self.significant,
            "significant_fwe": self.significant_fwe,
            "stats": np.stack([np.asarray(getattr(self, n), np.float32) for n in _STAT_PLANES]),
        }
        paths = {}
        for role, data in planes.items():
            paths[role] = out / getattr(FILES, role)
            extra = {"planes": list(_STAT_PLANES)} if role == "stats" else {}
            with atomic_path(paths[role]) as tmp:
                tifffile.imwrite(tmp, data, description=json.dumps({**desc, **extra}))
        paths["summary"] = out / FILES.summary
        save_json(
            paths["summary"],
            {**self.summary(), "by_region": self.by_region, "assign": self.split.assign.tolist()},
        )
        paths["figure"] = save_figure(out / FILES.figure, draw_compare, self, anatomy, size=(11, 4.5))
        return paths

    @classmethod
    def open(cls, folder) -> CompareResult:
        """The result a compare folder holds, rebuilt from its summary and TIFFs (p-values as float32).

        Raises
        ------
        FileNotFoundError
            The folder holds no :data:`FILES` ``.summary`` (or one of the TIFFs is missing).
        """
        import tifffile

        folder = Path(folder)
        s = json.loads((folder / FILES.summary).read_text())
        stats = dict(zip(_STAT_PLANES, tifffile.imread(folder / FILES.stats).astype(np.float64)))
        known = {
            "groups", "n_images", "split", "n_permutations", "max_permutations", "exact", "n_refined", "alpha",
            "n_pixels_tested", "n_significant_fdr", "n_significant_fdr_a_gt_b", "n_significant_fdr_b_gt_a",
            "n_significant_fwe", "n_significant_fwe_a_gt_b", "n_significant_fwe_b_gt_a", "min_p", "p_floor",
            "fdr_min_pixels", "cancelled", "by_region", "assign",
        }  # fmt: skip
        split = GroupSplit(np.asarray(s["assign"], np.int8), tuple(s["groups"]), str(s.get("split", "")))
        return cls(
            tifffile.imread(folder / FILES.difference).astype(np.float64),
            stats["mean_a"],
            stats["mean_b"],
            stats["p"],
            stats["q"],
            stats["p_fwe"],
            tifffile.imread(folder / FILES.significant),
            tifffile.imread(folder / FILES.significant_fwe),
            split,
            int(s["n_permutations"]),
            float(s["alpha"]),
            stats["tested"] > 0.5,
            bool(s.get("cancelled", False)),
            {k: v for k, v in s.items() if k not in known},
            s.get("by_region"),
            bool(s.get("exact", False)),
            int(s.get("max_permutations", s["n_permutations"])),
            int(s.get("n_refined", 0)),
        )


def draw_compare(fig, result: CompareResult, anatomy: np.ndarray | None = None):
    """Difference map (diverging colormap, symmetric) and −log10 p with the FDR mask outlined, into ``fig``.

    Returns
    -------
    list of matplotlib.axes.Axes
    """
    fig.clear()
    axes = fig.subplots(1, 2)
    lim = float(np.nanmax(np.abs(result.difference))) or 1.0
    if anatomy is not None:
        from ..figures import anatomy_rgb

        axes[0].imshow(anatomy_rgb(anatomy).mean(-1), cmap="gray")
    im = axes[0].imshow(
        result.difference, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.85 if anatomy is not None else 1.0
    )
    fig.colorbar(im, ax=axes[0], fraction=0.04)
    a, b = result.split.names
    norm = result.metadata.get("normalisation")
    sigma = result.metadata.get("smooth_sigma")
    how = ", ".join(([norm] if norm else []) + ([f"σ {sigma:.3g} px"] if sigma else []))
    axes[0].set_title(f"mean({a}) − mean({b})" + (f" [{how}]" if how else ""), fontsize=9)
    im = axes[1].imshow(result.neg_log10_p, cmap="magma")
    fig.colorbar(im, ax=axes[1], fraction=0.04)
    if (result.significant > 0).any():
        axes[1].contour(result.significant > 0, levels=[0.5], colors="cyan", linewidths=0.8)
    axes[1].set_title(
        f"−log10 p (floor {result.p_floor:.1e}); cyan: FDR {result.alpha:g}",
        fontsize=9,
    )
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return list(axes)
