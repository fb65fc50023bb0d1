"""What a regions run returns, :class:`RegionsResult`, and the folder it is written to: the one place naming a
regions folder's files (:data:`FILES`, :meth:`RegionsResult.write`, :meth:`RegionsResult.open`).

A regions folder (``global-xai regions --out FOLDER``, ``run_regions(out_dir=FOLDER)``) holds::

    regions.tif             (H, W) region label image, left-eye frame; names, disc and fovea in the description
    region_table.csv        one row per label × region: shares, enrichment, bootstrap intervals, the row's baseline
    regions_summary.json    landmarks (with their plausibility problems), the baselines, the most enriched region
    regions_<label>.png     one enrichment bar chart per label

Every share in a row is taken over the row's ``baseline``: ``field of view`` (the map's mass and the area inside the
field of view) for the regions inside it, ``image`` for ``outside_fov`` (and for every row when no field of view
was known, e.g. a user's region mask without an ``outside_fov`` region).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .landmarks import Landmarks
from .regions import IMAGE, RegionTable, read_region_mask, write_region_mask

__all__ = ["FILES", "RegionsFiles", "RegionsResult", "read_region_tables", "region_table_csv"]


@dataclass(frozen=True)
class RegionsFiles:
    """Names of the files of a regions folder (see the module notes); ``chart`` takes the label."""

    mask: str = "regions.tif"
    table: str = "region_table.csv"
    summary: str = "regions_summary.json"
    chart: str = "regions_{label}.png"


#: The names of a regions folder's files.
FILES = RegionsFiles()

#: The numeric columns of a region table's CSV, between its label/region/kind/baseline and n_images columns.
_CSV_NUMBERS = ("area_share", "mass_share", "mass_lo", "mass_hi", "enrichment", "enrichment_lo", "enrichment_hi")


@dataclass
class RegionsResult:
    """What :func:`~napari_global_xai.analyses.regions_pipeline.run_regions` returns.

    Attributes
    ----------
    regions : numpy.ndarray, (H, W) int
        Region label image (detected, or the one given).
    region_names : dict int -> str
    landmarks : Landmarks or None
        Disc and fovea (None when a region image was given); ``landmarks.problems`` lists why they are not
        plausible (empty when they are).
    tables : list of RegionTable
        One per label finished.
    cancelled : bool
        True when a cancel stopped the run before every label had its table.
    out_dir : pathlib.Path or None
    fov_source : str
        Where the field of view came from: ``"mean anatomy"``, ``"region mask"`` (its ``outside_fov`` region) or
        ``"none"`` (every share is then over the whole image).
    """

    regions: np.ndarray
    region_names: dict | None
    landmarks: Landmarks | None
    tables: list = field(default_factory=list)
    cancelled: bool = False
    out_dir: Path | None = None
    fov_source: str = "none"

    def summary(self) -> dict:
        """The summary JSON's content."""
        lm = self.landmarks
        return {
            "disc": list(lm.disc) if lm else None,
            "fovea": list(lm.fovea) if lm else None,
            "landmarks": lm.source if lm else "region mask given",
            "landmark_problems": list(lm.problems) if lm else [],
            "field_of_view": self.fov_source,
            "baseline": (
                "enrichment = mass share / area share, both inside the field of view (1 = a map uniform over the "
                "imaged retina); the outside_fov row over the whole image and map"
                if self.fov_source != "none"
                else "enrichment = mass share / area share over the whole image (no field of view known)"
            ),
            "mass_in_field_of_view": {t.label: t.mass_in_fov for t in self.tables},
            "highest_enrichment": {t.label: t.best() for t in self.tables},
            "n_boot": self.tables[0].n_boot if self.tables else 0,
            "ci": self.tables[0].ci if self.tables else 0.95,
            "cancelled": self.cancelled,
            "status": "CANCELLED" if self.cancelled else "complete",
        }

    def write(self, folder: str | Path) -> dict[str, Path]:
        """Write the run into ``folder`` (created), every file atomically; ``{name: path}`` of the files written."""
        from ..figures import save_figure
        from ..io_utils import atomic_write_text, save_json
        from .regions import draw_region_table

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"mask": out / FILES.mask, "table": out / FILES.table, "summary": out / FILES.summary}
        write_region_mask(paths["mask"], self.regions, self.region_names, self.landmarks)
        atomic_write_text(paths["table"], region_table_csv(self.tables))
        for t in self.tables:
            paths[f"chart:{t.label}"] = save_figure(
                out / FILES.chart.format(label=t.label), draw_region_table, t, size=(7, 6)
            )
        save_json(paths["summary"], self.summary())
        return paths

    @classmethod
    def open(cls, folder: str | Path) -> RegionsResult:
        """The run a regions folder holds (tables as written: 6 significant digits).

        ``landmarks`` carries disc, fovea, source and problems; its field of view is the region image's
        ``outside_fov`` complement (the fitted ellipse is not kept: ``fov_radii`` NaN).

        Raises
        ------
        FileNotFoundError
            The folder lacks its summary, table or region image.
        """
        folder = Path(folder)
        summary = json.loads((folder / FILES.summary).read_text())
        regions, names = read_region_mask(folder / FILES.mask)
        landmarks = None
        if summary.get("disc") is not None:
            outside = [i for i, n in names.items() if n == "outside_fov"]
            fov = ~np.isin(regions, outside) if outside else np.ones(regions.shape, bool)
            landmarks = Landmarks(
                tuple(summary["disc"]),
                tuple(summary["fovea"]),
                float("nan"),
                fov,
                (float("nan"), float("nan")),
                np.eye(2),
                (float("nan"), float("nan")),
                summary.get("landmarks", "detected"),
                list(summary.get("landmark_problems", [])),
            )
        tables = read_region_tables(
            folder / FILES.table,
            summary.get("mass_in_field_of_view", {}),
            int(summary.get("n_boot", 0)),
            float(summary.get("ci", 0.95)),
        )
        return cls(
            regions,
            names,
            landmarks,
            tables,
            bool(summary.get("cancelled", False)),
            folder,
            summary.get("field_of_view", "none"),
        )


