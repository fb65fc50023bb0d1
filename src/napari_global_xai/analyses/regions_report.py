"""The regions section of a report: the landmarks (and whether they are plausible), the baseline of the shares,
each label's region table and bar chart, read through
:meth:`~napari_global_xai.analyses.regions_result.RegionsResult.open`. :mod:`napari_global_xai.report` gathers
:data:`RULES` when it renders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..report_parts import Figure, Section, SectionRule, Table, load_pixels, rel_path, titled
from .regions_result import FILES, RegionsResult

__all__ = ["RULES", "regions_section"]

#: Rows of a label's table shown (highest enrichment first; the CSV has them all).
SHOWN_ROWS = 14


def regions_section(path: Path, folder: Path, root: Path):
    """The section of the regions run whose summary is ``path``, and the folder's files it shows."""
    result = RegionsResult.open(folder)
    summary = result.summary()
    section = Section("Region table", rel_path(folder, root))
    lm = result.landmarks
    if lm is not None:
        section.facts += [
            ("optic disc (row, col)", f"({lm.disc[0]:.0f}, {lm.disc[1]:.0f})"),
            ("fovea (row, col)", f"({lm.fovea[0]:.0f}, {lm.fovea[1]:.0f})"),
            ("landmarks", lm.source),
            ("plausible", "yes" if not lm.problems else "NO: " + "; ".join(lm.problems)),
        ]
    else:
        section.facts.append(("regions", "a region image given by the user"))
    section.facts += [("field of view", result.fov_source), ("baseline", summary["baseline"])]
    used = {path, folder / FILES.table, folder / FILES.mask}
    for t in result.tables:
        outside = f"; {1 - t.mass_in_fov:.1%} of the map's mass outside it" if np.isfinite(t.mass_in_fov) else ""
        order = np.argsort(np.nan_to_num(-t.enrichment, nan=np.inf), kind="stable")
        rows = [
            [
                t.names[i],
                t.kinds[i],
                t.baseline[i] if t.baseline else "image",
                f"{t.area_share[i]:.3f}",
                f"{t.mass_share[i]:.3f}",
                f"{t.enrichment[i]:.2f} [{t.enrichment_ci[i, 0]:.2f}, {t.enrichment_ci[i, 1]:.2f}]",
            ]
            for i in order[:SHOWN_ROWS]
        ]
        note = f"First {SHOWN_ROWS} of {len(order)} rows ({FILES.table} has all)." if len(order) > SHOWN_ROWS else ""
        section.tables.append(
            Table(
                f"{t.label}: {t.n_images} images, {round(t.ci * 100)}% bootstrap intervals ({t.n_boot} resamples)"
                f"{outside}",
                ["region", "kind", "baseline", "area share", "mass share", "enrichment [interval]"],
                rows,
                note,
            )
        )
        chart = folder / FILES.chart.format(label=t.label)
        if chart.exists():
            section.figures.append(Figure(f"{t.label}: enrichment per region", load_pixels(chart)))
            used.add(chart)
    return section, used


#: The regions section (order 42), then region tables other tools wrote (``*region*.json`` / ``*region*.csv``)
#: shown generically under the same title.
RULES = [SectionRule(FILES.summary, regions_section, 42), *titled("*region*", "Region table", 42)]
