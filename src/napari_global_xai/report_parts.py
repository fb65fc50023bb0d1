"""The parts of a report, for :mod:`.report` and the jobs' report modules: :class:`Section` with :class:`Table` /
:class:`Figure`, the (glob pattern → renderer) :class:`SectionRule`, image embedding (:func:`encode_image`,
:func:`figure_pixels`), value formatting, provenance facts and the generic JSON / CSV / image renderers.

A leaf module: it imports no job package, so every job's ``report.py`` (``explain/report.py``, ``peppr/report.py``,
...) builds its sections from these parts and lists them in its ``RULES``; :mod:`.report` gathers those rules when it
renders. :data:`SECTION_RULES` holds the rules beyond the jobs' own: the generic fallbacks and those added with
:func:`register_section`. Qt-free.
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
    "Renderer",
    "SECTION_RULES",
    "MAX_IMAGE_SIDE",
    "MAX_TABLE_ROWS",
    "encode_image",
    "figure_pixels",
    "load_pixels",
    "read_json",
    "rel_path",
    "fmt",
    "records_table",
    "provenance_facts",
    "generic_json_section",
    "generic_csv_section",
    "image_section",
    "titled",
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


def read_json(path: Path):
    """The parsed JSON file."""
    return json.loads(Path(path).read_text())


def rel_path(path: Path, root: Path) -> str:
    """``path`` relative to the results folder ``root`` (its name when it lies outside)."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def fmt(value) -> str:
    """A value as report text: ``n/a`` for None and non-finite floats, 4 significant digits, long lists cut."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        text = ", ".join(fmt(v) for v in value[:12])
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
    return [(prefix, fmt(data))]


def records_table(caption: str, records: list, note: str = "") -> Table:
    """A list of dicts (one row each) → Table with the union of their keys as header."""
    header: list = []
    for r in records:
        header += [k for k in r if k not in header]
    rows = [[fmt(r.get(k)) for k in header] for r in records[:MAX_TABLE_ROWS]]
    if len(records) > MAX_TABLE_ROWS:
        note = (note + " " if note else "") + f"First {MAX_TABLE_ROWS} of {len(records)} rows."
    return Table(caption, header, rows, note)


def load_pixels(path: Path) -> np.ndarray:
    """An image file as an RGB (or RGBA) array."""
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


# ---------------------------------------------------------------------------------------------- provenance


def provenance_facts(prov: dict) -> list[tuple[str, str]]:
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
        facts.append(("settings", ", ".join(f"{k}={fmt(v)}" for k, v in config.items() if v not in (None, {}))))
    return facts


# ------------------------------------------------------------------------------------------------------ renderers


def generic_json_section(title: str | None = None) -> Renderer:
    """A renderer for any JSON result: lists of records as tables, the rest as flattened key/value facts."""

    def render(path: Path, folder: Path, root: Path):
        data = read_json(path)
        section = Section(title or path.stem.replace("_", " "), rel_path(path, root))
        scalars = {}
        items = data.items() if isinstance(data, dict) else [("rows", data)]
        for key, value in items:
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                section.tables.append(records_table(str(key), value))
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
        section = Section(title or path.stem.replace("_", " "), rel_path(path, root))
        if rows:
            body = rows[1:]
            note = f"First {MAX_TABLE_ROWS} of {len(body)} rows." if len(body) > MAX_TABLE_ROWS else ""
            section.tables.append(Table(path.name, rows[0], body[:MAX_TABLE_ROWS], note))
        return section, {path}

    return render


def image_section(path: Path, folder: Path, root: Path):
    """A renderer for any PNG / JPEG result: the image as a figure."""
    section = Section(path.stem.replace("_", " "), rel_path(path, root))
    section.figures.append(Figure(path.name, load_pixels(path)))
    return section, {path}


def titled(pattern: str, title: str, order: int) -> list[SectionRule]:
    """Rules showing ``<pattern>.json`` and ``<pattern>.csv`` files generically under one ``title``."""
    return [
        SectionRule(f"{pattern}.json", generic_json_section(title), order),
        SectionRule(f"{pattern}.csv", generic_csv_section(title), order),
    ]


#: The rules beyond the jobs' own (those are each job's ``report.RULES``, gathered by :mod:`.report`): the generic
#: fallbacks, then any added with :func:`register_section`.
SECTION_RULES: list[SectionRule] = [
    SectionRule("*.json", generic_json_section(), 90),
    SectionRule("*.csv", generic_csv_section(), 91),
    SectionRule("*.png", image_section, 92),
    SectionRule("*.jpg", image_section, 92),
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
        Rules run in increasing order; the jobs' sections have 10-43, the generic fallbacks 90+.
    """
    SECTION_RULES.append(SectionRule(pattern, renderer, order))
