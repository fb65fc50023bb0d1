"""What a sanity check returns, :class:`SanityResult`, and its results folder: the one place naming the folder's
files (:data:`FILES`), writing them (:meth:`SanityResult.write`) and reading them back (:meth:`SanityResult.open`).
Torch-free.

A sanity folder (``global-xai sanity --out FOLDER``, ``run_sanity(out_dir=FOLDER)``) holds::

    sanity.json   status, images, targets, layers; per method the verdicts (image-wise and global, with intervals
                  and the unrelated-pair and model-free references), the per-image values and every step's values
    sanity.csv    one row per method, mode (cascading / independent) and layer: mean |ρ| with its interval, signed
                  ρ, SSIM and the global map's ρ
    sanity.png    the figure (:func:`~napari_global_xai.analyses.sanity.draw_sanity`)
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["FILES", "SanityFiles", "Interval", "Verdict", "SanityResult", "CSV_COLUMNS", "VERDICT_COLUMNS"]

#: Columns of :meth:`SanityResult.verdict_rows` (the CLI table and the report's verdict table).
VERDICT_COLUMNS = (
    "method",
    "level",
    "randomised |ρ| [95 %]",
    "unrelated pairs",
    "model-free",
    "signed ρ",
    "SSIM",
    "verdict",
)


@dataclass(frozen=True)
class SanityFiles:
    """Names of the files of a sanity results folder (see the module notes)."""

    summary: str = "sanity.json"
    table: str = "sanity.csv"
    figure: str = "sanity.png"


#: The names of a sanity results folder's files.
FILES = SanityFiles()

#: Columns of ``sanity.csv``.
CSV_COLUMNS = (
    "method",
    "mode",
    "step",
    "layer",
    "abs_spearman_mean",
    "abs_spearman_low",
    "abs_spearman_high",
    "spearman_mean",
    "ssim_mean",
    "global_spearman",
    "global_ssim",
)


def _num(x) -> float:
    return float("nan") if x is None else float(x)


@dataclass
class Interval:
    """A mean (or estimate) with the ends of its interval (NaN when there is none)."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        if not np.isfinite(self.mean):
            return "n/a"
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{self.mean:.2f} [no interval]"
        return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}]"

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_list(self) -> list:
        return [self.mean, self.low, self.high]

    @classmethod
    def from_list(cls, values) -> Interval:
        return cls(*(_num(v) for v in values))


@dataclass
class Verdict:
    """One verdict of one method (see :mod:`napari_global_xai.analyses.sanity_stats`).

    Attributes
    ----------
    level : {"image", "global"}
    passes : bool or None
        None: undecided (cancelled before every layer was randomised, or too few images for an interval).
    randomised : Interval
        |ρ| between original and fully randomised maps (image-wise: mean over images; global: of the global maps).
    signed : float
        The same, signed (image-wise: mean over images).
    unrelated : Interval
        Mean |ρ| between the original maps of two different images (the bar).
    model_free : Interval
        |ρ| between the original maps and the edge magnitude of their inputs (global: of the means).
    ssim : float
    line : str
        The verdict in words, with the numbers it used.
    note : str
    """

    level: str
    passes: bool | None
    randomised: Interval
    signed: float
    unrelated: Interval
    model_free: Interval
    ssim: float
    line: str = ""
    note: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("randomised", "unrelated", "model_free"):
            d[key] = getattr(self, key).to_list()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Verdict:
        d = dict(d)
        for key in ("randomised", "unrelated", "model_free"):
            d[key] = Interval.from_list(d[key])
        d["signed"], d["ssim"] = _num(d.get("signed")), _num(d.get("ssim"))
        return cls(**d)


