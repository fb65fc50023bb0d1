"""The cohort section of a report: the filter, the cohort's size and outcomes, the reference it is judged against,
and the figure, from the folder's files (named by :data:`napari_global_xai.cohort.result.FILES`).
:mod:`napari_global_xai.report` gathers :data:`RULES` when it renders.
"""

from __future__ import annotations

from pathlib import Path

from ..report_parts import Figure, Section, SectionRule, Table, fmt, load_pixels, read_json, rel_path
from .result import FILES

__all__ = ["RULES", "cohort_section"]


def cohort_section(path: Path, folder: Path, root: Path):
    """The section of the cohort whose summary is ``path``, and the folder's files it shows."""
    summary = read_json(path)
    where = summary.get("where") or "every image"
    section = Section(f"Cohort · {where}", rel_path(folder, root))
    section.facts = [
        ("filter", where),
        ("label", str(summary.get("label") or "every label (and overall)")),
        ("threshold", fmt(summary.get("threshold"))),
        ("cohort size", f"{summary.get('n_selected')} of {summary.get('n_images')} images"),
        ("judged against", f"{summary.get('reference')}: {summary.get('reference_is')}"),
        ("method", str(summary.get("method"))),
        ("frame", str(summary.get("frame"))),
        ("explain results", str(summary.get("explain_results"))),
    ]
    counts, ref = summary.get("cohort_maps_per_label", {}), summary.get("reference_maps_per_label", {})
    diff = summary.get("difference", {})
    section.tables.append(
        Table(
            "Maps per label and the largest differences (cohort − reference, pixel row/col)",
            ["plane", "cohort maps", "reference maps", "mean |difference|", "most more at", "most less at"],
            [
                [
                    name,
                    str(counts.get(name, "")),
                    str(ref.get(name, "")),
                    fmt((diff.get(name) or {}).get("mean_abs")),
                    _at((diff.get(name) or {}).get("peak_more")),
                    _at((diff.get(name) or {}).get("peak_less")),
                ]
                for name in summary.get("planes", [])
            ],
        )
    )
    if "outcomes_in_cohort" in summary:
        section.tables.append(
            Table(
                f"Outcomes of {summary.get('label')} at threshold {fmt(summary.get('threshold'))}",
                ["", *summary["outcomes_in_cohort"]],
                [
                    ["cohort", *map(str, summary["outcomes_in_cohort"].values())],
                    ["study", *map(str, summary["outcomes_in_study"].values())],
                ],
            )
        )
    claimed = {path}
    figure = folder / FILES.figure
    if figure.exists():
        section.figures.append(
            Figure("The cohort's global maps, the reference's and their difference", load_pixels(figure))
        )
        claimed.add(figure)
    for name in (FILES.maps, FILES.table):
        if (folder / name).exists():
            claimed.add(folder / name)
    if (folder / FILES.table).exists():
        section.text.append(f"Study table with the cohort marked (in_cohort): {FILES.table}.")
    return section, claimed


def _at(peak) -> str:
    return "n/a" if not peak else f"({peak['row']}, {peak['col']}) {fmt(peak['value'])}"


#: The cohort section, after the analyses' sections.
RULES = [SectionRule(FILES.summary, cohort_section, 45)]
