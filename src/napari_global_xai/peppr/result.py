"""What one PEPPR run returns, :class:`PepprResult` (the curves per map, their summary and report table), and the
folder it is written to: the one place naming a PEPPR folder's files (:meth:`PepprResult.write`,
:meth:`PepprResult.open`, :func:`filled_file`, :func:`folder_files`). Torch-free.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import MODES
from .curves import Curves

__all__ = [
    "PepprResult",
    "SUMMARY_FILE",
    "CURVES_FILE",
    "FIGURE_FILE",
    "CSV_COLUMNS",
    "filled_file",
    "filled_pairs",
    "folder_files",
]

#: The run's summary (:meth:`PepprResult.write`; NaN written as null).
SUMMARY_FILE = "peppr_summary.json"
#: Every curve in long format, one value a row (:data:`CSV_COLUMNS`).
CURVES_FILE = "peppr_curves.csv"
#: The curves figure (:func:`~napari_global_xai.peppr.drawing.plot_peppr`).
FIGURE_FILE = "peppr.png"
#: Columns of :data:`CURVES_FILE`.
CSV_COLUMNS = ("map", "order", "seed", "curve", "fraction", "label", "value")
_FILLED_STEMS = {"erase": "erased", "restore": "restored"}


def filled_file(mode: str, map_name: str) -> str:
    """Name of the TIFF of images erased (``mode="erase"``) or restored in ``map_name``'s order."""
    return f"{_FILLED_STEMS[mode]}_{map_name}.tif"


def filled_pairs(folder: str | Path) -> list[tuple[str, Path, Path]]:
    """``(map name, erased TIFF, restored TIFF)`` of every map with both files in a PEPPR folder, by name."""
    folder = Path(folder)
    prefix = _FILLED_STEMS["erase"] + "_"
    pairs = []
    for erased in sorted(folder.glob(filled_file("erase", "*"))):
        name = erased.stem[len(prefix) :]
        restored = folder / filled_file("restore", name)
        if restored.exists():
            pairs.append((name, erased, restored))
    return pairs


def folder_files(folder: str | Path) -> set[Path]:
    """The files of a PEPPR folder's contract that exist in ``folder`` (summary, curves, figure, filled TIFFs)."""
    folder = Path(folder)
    files = {folder / name for name in (SUMMARY_FILE, CURVES_FILE, FIGURE_FILE)}
    for mode in MODES:
        files |= set(folder.glob(filled_file(mode, "*")))
    return {f for f in files if f.is_file()}