@dataclass
class SanityResult:
    """Similarity of recomputed maps to the original ones, per method and randomisation step, and the verdicts.

    Attributes
    ----------
    methods : list of str
        One name per configuration (method, or method plus ``#2`` ... when a method appears twice).
    steps : list of str
        Cascading steps: ``"original"`` then the layer randomised at each step, top down.
    spearman, ssim : dict str -> numpy.ndarray, (S, k)
        Per method: image-wise signed ρ and SSIM at each cascading step (row 0: the original, 1 by definition).
    global_spearman, global_ssim : dict str -> numpy.ndarray, (S,)
        Signed ρ and SSIM of the sample's global map with the original one.
    layers : list of str
        Layers in randomisation order (top down).
    independent_spearman, independent_ssim : dict str -> numpy.ndarray, (L, k)
        Only that layer randomised (empty when not run).
    independent_global_spearman : dict str -> numpy.ndarray, (L,)
    step_intervals, independent_intervals : dict str -> list of Interval
        Mean |ρ| over the images at each step with its bootstrap interval.
    unrelated, model_free : dict str -> numpy.ndarray, (k,)
        Per image: mean |ρ| of its original map with the other images' maps, and with its input's edge map.
    judgements : dict str -> dict {"image": Verdict, "global": Verdict}
    image_indices : list of int
    image_ids : list of str
    targets : list of str
        Explained label per image.
    n_boot, seed : int
        Bootstrap resamples of the image-wise intervals and their seed.
    cancelled : bool
    original_maps : dict str -> numpy.ndarray, (k, H, W)
        In memory only (not written).
    """

    methods: list[str]
    steps: list[str]
    spearman: dict
    ssim: dict
    global_spearman: dict
    global_ssim: dict
    layers: list[str]
    independent_spearman: dict = field(default_factory=dict)
    independent_ssim: dict = field(default_factory=dict)
    independent_global_spearman: dict = field(default_factory=dict)
    step_intervals: dict = field(default_factory=dict)
    independent_intervals: dict = field(default_factory=dict)
    unrelated: dict = field(default_factory=dict)
    model_free: dict = field(default_factory=dict)
    judgements: dict = field(default_factory=dict)
    image_indices: list[int] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    n_boot: int = 0
    seed: int = 0
    cancelled: bool = False
    original_maps: dict = field(default_factory=dict)

    @property
    def verdicts(self) -> dict[str, str]:
        """Per method: the image-wise verdict line, then the global one."""
        return {m: "\n".join(v.line for v in self.judgements.get(m, {}).values()) for m in self.methods}

    def verdict_rows(self) -> list[list[str]]:
        """One row of text per method and level (image-wise, global), in the order of :data:`VERDICT_COLUMNS`: the
        randomised |ρ| and its two references with their intervals, signed ρ, SSIM and the verdict word."""
        rows = []
        for m in self.methods:
            for level, v in self.judgements.get(m, {}).items():
                word = "undecided" if v.passes is None else "passes" if v.passes else "FAILS"
                rows.append(
                    [m, level, str(v.randomised), str(v.unrelated), str(v.model_free)]
                    + [f"{v.signed:.2f}", f"{v.ssim:.2f}", word]
                )
        return rows

    def final_spearman(self, method: str) -> float:
        """Mean image-wise signed ρ at the last finished cascading step."""
        return float(np.nanmean(self.spearman[method][-1]))

    def to_rows(self) -> list[dict]:
        """Rows of ``sanity.csv`` (:data:`CSV_COLUMNS`): every cascading step, then every layer alone."""
        rows = []
        for m in self.methods:
            modes = [
                (
                    "cascading",
                    self.steps,
                    self.spearman,
                    self.ssim,
                    self.global_spearman,
                    self.global_ssim,
                    self.step_intervals,
                    0,
                )
            ]
            if len(self.independent_spearman.get(m, [])):
                modes.append(
                    (
                        "independent",
                        self.layers,
                        self.independent_spearman,
                        self.independent_ssim,
                        self.independent_global_spearman,
                        {},
                        self.independent_intervals,
                        1,
                    )
                )
            for mode, names, rho, ss, g_rho, g_ss, intervals, first in modes:
                for s in range(len(rho[m])):
                    iv = intervals.get(m, [])
                    iv = iv[s] if s < len(iv) else Interval(float(np.nanmean(np.abs(rho[m][s]))), np.nan, np.nan)
                    g_ss_m = g_ss.get(m)
                    rows.append(
                        {
                            "method": m,
                            "mode": mode,
                            "step": s + first,
                            "layer": names[s],
                            "abs_spearman_mean": iv.mean,
                            "abs_spearman_low": iv.low,
                            "abs_spearman_high": iv.high,
                            "spearman_mean": float(np.nanmean(rho[m][s])),
                            "ssim_mean": float(np.nanmean(ss[m][s])),
                            "global_spearman": float(g_rho[m][s]) if m in g_rho else float("nan"),
                            "global_ssim": float(g_ss_m[s]) if g_ss_m is not None else float("nan"),
                        }
                    )
        return rows

    def to_dict(self) -> dict:
        """The content of ``sanity.json`` (NaN written as null by :func:`~napari_global_xai.io_utils.save_json`)."""

        def arr(d, m):
            return np.asarray(d.get(m, []), np.float64).tolist()

        return {
            "status": "CANCELLED" if self.cancelled else "DONE",
            "cancelled": self.cancelled,
            "methods": self.methods,
            "images": self.image_ids,
            "image_indices": self.image_indices,
            "targets": self.targets,
            "layers_top_down": self.layers,
            "steps": self.steps,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "verdicts": self.verdicts,
            "judgements": {m: {k: v.to_dict() for k, v in self.judgements.get(m, {}).items()} for m in self.methods},
            "final_spearman": {m: self.final_spearman(m) for m in self.methods},
            "per_method": {
                m: {
                    "spearman": arr(self.spearman, m),
                    "ssim": arr(self.ssim, m),
                    "global_spearman": arr(self.global_spearman, m),
                    "global_ssim": arr(self.global_ssim, m),
                    "independent_spearman": arr(self.independent_spearman, m),
                    "independent_ssim": arr(self.independent_ssim, m),
                    "independent_global_spearman": arr(self.independent_global_spearman, m),
                    "step_intervals": [iv.to_list() for iv in self.step_intervals.get(m, [])],
                    "independent_intervals": [iv.to_list() for iv in self.independent_intervals.get(m, [])],
                    "unrelated": arr(self.unrelated, m),
                    "model_free": arr(self.model_free, m),
                }
                for m in self.methods
            },
        }

    def write(self, folder, plot: bool = True) -> dict[str, Path]:
        """Write ``sanity.json``, ``sanity.csv`` and (``plot``) ``sanity.png`` into ``folder``, each atomically.

        Returns
        -------
        dict
            ``{"summary": path, "table": path, "figure": path}`` (``figure`` only when plotted).
        """
        from ..io_utils import atomic_write_text, save_json

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.to_rows())
        paths = {"summary": out / FILES.summary, "table": out / FILES.table}
        atomic_write_text(paths["table"], buf.getvalue())
        save_json(paths["summary"], self.to_dict())
        if plot:
            from ..figures import save_figure
            from .sanity_figure import draw_sanity

            paths["figure"] = save_figure(out / FILES.figure, draw_sanity, self, size=(13, 4.5))
        return paths

    @classmethod
    def open(cls, folder) -> SanityResult:
        """The result a sanity folder holds, rebuilt from ``sanity.json`` (no maps).

        Raises
        ------
        FileNotFoundError
            The folder holds no ``sanity.json``.
        ValueError
            ``sanity.json`` is not a sanity result of this version.
        """
        path = Path(folder) / FILES.summary
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "per_method" not in data:
            raise ValueError(f"{path}: not a sanity result (no per-method values); run 'global-xai sanity' again")
        methods = list(data["methods"])
        per = data["per_method"]

        def arrays(key, k):
            out = {}
            for m in methods:
                values = per[m].get(key, [])
                out[m] = np.array([[_num(x) for x in row] for row in values], np.float64).reshape(len(values), k)
            return out

        def vectors(key):
            return {m: np.array([_num(x) for x in per[m].get(key, [])], np.float64) for m in methods}

        def intervals(key):
            return {m: [Interval.from_list(v) for v in per[m].get(key, [])] for m in methods}

        k = len(data.get("image_indices", []))
        return cls(
            methods=methods,
            steps=list(data["steps"]),
            spearman=arrays("spearman", k),
            ssim=arrays("ssim", k),
            global_spearman=vectors("global_spearman"),
            global_ssim=vectors("global_ssim"),
            layers=list(data["layers_top_down"]),
            independent_spearman={m: a for m, a in arrays("independent_spearman", k).items() if len(a)},
            independent_ssim={m: a for m, a in arrays("independent_ssim", k).items() if len(a)},
            independent_global_spearman={m: a for m, a in vectors("independent_global_spearman").items() if len(a)},
            step_intervals=intervals("step_intervals"),
            independent_intervals=intervals("independent_intervals"),
            unrelated=vectors("unrelated"),
            model_free=vectors("model_free"),
            judgements={
                m: {level: Verdict.from_dict(v) for level, v in (data.get("judgements", {}).get(m) or {}).items()}
                for m in methods
            },
            image_indices=[int(i) for i in data.get("image_indices", [])],
            image_ids=list(data.get("images", [])),
            targets=list(data.get("targets", [])),
            n_boot=int(data.get("n_boot", 0)),
            seed=int(data.get("seed", 0)),
            cancelled=bool(data.get("cancelled", False)),
        )
