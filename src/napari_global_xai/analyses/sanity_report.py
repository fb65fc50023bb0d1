"""The sanity check's report section: a sanity folder read through
:meth:`~napari_global_xai.analyses.sanity_result.SanityResult.open` (the figure is drawn anew, so a report needs no
model), showing the image-wise and global verdicts with their intervals and references. Sanity results other tools
wrote (any other ``*sanity*`` JSON / CSV) are shown generically under the same title.
:mod:`napari_global_xai.report` gathers :data:`RULES` when it renders.
"""

from __future__ import annotations

from pathlib import Path

from ..report_parts import Figure, Section, SectionRule, Table, figure_pixels, rel_path, titled
from .sanity_result import FILES, VERDICT_COLUMNS, SanityResult

__all__ = ["RULES", "sanity_section"]

TITLE = "Sanity check (model randomisation)"


def sanity_section(path: Path, folder: Path, root: Path):
    """The section of the sanity run whose summary is ``path``, and the folder's files it shows."""
    from matplotlib.figure import Figure as MplFigure

    from .sanity_figure import draw_sanity

    result = SanityResult.open(folder)
    section = Section(TITLE, rel_path(folder, root))
    section.facts = [
        ("status", "CANCELLED" if result.cancelled else "done"),
        ("images", f"{len(result.image_ids)}: " + ", ".join(result.image_ids[:12])),
        ("layers (top down)", ", ".join(result.layers)),
        ("bootstrap", f"{result.n_boot} resamples of the images (seed {result.seed}), 95 % intervals"),
    ]
    header, rows = list(VERDICT_COLUMNS), result.verdict_rows()
    section.tables.append(
        Table(
            "Verdicts after every layer was randomised (cascading)",
            header,
            rows,
            "A method passes when the interval of its randomised |ρ| lies below the unrelated-pair interval "
            "(the |ρ| between the original maps of two different images). Model-free: |ρ| of the original maps "
            "with the edge magnitude of their inputs.",
        )
    )
    layer_rows = []
    for m in result.methods:
        alone = result.independent_intervals.get(m) or []
        for j, layer in enumerate(result.layers):
            steps = result.step_intervals.get(m) or []
            casc = str(steps[j + 1]) if j + 1 < len(steps) else "n/a"
            layer_rows.append([m, layer, casc, str(alone[j]) if j < len(alone) else "n/a"])
    section.tables.append(
        Table("Image-wise |ρ| per layer, top down", ["method", "layer", "cascading", "this layer alone"], layer_rows)
    )
    section.text = [line for text in result.verdicts.values() for line in text.splitlines()]
    fig = MplFigure(figsize=(13, 4.5), dpi=110)
    draw_sanity(fig, result)
    section.figures.append(
        Figure("Similarity of recomputed maps to the originals as layers are randomised", figure_pixels(fig))
    )
    claimed = {p for p in (folder / FILES.summary, folder / FILES.table, folder / FILES.figure) if p.exists()}
    return section, claimed | {path}


#: The sanity folder's section, then any other ``*sanity*.json`` / ``*sanity*.csv`` generically (order 40).
RULES = [SectionRule(FILES.summary, sanity_section, 40), *titled("*sanity*", TITLE, 40)]
