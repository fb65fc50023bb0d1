"""What a report shows: its parts (:class:`Section` with :class:`Table` / :class:`Figure`), the renderers that turn
one result file into a section, and the registry of ``(glob pattern → renderer)`` rules (:data:`SECTION_RULES`,
extended by :func:`register_section`). :mod:`.report` walks a results folder with these rules and writes the HTML /
PDF (and re-exports every name here). Qt-free.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "register_section",
    "SectionRule",
    "Section",
    "Table",
    "Figure",
    "SECTION_RULES",
    "MAX_IMAGE_SIDE",
    "encode_image",
    "figure_pixels",
    "generic_json_section",
    "generic_csv_section",
]

#: Longest side of an embedded image in pixels (figures are downscaled to it).
MAX_IMAGE_SIDE = 1400
#: Rows of a generic table shown (the rest is counted in a note).
MAX_TABLE_ROWS = 25
_JPEG_QUALITY = 85


@dataclass
class Table:
    """A table of a section: ``header`` and string ``rows``; ``note`` says what was left out."""

    caption: str
    header: list
    rows: list
    note: str = ""


@dataclass
class Figure:
    """A figure of a section: an RGB(A) array (embedded, and a PDF page) with a caption."""

    caption: str
    pixels: np.ndarray
    uri: str = ""


@dataclass
class Section:
    """One block of the report.

    Attributes
    ----------
    title : str
    source : str
        The files it was made from (relative to the results folder).
    facts : list of (str, str)
        Key facts shown as a definition list.
    tables : list of Table
    figures : list of Figure
    text : list of str
        Paragraphs (plain text, escaped by the template).
    """

    title: str
    source: str = ""
    facts: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    text: list = field(default_factory=list)
    anchor: str = ""


#: ``renderer(path, folder, root) -> (Section or None, claimed paths)``.
Renderer = Callable[[Path, Path, Path], "tuple[Section | None, set]"]


@dataclass
class SectionRule:
    """A registry entry: files matching ``pattern`` (a glob on the file name) are rendered by ``renderer``."""

    pattern: str
    renderer: Renderer
    order: int = 50


# ------------------------------------------------------------------------------------------------- small helpers


def _read_json(path: Path):
    return json.loads(Path(path).read_text())


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        text = ", ".join(_fmt(v) for v in value[:12])
        return text + (f", … ({len(value)} in all)" if len(value) > 12 else "")
    if isinstance(value, dict):
        return json.dumps(value, default=str)[:300]
    return str(value)


def _flatten(data, prefix: str = "") -> list[tuple[str, str]]:
    """Nested JSON → ``(dotted key, value)`` rows (lists of scalars kept as one value)."""
    if isinstance(data, dict):
        out = []
        for k, v in data.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, _fmt(data))]


def _records_table(caption: str, records: list, note: str = "") -> Table:
    """A list of dicts (one row each) → Table with the union of their keys as header."""
    header: list = []
    for r in records:
        header += [k for k in r if k not in header]
    rows = [[_fmt(r.get(k)) for k in header] for r in records[:MAX_TABLE_ROWS]]
    if len(records) > MAX_TABLE_ROWS:
        note = (note + " " if note else "") + f"First {MAX_TABLE_ROWS} of {len(records)} rows."
    return Table(caption, header, rows, note)


def _load_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB"))


def encode_image(pixels: np.ndarray, max_side: int = MAX_IMAGE_SIDE) -> str:
    """An image as a ``data:`` URI: downscaled to ``max_side``, PNG unless JPEG is under half its size.

    Notes
    -----
    Plots with flat colours compress well as PNG and stay sharp; photographic content (fundus images, overlays)
    is several times smaller as JPEG (quality 85), which keeps the 64-image demo's report to a few MB.
    """
    from PIL import Image

    im = Image.fromarray(np.asarray(pixels))
    scale = max_side / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    png = io.BytesIO()
    im.save(png, format="PNG", optimize=True)
    jpeg = io.BytesIO()
    im.convert("RGB").save(jpeg, format="JPEG", quality=_JPEG_QUALITY, optimize=True)
    if im.mode != "RGBA" and jpeg.tell() < 0.5 * png.tell():
        return "data:image/jpeg;base64," + base64.b64encode(jpeg.getvalue()).decode("ascii")
    return "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")


def figure_pixels(fig) -> np.ndarray:
    """Render a matplotlib figure (any canvas) to an RGBA array through an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


