"""The explain section of a report: an explain run's facts and provenance, its maps per label and the global maps
figure, from the folder's files (named by :data:`napari_global_xai.explain.result.FILES`).
:mod:`napari_global_xai.report` gathers :data:`RULES` when it renders.
"""

from __future__ import annotations

from pathlib import Path

from ..report_parts import Figure, Section, SectionRule, Table, load_pixels, provenance_facts, read_json, rel_path
from .result import FILES

__all__ = ["RULES", "explain_section", "completeness_table"]


def explain_section(path: Path, folder: Path, root: Path):
    """The section of the explain run whose summary is ``path``, and the folder's files it shows."""
    summary = read_json(path)
    prov = summary.get("provenance", {})
    method = (prov.get("config") or {}).get("method", folder.name)
    section = Section(f"Global maps · {method}", rel_path(folder, root))
    section.facts = [
        ("subset", str(summary.get("subset"))),
        ("maps computed", str(summary.get("maps_computed"))),
        ("cancelled", str(summary.get("cancelled"))),
    ] + provenance_facts(prov)
    counts = summary.get("maps_per_label", {})
    section.tables.append(
        Table(
            "Image-wise maps per label-wise global map",
            ["label", "maps"],
            [[k, str(v)] for k, v in counts.items()],
            "The overall map averages the label-wise maps of: " + ", ".join(summary.get("overall_labels", [])),
        )
    )
    completeness = summary.get("completeness")
    if completeness:
        section.tables.append(completeness_table(completeness))
    claimed = {path}
    overlay = folder / FILES.overlay
    if overlay.exists():
        section.figures.append(
            Figure("Global maps over the mean anatomy (one colour scale for all maps)", load_pixels(overlay))
        )
        claimed.add(overlay)
    claimed |= {
        p for p in folder.glob("*") if p.name in (FILES.global_maps, FILES.std, FILES.image_maps, FILES.predictions)
    }
    predictions = folder / FILES.predictions
    if predictions.exists():
        with predictions.open(newline="") as fh:
            n = sum(1 for _ in fh) - 1
        section.text.append(f"Per-image predictions: {predictions.name} ({n} images).")
    if (folder / FILES.store).is_dir():
        section.text.append(f"Image-wise maps: {FILES.store} (resumable Zarr store; open it in napari).")
    return section, claimed


def completeness_table(completeness: dict) -> Table:
    """The summary's completeness errors per label (:func:`~.completeness.completeness_summary`) as a table."""

    def number(value) -> str:
        return "–" if value is None else f"{value:.3g}"

    threshold = completeness.get("threshold")
    rows = [
        [name, str(s["maps"]), number(s["median"]), number(s["p95"]), number(s["max"]), str(s["above_threshold"])]
        for name, s in completeness.get("per_label", {}).items()
    ]
    return Table(
        "Completeness error of the image-wise maps: |Σ attribution − (f(x) − f(b))| / |f(x) − f(b)|",
        ["label", "maps", "median", "95th percentile", "max", f"above {threshold:g}"],
        rows,
        "Per computed map, on the raw attribution; the score change from the baseline that the map does not account "
        f"for. Sundararajan et al. (2017) take more integration steps where it exceeds {threshold:g}.",
    )


#: The explain section, first in a report.
RULES = [SectionRule(FILES.summary, explain_section, 10)]