def region_table_csv(tables: list[RegionTable]) -> str:
    """Rows of several tables (one per label) as CSV text."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["label", "region", "kind", "baseline", *_CSV_NUMBERS, "n_images"])
    for t in tables:
        for name in t.names:
            r = t.row(name)
            writer.writerow(
                [t.label, name, r["kind"], r["baseline"], *(f"{r[k]:.6g}" for k in _CSV_NUMBERS), t.n_images]
            )
    return buf.getvalue()


def read_region_tables(path: Path, mass_in_fov: dict | None = None, n_boot: int = 0, ci: float = 0.95):
    """The tables of a CSV written by :func:`region_table_csv`, one per label, in file order (6 significant digits).

    ``mass_in_fov`` (label → share), ``n_boot`` and ``ci`` are not in the CSV; give them from the run's summary.
    """
    mass_in_fov = mass_in_fov or {}
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    tables = []
    for label, rs in by_label.items():

        def col(name, rs=rs):
            return np.array([float(r[name]) for r in rs])

        tables.append(
            RegionTable(
                [r["region"] for r in rs],
                [r["kind"] for r in rs],
                col("area_share"),
                col("mass_share"),
                col("enrichment"),
                np.stack([col("mass_lo"), col("mass_hi")], axis=1),
                np.stack([col("enrichment_lo"), col("enrichment_hi")], axis=1),
                int(rs[0]["n_images"]),
                n_boot,
                ci,
                label,
                [r.get("baseline") or IMAGE for r in rs],
                float("nan") if mass_in_fov.get(label) is None else float(mass_in_fov[label]),
            )
        )
    return tables