# ------------------------------------------------------------------------------------------------------ renderers


def _provenance_facts(prov: dict) -> list[tuple[str, str]]:
    """The provenance facts a reader needs: command, versions, model card and weights hash, device, inputs."""
    facts = []
    for key, label in (
        ("command", "command"),
        ("created", "created"),
        ("version", "napari-global-xai"),
        ("python", "python"),
        ("torch", "torch"),
        ("platform", "platform"),
    ):
        if prov.get(key):
            facts.append((label, str(prov[key])))
    model = prov.get("model") or {}
    if model:
        facts += [
            ("model", str(model.get("name", ""))),
            ("model card", str(model.get("card", ""))),
            ("model weights sha256 (fast)", str(model.get("weights_sha256_fast", ""))),
            ("device", str(model.get("device", ""))),
        ]
        card = model.get("card")
        if card and Path(card).exists():
            from .provenance import file_fingerprint

            facts.append(("model card sha256 (fast, at report time)", file_fingerprint(card)))
    for item in (prov.get("inputs") or [])[:20]:
        facts.append(("input", f"{item.get('path', '')}  sha256 (fast) {item.get('sha256_fast', '')}"))
    config = prov.get("config")
    if isinstance(config, dict):
        facts.append(("settings", ", ".join(f"{k}={_fmt(v)}" for k, v in config.items() if v not in (None, {}))))
    return facts


def _explain_section(path: Path, folder: Path, root: Path):
    summary = _read_json(path)
    prov = summary.get("provenance", {})
    method = (prov.get("config") or {}).get("method", folder.name)
    section = Section(f"Global maps · {method}", _rel(folder, root))
    section.facts = [
        ("subset", str(summary.get("subset"))),
        ("maps computed", str(summary.get("maps_computed"))),
        ("cancelled", str(summary.get("cancelled"))),
    ] + _provenance_facts(prov)
    counts = summary.get("maps_per_label", {})
    section.tables.append(
        Table(
            "Image-wise maps per label-wise global map",
            ["label", "maps"],
            [[k, str(v)] for k, v in counts.items()],
            "The overall map averages the label-wise maps of: " + ", ".join(summary.get("overall_labels", [])),
        )
    )
    claimed = {path}
    overlay = folder / "global_maps.png"
    if overlay.exists():
        section.figures.append(
            Figure("Global maps over the mean anatomy (one colour scale for all maps)", _load_pixels(overlay))
        )
        claimed.add(overlay)
    claimed |= {
        p
        for p in folder.glob("*")
        if p.name in ("global_maps.tif", "global_std.tif", "image_maps.tif", "predictions.csv")
    }
    predictions = folder / "predictions.csv"
    if predictions.exists():
        with predictions.open(newline="") as fh:
            n = sum(1 for _ in fh) - 1
        section.text.append(f"Per-image predictions: {predictions.name} ({n} images).")
    if (folder / "image_maps.zarr").is_dir():
        section.text.append("Image-wise maps: image_maps.zarr (resumable Zarr store; open it in napari).")
    return section, claimed


