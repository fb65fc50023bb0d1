"""The PEPPR section of a report: facts, the summary table and the PEPPR figure of a PEPPR folder, read through
:meth:`~napari_global_xai.peppr.result.PepprResult.open` (the figure is drawn anew from the curves, so a report needs
no model). :mod:`napari_global_xai.report` gathers :data:`RULES` when it renders.
"""

from __future__ import annotations

from pathlib import Path

from ..report_parts import Figure, Section, SectionRule, Table, figure_pixels, fmt, rel_path
from .result import SUMMARY_FILE, PepprResult, folder_files

__all__ = ["RULES", "peppr_section"]


def peppr_section(path: Path, folder: Path, root: Path):
    """The section of the PEPPR run whose summary is ``path``, and the folder's files it shows."""
    from matplotlib.figure import Figure as MplFigure

    from .drawing import draw_peppr_figure, table_cells
    from .view import filmstrip_from_folder, view_from_result

    result = PepprResult.open(folder)
    view = view_from_result(result)
    strip = filmstrip_from_folder(folder)
    section = Section("PEPPR faithfulness", rel_path(folder, root))
    section.facts = [
        ("metric", str(result.metric)),
        ("fill", str(result.fill)),
        ("images", str(result.n_images)),
        ("fractions", fmt([float(p) for p in result.fractions])),
        ("random seeds", fmt([c.seed for c in result.random])),
        ("forwards", f"{result.n_forwards} ({result.n_skipped} skipped)"),
        ("split", str(result.split_note.get("note", ""))),
    ]
    header, rows = table_cells(view)
    section.tables.append(
        Table("Summary (areas are normalised trapezoid areas; gap = A_restore − A_erase)", header, rows)
    )
    # the figure shows the headline map (overall map on the macro mean, else the first row); the table above has all
    headline = [r for r in view.rows if r["map"] == "overall" and r["label"] == "macro"] or view.rows[:1]
    view.rows = headline
    fig = MplFigure(figsize=(10, 8.5 if strip is not None else 4.2), dpi=110)
    draw_peppr_figure(
        fig,
        view,
        strip,
        fraction=None if strip is None else float(strip.fractions[0]),
        title=f"PEPPR ({view.fill} fill, {view.n_images} images)",
    )
    section.figures.append(
        Figure(
            f"PEPPR curves of map {headline[0]['map']} on {headline[0]['label']} (random order: "
            "grey, mean ± sd), and the first image erased / restored in the map's order at the "
            "saved fractions",
            figure_pixels(fig),
        )
    )
    return section, {path} | folder_files(folder)


#: The PEPPR section, after explain's (order 10).
RULES = [SectionRule(SUMMARY_FILE, peppr_section, 20)]
