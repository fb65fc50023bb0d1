"""The cohort job's result and its results folder: the one place that names the folder's files, writes them and
reads them back. Torch-free.

A cohort results folder (``global-xai cohort RESULTS --out FOLDER``, ``run_cohort(out_dir=FOLDER)``) holds
(names: :data:`FILES`)::

    cohort_maps.tif        float32 (3, P, H, W): the cohort's global maps, the reference's and their difference
                           (cohort − reference), P planes = the label(s) (then ``overall`` when every label was
                           reduced); plane names, kinds and counts in the description (JSON)
    cohort_maps.png        the three maps of each plane side by side (cohort and reference on one colour scale)
    cohort_table.csv       the study table (image, metadata, truth / probability / prediction / outcome per label)
                           with ``in_cohort`` (1 / 0)
    cohort_summary.json    the filter, label, threshold, cohort size, maps per plane, the reference it is judged
                           against, the explain run it was read from, and provenance

:meth:`CohortResult.write` writes it, :func:`open_cohort` reads it back (without the study table's types: the CSV's
cells come back as text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..analysis_config import CohortConfig

__all__ = ["FILES", "CohortFiles", "CohortResult", "open_cohort", "KINDS"]

#: The three maps of each plane, in the order of the TIFF's first axis.
KINDS = ("cohort", "reference", "difference")


@dataclass(frozen=True)
class CohortFiles:
    """Names of the files of a cohort results folder (see the module notes)."""

    maps: str = "cohort_maps.tif"
    figure: str = "cohort_maps.png"
    table: str = "cohort_table.csv"
    summary: str = "cohort_summary.json"


#: The names of a cohort results folder's files.
FILES = CohortFiles()


@dataclass
class CohortResult:
    """A cohort's global maps beside a reference.

    Attributes
    ----------
    planes : list of str
        The label(s), then ``overall`` when every label was reduced.
    cohort, reference, difference : numpy.ndarray, (P, H, W) float64
        The cohort's global maps (NaN for a plane without maps), the reference's, and cohort − reference.
    cohort_count, reference_count : list of int
        Maps averaged per label.
    config : CohortConfig
    table : StudyTable or None
        The study table (None when read back by :func:`open_cohort`).
    selected : numpy.ndarray, (n,) bool
        The cohort's rows.
    method, frame, normalisation : str
        Of the explain run (the maps' frame: ``left`` or ``stored``).
    results : str
        The explain results folder read.
    reference_text : str
        What the reference is, in words.
    provenance : dict
    """

    planes: list
    cohort: np.ndarray
    reference: np.ndarray
    difference: np.ndarray
    cohort_count: list
    reference_count: list
    config: CohortConfig
    table: object
    selected: np.ndarray
    method: str = ""
    frame: str = "left"
    normalisation: str = ""
    results: str = ""
    reference_text: str = ""
    provenance: dict = field(default_factory=dict)
    cancelled: bool = False

    @property
    def n_selected(self) -> int:
        return int(np.count_nonzero(self.selected))

    def summary(self) -> dict:
        """The JSON summary (module notes)."""
        labels = self.planes[: len(self.cohort_count)]
        summary = {
            "status": "complete",
            "where": self.config.where,
            "label": self.config.label,
            "threshold": self.config.threshold,
            "n_images": int(len(self.selected)),
            "n_selected": self.n_selected,
            "cohort_maps_per_label": dict(zip(labels, self.cohort_count)),
            "reference": self.config.reference,
            "reference_is": self.reference_text,
            "reference_maps_per_label": dict(zip(labels, self.reference_count)),
            "planes": list(self.planes),
            "difference": {
                name: _difference_facts(self.cohort[p], self.reference[p]) for p, name in enumerate(self.planes)
            },
            "method": self.method,
            "frame": self.frame,
            "normalisation": self.normalisation,
            "explain_results": self.results,
            "provenance": self.provenance,
        }
        table = self.table
        if table is not None and self.config.label is not None and table.has_truth(self.config.label):
            summary["outcomes_in_cohort"] = table.outcome_counts(self.config.label, self.selected)
            summary["outcomes_in_study"] = table.outcome_counts(self.config.label)
        return summary

    def write(self, folder, *, anatomy: np.ndarray | None = None) -> dict[str, Path]:
        """The maps TIFF, the figure, the table CSV (when the table is known) and the summary into ``folder``."""
        import tifffile

        from ..figures import save_figure
        from ..io_utils import atomic_path, atomic_write_text, save_json
        from .drawing import draw_cohort

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"maps": out / FILES.maps, "figure": out / FILES.figure, "summary": out / FILES.summary}
        description = {
            "kinds": list(KINDS),
            "planes": list(self.planes),
            "cohort_count": self.cohort_count,
            "reference_count": self.reference_count,
            "reference": self.config.reference,
            "frame": self.frame,
        }
        stack = np.stack([self.cohort, self.reference, self.difference]).astype(np.float32)
        with atomic_path(paths["maps"]) as tmp:
            tifffile.imwrite(tmp, stack, description=json.dumps(description), compression="zlib")
        rows = max(1, len(self.planes))
        save_figure(paths["figure"], draw_cohort, self, anatomy, size=(12, 2.9 * rows + 0.8))
        if self.table is not None:
            paths["table"] = out / FILES.table
            atomic_write_text(paths["table"], self.table.to_csv(self.selected))
        save_json(paths["summary"], self.summary())
        return paths


def _difference_facts(cohort: np.ndarray, reference: np.ndarray) -> dict:
    """Where the cohort's map differs most from the reference's: the peak pixels and the mean absolute difference."""
    diff = cohort - reference
    if not np.isfinite(diff).any():
        return {"mean_abs": None, "peak_more": None, "peak_less": None}
    filled = np.where(np.isfinite(diff), diff, 0.0)
    more = np.unravel_index(int(np.argmax(filled)), diff.shape)
    less = np.unravel_index(int(np.argmin(filled)), diff.shape)
    return {
        "mean_abs": float(np.nanmean(np.abs(diff))),
        "peak_more": {"row": int(more[0]), "col": int(more[1]), "value": float(filled[more])},
        "peak_less": {"row": int(less[0]), "col": int(less[1]), "value": float(filled[less])},
    }


def open_cohort(folder) -> CohortResult:
    """Read a cohort results folder back (the table's cells as text are left in the CSV; ``table`` is None).

    Raises
    ------
    InputError
        A file is missing or unreadable (one line naming it).
    """
    import tifffile

    from ..errors import InputError

    out = Path(folder)
    for name in (FILES.summary, FILES.maps):
        if not (out / name).is_file():
            raise InputError(f"{out} is not a cohort results folder: {name} is missing (run 'global-xai cohort' first)")
    try:
        summary = json.loads((out / FILES.summary).read_text())
        with tifffile.TiffFile(out / FILES.maps) as tif:
            maps = tif.asarray().astype(np.float64)
    except (OSError, ValueError) as exc:
        raise InputError(f"{out}: cannot read the cohort files ({exc})") from None
    selected = np.zeros(int(summary["n_images"]), bool)
    if (out / FILES.table).is_file():
        import csv

        with (out / FILES.table).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        selected = np.array([r.get("in_cohort") == "1" for r in rows], bool)
    labels = list(summary["cohort_maps_per_label"])
    config = CohortConfig(
        where=summary["where"], label=summary["label"], threshold=summary["threshold"], reference=summary["reference"]
    )
    return CohortResult(
        planes=list(summary["planes"]),
        cohort=maps[0],
        reference=maps[1],
        difference=maps[2],
        cohort_count=[summary["cohort_maps_per_label"][k] for k in labels],
        reference_count=[summary["reference_maps_per_label"][k] for k in labels],
        config=config,
        table=None,
        selected=selected,
        method=summary.get("method", ""),
        frame=summary.get("frame", "left"),
        normalisation=summary.get("normalisation", ""),
        results=summary.get("explain_results", ""),
        reference_text=summary.get("reference_is", ""),
        provenance=summary.get("provenance", {}),
    )
