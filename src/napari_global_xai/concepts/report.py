"""The concepts section of a report: faithfulness, how many concepts lived, and per concept its strongest label,
most enriched region (inside the field of view) and the share of its map outside the field of view, with the
global concept maps drawn; read through :meth:`~napari_global_xai.concepts.result.ConceptResult.open`.
:mod:`napari_global_xai.report` gathers :data:`RULES` when it renders.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..report_parts import Figure, Section, SectionRule, Table, figure_pixels, fmt, rel_path, titled
from .result import BASELINE, FILES, ConceptResult

__all__ = ["RULES", "concepts_section"]


def concepts_section(path: Path, folder: Path, root: Path):
    """The section of the concepts run whose summary is ``path``, and the folder's files it shows."""
    result = ConceptResult.open(folder)
    section = Section("Concepts", rel_path(folder, root))
    units = result.units
    k = result.global_maps.shape[0]
    section.facts = [
        ("concepts", _count(units, k)),
        ("images", str(len(result.image_ids))),
        ("status", "CANCELLED" if result.cancelled else "complete"),
        ("regions", result.anatomy_note or "n/a"),
        ("baseline", BASELINE),
    ]
    faith = result.faithfulness()
    if faith:
        section.tables.append(
            Table(
                "Faithfulness: per-label AUROC of the model and of the concepts' rebuilt logits",
                ["label", "model", "concepts"],
                [[n, fmt(v["model"]), fmt(v["concepts"])] for n, v in faith.items()],
            )
        )
    tables = {t.label: t for t in result.region_tables}
    rows = []
    for j in range(k):
        lab = int(np.argmax(np.abs(result.weights[j]))) if result.weights.shape[1] else None
        table = tables.get(f"concept_{j}")
        best = table.row(table.best()) if table is not None else None
        outside = None if result.fov_mass is None else 1 - float(result.fov_mass[j])
        rows.append(
            [
                f"concept_{j}",
                "n/a" if lab is None else f"{result.labels[lab]} ({result.weights[j, lab]:+.2f})",
                "n/a" if best is None else f"{best['region']} ×{best['enrichment']:.1f}",
                "n/a" if outside is None or not np.isfinite(outside) else f"{outside:.1%}",
                ", ".join(result.image_ids[i] for i in result.top_images[j][:3]),
            ]
        )
    section.tables.append(
        Table(
            "Concepts: strongest label weight (mean logit contribution), most enriched region (within the field of "
            "view) and the share of the global map outside the field of view",
            ["concept", "label (weight)", "most enriched region", "outside field of view", "top images"],
            rows,
        )
    )
    if k:
        from matplotlib.figure import Figure as MplFigure

        cols = min(k, 4)
        fig = MplFigure(figsize=(3.2 * cols, 2.6 * ((k + cols - 1) // cols)), dpi=100)
        for j, gmap in enumerate(result.global_maps):
            ax = fig.add_subplot((k + cols - 1) // cols, cols, j + 1)
            ax.imshow(gmap, cmap="magma")
            ax.set_title(f"concept_{j}", fontsize=9)
            ax.set_axis_off()
        fig.tight_layout()
        section.figures.append(Figure("Global concept maps (each sums to 1)", figure_pixels(fig)))
    return section, {path} | {folder / name for name in asdict(FILES).values()}


def _count(units: dict, k: int) -> str:
    if not units:
        return str(k)
    return f"{k} ({units['requested']} asked; {units['dead']} died in training, {units['pruned']} of them dropped)"


#: The concepts section, after the analyses (order 43), then concept results other tools wrote
#: (``*concept*.json`` / ``*concept*.csv``) shown generically under the same title.
RULES = [SectionRule(FILES.summary, concepts_section, 43), *titled("*concept*", "Concepts", 43)]
