"""The group comparison's report section, read through
:meth:`~napari_global_xai.analyses.compare_result.CompareResult.open`: what was compared and what a lower pixel
means under it, the permutations and the p-floor with what it implies for the FDR map, the counts, the total-evidence
test, where the significant pixels lie, and the figure drawn anew from the folder.

Group results other tools wrote (``*group*``, ``*compar*`` JSON / CSV) are shown generically under the same title.
:mod:`napari_global_xai.report` gathers :data:`RULES` when it renders.
"""

from __future__ import annotations

from pathlib import Path

from ..report_parts import Figure, Section, SectionRule, Table, figure_pixels, fmt, rel_path, titled
from .compare_normalise import smoothing_text
from .compare_result import FILES, CompareResult, draw_compare

__all__ = ["RULES", "compare_section", "floor_text", "total_text"]

_TITLE = "Group differences"


def floor_text(s: dict) -> str:
    """The p-floor and what it implies for the FDR map, in one sentence (from a compare summary)."""
    how = (
        f"exact: all {s['n_permutations']} splits enumerated"
        if s.get("exact")
        else f"{s['n_permutations']} permutations"
        + (
            f", refined to {s['max_permutations']} on {s['n_refined']} pixels where the floor bound"
            if s.get("max_permutations", 0) > s["n_permutations"]
            else ""
        )
    )
    return (
        f"{s['p_floor']:.1e} ({how}): at FDR {s['alpha']:g} over {s['n_pixels_tested']} tested pixels, BH declares "
        f"nothing unless at least {s['fdr_min_pixels']} pixels reach the floor, so an effect on fewer pixels is "
        "invisible to the FDR map however strong (the family-wise map is not limited this way)"
    )


def total_text(s: dict) -> str:
    """The total-evidence test in one phrase."""
    t = s.get("total_evidence") or {}
    if "ratio" not in t:
        return str(t.get("note", "n/a"))
    return f"mean total A / B = {fmt(t['ratio'])} (A {fmt(t['mean_a'])}, B {fmt(t['mean_b'])}; p = {fmt(t['p'])})"


def compare_section(path: Path, folder: Path, root: Path):
    """The section of the compare run whose summary is ``path``, and the folder's files it shows."""
    from matplotlib.figure import Figure as MplFigure

    result = CompareResult.open(folder)
    s = result.summary()
    a, b = s["groups"]
    section = Section(_TITLE, rel_path(folder, root))
    section.facts = [
        ("groups", f"A = {a} (n={s['n_images'][0]}) vs B = {b} (n={s['n_images'][1]}); {s['split']}"),
        ("compared", f"{s.get('normalisation', 'n/a')}, {smoothing_text(s.get('smooth_sigma') or 0.0)}"),
        ("a lower pixel", str(s.get("meaning", "n/a"))),
        ("p-floor", floor_text(s)),
        (
            "significant pixels",
            f"FDR {s['alpha']:g}: {s['n_significant_fdr']} ({s['n_significant_fdr_a_gt_b']} A higher, "
            f"{s['n_significant_fdr_b_gt_a']} B higher); family-wise: {s['n_significant_fwe']} "
            f"({s['n_significant_fwe_a_gt_b']} A higher, {s['n_significant_fwe_b_gt_a']} B higher)",
        ),
        ("total evidence", total_text(s)),
    ]
    if result.cancelled:
        section.text.append("CANCELLED: the test uses the permutations finished before the cancel.")
    if result.by_region:
        keys = ("region", "n_significant", "share_of_significant", "n_a_gt_b", "n_b_gt_a", "share_of_region")
        rows = [[fmt(r[k]) for k in keys] for r in result.by_region if r["n_significant"]]
        section.tables.append(Table("Where the FDR-significant pixels lie", list(keys), rows))
    fig = MplFigure(figsize=(11, 4.5), dpi=110)
    draw_compare(fig, result)
    section.figures.append(
        Figure(
            f"mean({a}) − mean({b}) of the compared maps ({s.get('normalisation', 'n/a')}) and −log10 p with the "
            "FDR-significant pixels outlined",
            figure_pixels(fig),
        )
    )
    return section, {
        folder / getattr(FILES, f) for f in FILES.__dataclass_fields__ if (folder / getattr(FILES, f)).is_file()
    }


#: The compare folder's section (order 41), then other tools' ``*group*`` / ``*compar*`` JSON / CSV generically.
RULES = [
    SectionRule(FILES.summary, compare_section, 41),
    *titled("*group*", _TITLE, 41),
    *titled("*compar*", _TITLE, 41),
]