@dataclass
class PepprResult:
    """Everything one PEPPR run produced.

    Attributes
    ----------
    fractions : numpy.ndarray, (F,)
    labels : list of str
        Evaluated labels (curve columns).
    metric : {"auroc", "mean_probability"}
    fill : str
    maps : list of str
        Evaluated maps, in order.
    headline : dict[str, list[str]]
        Per map, the labels (or ``"macro"``) it is judged on (``maps_for``).
    curves, reverse : dict[str, Curves]
        True-order and reverse-order curves per map.
    random : list of Curves
        Random-order curves, one per seed (shared by every map: they do not depend on it).
    summary : dict
        Per map, :func:`summarise` against the random curves (per label and ``"macro"``), with the reverse order's
        areas added.
    table : list of dict
        One row per (map, headline label): the numbers a report shows.
    specificity : dict
        ``maps`` (label maps), ``labels`` and ``erase`` / ``restore`` area matrices (map a × label b) plus
        ``erase_gain`` = random A_erase(b) − A_erase(a, b) and ``restore_gain`` = A_restore(a, b) − random
        A_restore(b).
    split_note : dict
        Which split built the maps and which is evaluated (the circularity guard), as given.
    n_images, n_forwards, n_skipped : int
        ``n_images``: images the curves are computed on (after a cancel, those finished).
    seconds : float
    eval_indices : numpy.ndarray or None
        Stack indices of the evaluated images (None = all); after a cancel, those finished.
    cancelled : bool
        True for the partial result of a cancelled run: every curve is complete, but only over the images whose
        chunks finished (``n_images`` of ``n_requested``).
    n_requested : int or None
        Images the run was asked to evaluate (None = ``n_images``).
    """

    fractions: np.ndarray
    labels: list[str]
    metric: str
    fill: str
    maps: list[str]
    headline: dict[str, list[str]]
    curves: dict[str, Curves]
    reverse: dict[str, Curves]
    random: list[Curves]
    summary: dict
    table: list[dict]
    specificity: dict
    split_note: dict
    n_images: int
    n_forwards: int
    n_skipped: int
    seconds: float = 0.0
    eval_indices: np.ndarray | None = None
    cancelled: bool = False
    n_requested: int | None = None

    def random_band(self, mode: str, label: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sample standard deviation (over seeds) of the random-order curve, ``(F,)`` each."""
        stack = np.array([c.curve(mode, label) for c in self.random])
        if len(stack) == 0:
            nan = np.full(len(self.fractions), np.nan)
            return nan, nan
        sd = stack.std(axis=0, ddof=1) if len(stack) > 1 else np.zeros(stack.shape[1])
        return stack.mean(axis=0), sd

    def write(self, folder: str | Path, plot: bool = True) -> dict[str, Path]:
        """Write :data:`CURVES_FILE`, :data:`SUMMARY_FILE` and (``plot``) :data:`FIGURE_FILE` into ``folder``.

        Every file is written atomically; the folder is created. The filled images (:func:`filled_file`) are
        written by the pipeline, which has the model and the images.

        Returns
        -------
        dict
            ``{"curves": path, "summary": path, "figure": path}`` (``figure`` only when plotted).
        """
        from ..io_utils import atomic_write_text, save_json

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(self.curves_rows())
        paths = {"curves": out / CURVES_FILE, "summary": out / SUMMARY_FILE}
        atomic_write_text(paths["curves"], text.getvalue())
        save_json(paths["summary"], self.summary_dict())
        if plot:
            from .drawing import plot_peppr

            paths["figure"] = plot_peppr(self, out / FIGURE_FILE)
        return paths

    @classmethod
    def open(cls, folder: str | Path) -> PepprResult:
        """The result a PEPPR folder holds, rebuilt from :data:`SUMMARY_FILE` and :data:`CURVES_FILE`.

        The curves carry no per-image scores; a curve missing from the CSV (or the whole CSV) reads as NaN.

        Raises
        ------
        FileNotFoundError
            The folder holds no :data:`SUMMARY_FILE`.
        """
        folder = Path(folder)
        summary = json.loads((folder / SUMMARY_FILE).read_text())
        fractions = np.asarray(summary["fractions"], float)
        labels = list(summary["labels"])
        values: dict = {}
        if (folder / CURVES_FILE).exists():
            with (folder / CURVES_FILE).open(newline="") as fh:
                for row in csv.DictReader(fh):
                    key = (row["map"], row["order"], row["seed"], row["curve"], row["label"])
                    values.setdefault(key, {})[float(row["fraction"])] = float(row["value"])

        def curves(map_name: str, order: str, seed) -> Curves:
            def table(mode):
                tag = "" if seed is None else str(seed)
                cols = [values.get((map_name, order, tag, mode, lab), {}) for lab in labels]
                return np.array([[col.get(float(p), np.nan) for col in cols] for p in fractions]).reshape(
                    len(fractions), len(labels)
                )

            return Curves(
                fractions,
                table("erase"),
                table("restore"),
                summary["metric"],
                labels,
                int(summary.get("n_forwards", 0)),
                int(summary.get("n_skipped", 0)),
                summary["fill"],
                map_name,
                order,
                seed,
            )

        maps = list(summary["maps"])
        reversed_maps = {key[0] for key in values if key[1] == "reverse"}
        eval_indices = summary.get("eval_indices")
        return cls(
            fractions=fractions,
            labels=labels,
            metric=summary["metric"],
            fill=summary["fill"],
            maps=maps,
            headline={k: list(v) for k, v in summary.get("headline", {}).items()},
            curves={name: curves(name, "true", None) for name in maps},
            reverse={name: curves(name, "reverse", None) for name in maps if name in reversed_maps},
            random=[curves("random", "random", int(s)) for s in summary.get("random_seeds", [])],
            summary=summary.get("summary", {}),
            table=[{k: (np.nan if v is None else v) for k, v in r.items()} for r in summary.get("table", [])],
            specificity=summary.get("specificity", {}),
            split_note=summary.get("split", {}),
            n_images=int(summary.get("n_images", 0)),
            n_forwards=int(summary.get("n_forwards", 0)),
            n_skipped=int(summary.get("n_skipped", 0)),
            seconds=float(summary.get("seconds", 0.0)),
            eval_indices=None if eval_indices is None else np.asarray(eval_indices, int),
            cancelled=bool(summary.get("cancelled", False)),
            n_requested=summary.get("n_requested"),
        )

    def curves_rows(self) -> list[tuple]:
        """Long-format rows ``(map, order, seed, curve, fraction, label, value)`` of every curve (CSV_COLUMNS)."""
        rows = []
        for name in self.maps:
            rows += _curve_rows(self.curves[name], name)
            if name in self.reverse:
                rows += _curve_rows(self.reverse[name], name)
        for c in self.random:
            rows += _curve_rows(c, "random")
        return rows

    def summary_dict(self) -> dict:
        """The JSON-ready summary of the run (:data:`SUMMARY_FILE`; NaN as None)."""
        from ..io_utils import json_ready

        return json_ready(
            {
                "method": "PEPPR (reconstruction, methods.md §1.7)",
                "metric": self.metric,
                "fill": self.fill,
                "fractions": self.fractions,
                "labels": self.labels,
                "maps": self.maps,
                "headline": self.headline,
                "table": self.table,
                "summary": self.summary,
                "specificity": self.specificity,
                "split": self.split_note,
                "n_images": self.n_images,
                "random_seeds": [c.seed for c in self.random],
                "n_forwards": self.n_forwards,
                "n_skipped": self.n_skipped,
                "seconds": self.seconds,
                "eval_indices": None if self.eval_indices is None else self.eval_indices,
                "cancelled": self.cancelled,
                "status": "CANCELLED" if self.cancelled else "complete",
                "n_requested": self.n_images if self.n_requested is None else self.n_requested,
            }
        )


def _curve_rows(curves: Curves, map_name: str):
    for mode in MODES:
        for label in list(curves.labels) + ["macro"]:
            for p, value in zip(curves.fractions, curves.curve(mode, label)):
                yield (
                    map_name,
                    curves.order,
                    "" if curves.seed is None else curves.seed,
                    mode,
                    float(p),
                    label,
                    float(value),
                )