def _peppr_section(path: Path, folder: Path, root: Path):
    from matplotlib.figure import Figure as MplFigure

    from .peppr.drawing import draw_peppr_figure, table_cells
    from .peppr.view import filmstrip_from_folder, view_from_folder

    summary = _read_json(path)
    view = view_from_folder(folder)
    strip = filmstrip_from_folder(folder)
    section = Section("PEPPR faithfulness", _rel(folder, root))
    split = summary.get("split") or {}
    section.facts = [
        ("metric", str(summary.get("metric"))),
        ("fill", str(summary.get("fill"))),
        ("images", str(summary.get("n_images"))),
        ("fractions", _fmt(summary.get("fractions"))),
        ("random seeds", _fmt(summary.get("random_seeds"))),
        ("forwards", f"{summary.get('n_forwards')} ({summary.get('n_skipped')} skipped)"),
        ("split", str(split.get("note", ""))),
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
    claimed = {path, folder / "peppr_curves.csv", folder / "peppr.png"}
    claimed |= set(folder.glob("erased_*.tif")) | set(folder.glob("restored_*.tif"))
    return section, claimed


def _sag_section(path: Path, folder: Path, root: Path):
    summary = _read_json(path)
    section = Section(f"Structured attention graphs · {summary.get('label', '')}", _rel(folder, root))
    section.facts = [
        ("label", str(summary.get("label"))),
        ("images", _fmt(summary.get("images"))),
        ("grid", _fmt(summary.get("grid"))),
        ("cancelled", str(summary.get("cancelled"))),
    ]
    sets = summary.get("root_sets", [])
    section.tables.append(
        _records_table(
            "Most frequent root sets (patch indices, row-major on the grid)",
            [
                {
                    "patches": " ".join(map(str, s.get("patches", []))),
                    "images": s.get("count"),
                    "frequency": s.get("frequency"),
                }
                for s in sets
            ],
        )
    )
    claimed = {path} | set(folder.glob("sag_*.json")) | set(folder.glob("sag_*.svg")) | set(folder.glob("sag_*.pdf"))
    pngs = sorted(p for p in folder.glob("sag_*.png"))
    for p in pngs[:6]:
        section.figures.append(Figure(f"SAG of {p.stem[4:]}", _load_pixels(p)))
    if len(pngs) > 6:
        section.text.append(f"{len(pngs) - 6} more graph figures in {_rel(folder, root)}.")
    claimed |= set(pngs)
    return section, claimed


def generic_json_section(title: str | None = None) -> Renderer:
    """A renderer for any JSON result: lists of records as tables, the rest as flattened key/value facts."""

    def render(path: Path, folder: Path, root: Path):
        data = _read_json(path)
        section = Section(title or path.stem.replace("_", " "), _rel(path, root))
        scalars = {}
        items = data.items() if isinstance(data, dict) else [("rows", data)]
        for key, value in items:
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                section.tables.append(_records_table(str(key), value))
            else:
                scalars[key] = value
        section.facts = _flatten(scalars)[:60]
        return section, {path}

    return render


def generic_csv_section(title: str | None = None) -> Renderer:
    """A renderer for any CSV result: its first rows as a table."""

    def render(path: Path, folder: Path, root: Path):
        with Path(path).open(newline="") as fh:
            rows = list(csv.reader(fh))
        section = Section(title or path.stem.replace("_", " "), _rel(path, root))
        if rows:
            body = rows[1:]
            note = f"First {MAX_TABLE_ROWS} of {len(body)} rows." if len(body) > MAX_TABLE_ROWS else ""
            section.tables.append(Table(path.name, rows[0], body[:MAX_TABLE_ROWS], note))
        return section, {path}

    return render


def _image_section(path: Path, folder: Path, root: Path):
    section = Section(path.stem.replace("_", " "), _rel(path, root))
    section.figures.append(Figure(path.name, _load_pixels(path)))
    return section, {path}


def _titled(pattern: str, title: str, order: int) -> list[SectionRule]:
    return [
        SectionRule(f"{pattern}.json", generic_json_section(title), order),
        SectionRule(f"{pattern}.csv", generic_csv_section(title), order),
    ]


#: The registry, tried in ``order``: the first rule whose pattern matches an unclaimed file renders it.
SECTION_RULES: list[SectionRule] = [
    SectionRule("explain_summary.json", _explain_section, 10),
    SectionRule("peppr_summary.json", _peppr_section, 20),
    SectionRule("sag_summary.json", _sag_section, 30),
    *_titled("*sanity*", "Sanity check (model randomisation)", 40),
    *_titled("*group*", "Group differences", 41),
    *_titled("*compar*", "Group differences", 41),
    *_titled("*region*", "Region table", 42),
    *_titled("*concept*", "Concepts", 43),
    SectionRule("*.json", generic_json_section(), 90),
    SectionRule("*.csv", generic_csv_section(), 91),
    SectionRule("*.png", _image_section, 92),
    SectionRule("*.jpg", _image_section, 92),
]


def register_section(pattern: str, renderer: Renderer, order: int = 50) -> None:
    """Add a rule: files named like ``pattern`` in a results folder are rendered by ``renderer``.

    Parameters
    ----------
    pattern : str
        Glob on the file name (``fnmatch``), e.g. ``"sanity_*.json"``.
    renderer : callable(path, folder, root) -> (Section or None, set of Path)
        Returns the section and the files it used (those are not rendered again by later rules).
    order : int
        Rules run in increasing order; the generic fallbacks have 90+.
    """
    SECTION_RULES.append(SectionRule(pattern, renderer, order))
