"""One self-contained HTML report (plus a PDF of its figures) of a results folder.

``write_report(results_dir, "report.html")`` walks the folder (a ``global-xai demo`` output with ``explain_<method>/``
and ``peppr_<method>/`` sub-folders, or a single explain / PEPPR / SAG folder), turns every result file it knows into
a section through a small registry of ``(glob pattern → renderer)`` rules, renders the sections with the jinja2
template shipped in ``templates/report.html.j2`` and writes

* ``report.html``: every image embedded as a ``data:`` URI (PNG, or JPEG when that is much smaller), no script, no
  external request, so the one file can be mailed or attached to a supplement;
* ``report.pdf`` beside it (``pdf=True``): the same figures and tables, one page each, through matplotlib's
  ``PdfPages``.

Each job renders its own sections: its ``report`` module (listed in :data:`JOB_REPORTS`, imported when a report is
built) holds ``RULES``, its :class:`SectionRule` list, made of the parts in :mod:`.report_parts`. Files no rule
claims are still shown: JSON and CSV as generic tables, PNG/JPEG as figures; another tool's results get a rule with
:func:`register_section`. This module gathers the rules, walks the folder and writes the HTML and PDF. Qt-free.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import importlib
import platform
import shlex
import sys
from pathlib import Path

from .report_parts import SECTION_RULES, Section, SectionRule, encode_image, rel_path

__all__ = ["write_report", "build_sections", "section_rules", "JOB_REPORTS"]

#: The jobs' report modules, each with ``RULES``; imported when a report is built (they import their jobs).
JOB_REPORTS = (
    "explain.report",
    "peppr.report",
    "sag.report",
    "analyses.sanity_report",
    "analyses.compare_report",
    "analyses.regions_report",
    "concepts.report",
    "cohort.report",
)


def section_rules() -> list[SectionRule]:
    """Every rule in the order they are tried: the jobs' (:data:`JOB_REPORTS`), then
    :data:`~napari_global_xai.report_parts.SECTION_RULES` (the generic fallbacks and those registered), by ``order``
    (ties in that sequence)."""
    rules = [rule for name in JOB_REPORTS for rule in importlib.import_module(f"{__package__}.{name}").RULES]
    return sorted(rules + SECTION_RULES, key=lambda r: r.order)


# ------------------------------------------------------------------------------------------------------- assembly


def _run_folders(root: Path) -> list[Path]:
    """The folder itself and its sub-folders (two levels), in name order, that hold files; Zarr stores (``*.zarr``,
    e.g. explain's ``image_maps.zarr``) are data, not result folders, and are left out with all they hold."""
    folders = (
        [root] + sorted(p for p in root.glob("*") if p.is_dir()) + sorted(p for p in root.glob("*/*") if p.is_dir())
    )
    folders = [f for f in folders if not any(part.endswith(".zarr") for part in f.relative_to(root).parts)]
    return [f for f in folders if any(p.is_file() for p in f.iterdir())]


def build_sections(results_dir: str | Path, skip: set | None = None) -> list[Section]:
    """Sections of every result file under ``results_dir`` (the rules of :func:`section_rules`).

    Raises
    ------
    FileNotFoundError
        ``results_dir`` is not a folder.
    ValueError
        It holds no result file any rule knows.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a results folder")
    claimed = {Path(p).resolve() for p in (skip or set())}
    sections: list[Section] = []
    rules = section_rules()
    for folder in _run_folders(root):
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        for rule in rules:
            for path in files:
                if path.resolve() in claimed or not fnmatch.fnmatch(path.name, rule.pattern):
                    continue
                try:
                    section, used = rule.renderer(path, folder, root)
                except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged file: say so, keep going
                    section, used = Section(path.name, rel_path(path, root), text=[f"could not read: {exc}"]), {path}
                claimed |= {Path(p).resolve() for p in used} | {path.resolve()}
                if section is not None:
                    sections.append(section)
    if not sections:
        raise ValueError(
            f"{root}: no result files found (expected explain_summary.json, peppr_summary.json, "
            "sag_summary.json, or other JSON/CSV/PNG results)"
        )
    for i, s in enumerate(sections):
        s.anchor = f"s{i + 1}"
    return sections


def _report_provenance(results_dir: Path) -> list[tuple[str, str]]:
    from .provenance import package_version

    versions = [("napari-global-xai", package_version()), ("python", platform.python_version())]
    for name in ("numpy", "torch", "captum", "matplotlib", "jinja2"):
        try:
            from importlib.metadata import version

            versions.append((name, version(name)))
        except Exception:  # noqa: BLE001 - a missing optional package is simply not listed
            pass
    return [
        ("results folder", str(results_dir.resolve())),
        ("report command", shlex.join([Path(sys.argv[0]).name] + sys.argv[1:])),
        ("report created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")),
        ("platform", platform.platform()),
    ] + versions


def _write_pdf(path: Path, title: str, sections: list[Section]) -> Path:
    """One page per figure and per table, through matplotlib's PdfPages (no pyplot state)."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure as MplFigure

    from .io_utils import atomic_path

    with atomic_path(path) as tmp, PdfPages(tmp, metadata={"Title": title, "Creator": "napari-global-xai"}) as pdf:
        for section in sections:
            for figure in section.figures:
                h, w = figure.pixels.shape[:2]
                fig = MplFigure(figsize=(8.27, min(11.0, 8.27 * h / w + 0.8)))
                ax = fig.add_axes((0.02, 0.02, 0.96, 0.9))
                ax.imshow(figure.pixels)
                ax.set_axis_off()
                fig.suptitle(f"{section.title}: {figure.caption}", fontsize=8, wrap=True)
                pdf.savefig(fig)
            for table in section.tables:
                if not table.rows:
                    continue
                fig = MplFigure(figsize=(8.27, min(11.0, 1.2 + 0.25 * len(table.rows))))
                ax = fig.add_axes((0.02, 0.02, 0.96, 0.85))
                ax.set_axis_off()
                cells = ax.table(
                    cellText=[[c[:40] for c in r] for r in table.rows],
                    colLabels=[str(h)[:24] for h in table.header],
                    loc="upper center",
                )
                cells.auto_set_font_size(False)
                cells.set_fontsize(6)
                fig.suptitle(f"{section.title}: {table.caption}", fontsize=8, wrap=True)
                pdf.savefig(fig)
    return path


def write_report(
    results_dir: str | Path, out: str | Path, *, pdf: bool = True, title: str | None = None
) -> dict[str, Path]:
    """Write a self-contained HTML report (and a PDF of its figures) of a results folder.

    Parameters
    ----------
    results_dir : path
        A ``global-xai demo`` output folder or a single explain / PEPPR / SAG folder (or any folder of results).
    out : path
        The HTML file (written atomically; its folder is created). Must not lie inside ``results_dir``'s files
        that are read (a previous report there is skipped).
    pdf : bool
        Also write ``<out stem>.pdf`` beside it.
    title : str, optional

    Returns
    -------
    dict
        ``{"html": path, "pdf": path}`` (``pdf`` only when written).

    Raises
    ------
    FileNotFoundError, ValueError
        No such folder, or nothing to report in it.
    """
    import jinja2

    from .io_utils import atomic_write_text

    root, out = Path(results_dir), Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"{out}: the report is an HTML file (name it *.html)")
    pdf_path = out.with_suffix(".pdf")
    sections = build_sections(root, skip={out, pdf_path})
    for section in sections:
        for figure in section.figures:
            figure.uri = encode_image(figure.pixels)
    title = title or f"Global XAI report: {root.resolve().name}"
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("napari_global_xai", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    text = env.get_template("report.html.j2").render(
        title=title, sections=sections, provenance=_report_provenance(root)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    paths = {"html": out}
    if pdf:
        paths["pdf"] = _write_pdf(pdf_path, title, sections)
    return paths
