"""The SAG section of a report: the run's facts, its most frequent root sets and the first graph figures of a SAG
folder, read through :mod:`napari_global_xai.sag.result`. :mod:`napari_global_xai.report` gathers :data:`RULES`.
"""

from __future__ import annotations

from pathlib import Path

from ..report_parts import Figure, Section, SectionRule, fmt, load_pixels, records_table, rel_path
from .result import SUMMARY_FILE, SagRunResult, figure_files, folder_files

__all__ = ["RULES", "sag_section"]

#: Graph figures shown; the rest are counted in a note.
MAX_FIGURES = 6


def sag_section(path: Path, folder: Path, root: Path):
    """The section of the SAG run whose summary is ``path``, and the folder's files it shows."""
    run = SagRunResult.open(folder)
    summary = run.summary
    section = Section(f"Structured attention graphs · {run.label}", rel_path(folder, root))
    section.facts = [
        ("label", run.label),
        ("images", fmt(run.image_ids)),
        ("grid", fmt(summary.get("grid"))),
        ("cancelled", str(summary.get("cancelled"))),
    ]
    section.tables.append(
        records_table(
            "Most frequent root sets (patch indices, row-major on the grid)",
            [
                {
                    "patches": " ".join(map(str, s.get("patches", []))),
                    "images": s.get("count"),
                    "frequency": s.get("frequency"),
                }
                for s in summary.get("root_sets", [])
            ],
        )
    )
    pngs = figure_files(folder, "png")
    for image_id, p in pngs[:MAX_FIGURES]:
        section.figures.append(Figure(f"SAG of {image_id}", load_pixels(p)))
    if len(pngs) > MAX_FIGURES:
        section.text.append(f"{len(pngs) - MAX_FIGURES} more graph figures in {rel_path(folder, root)}.")
    return section, {path} | folder_files(folder)


#: The SAG section, after PEPPR's (order 20).
RULES = [SectionRule(SUMMARY_FILE, sag_section, 30)]
