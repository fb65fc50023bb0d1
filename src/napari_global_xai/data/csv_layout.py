"""Which column of an archive's labels CSV is what: the image id, the laterality, the split, the model's labels and
the metadata (everything else), plus the delimiter and encoding the file uses.

:func:`inspect_csv` is Qt-free and cheap (the file is read once); :func:`~napari_global_xai.data.labels.read_labels_csv`
parses with the layout it finds, and the napari column-mapping dialog shows it to the user when it is unsure.

Rules
-----
* **Delimiter**: ``,``, ``;`` or tab, whichever splits the header into more than one field and every row into as
  many fields as the header (comma on a tie).
* **Image id**: the first column, by preference, named ``image``, ``image_id``, ``filename``, ``file``, ``path``,
  ``id`` or ``name`` (case, surrounding spaces, spaces and hyphens ignored: ``Image ID`` is ``image_id``), or the
  column named explicitly.
* **Laterality**: ``laterality``, ``LR``, ``eye`` or ``side`` (same leniency), or the column named explicitly.
* **Split**: ``split``.
* **Labels**: with the model's label names, the column of each model label is found by name (case-insensitive), or
  through a label map ``{CSV_NAME: MODEL_NAME}``; labels with no column are *missing*. Without label names, every
  other column holding only ``0`` / ``1`` is a label.
* **Metadata**: every other named column (kept as text or numbers, never validated as 0/1).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LabelsError

__all__ = [
    "CsvLayout",
    "inspect_csv",
    "parse_label_map",
    "ID_COLUMNS",
    "LATERALITY_COLUMNS",
    "SPLIT_COLUMN",
    "DELIMITERS",
]

#: Accepted names of the image id column, in order of preference.
ID_COLUMNS = ("image", "image_id", "filename", "file", "path", "id", "name")
#: Accepted names of the laterality column, in order of preference.
LATERALITY_COLUMNS = ("laterality", "lr", "eye", "side")
SPLIT_COLUMN = "split"
#: Delimiters tried by the sniffer, in order of preference on a tie.
DELIMITERS = (",", ";", "\t")
_ENCODINGS = ("utf-8-sig", "cp1252")
_SNIFF_LINES = 200


def column_key(name: str) -> str:
    """Lenient form of a column name for matching: lower case, stripped, spaces and hyphens as ``_``."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def parse_binary(cell: str) -> int | None:
    """``0`` / ``1`` (also ``0.0`` / ``1.0``) as an int, anything else None."""
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return None
    return int(value) if value in (0.0, 1.0) else None


@dataclass
class CsvLayout:
    """What :func:`inspect_csv` found in a labels CSV.

    Attributes
    ----------
    path : pathlib.Path
    delimiter : str
        ``","``, ``";"`` or ``"\\t"``.
    encoding : str
        ``"utf-8-sig"`` (UTF-8, with or without a byte-order mark) or ``"cp1252"`` (Windows Excel exports).
    columns : list of str
        The header, as written (stripped).
    n_rows : int
        Non-blank data rows.
    id_column : str or None
        None when no column could be taken as the image id.
    id_candidates : list of str
        Every column whose name is an accepted id name (the first one is used).
    laterality_column, split_column : str or None
    label_columns : dict
        Model label (or, without label names, the column's own name) -> CSV column, in the model's label order.
    missing_labels : list of str
        Model labels with no column.
    metadata_columns : list of str
        Every other named column.
    notes : list of str
        Why the detection may be wrong (e.g. no id column, model labels not found); empty when it is sure.
    """

    path: Path
    delimiter: str
    encoding: str
    columns: list[str]
    n_rows: int
    id_column: str | None
    id_candidates: list[str]
    laterality_column: str | None
    split_column: str | None
    label_columns: dict[str, str]
    missing_labels: list[str]
    metadata_columns: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def unsure(self) -> bool:
        """True when a person should confirm the columns (no id column, or model labels without a column)."""
        return bool(self.notes)


# ------------------------------------------------------------------------------------------------ reading


def _sniff_delimiter(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()][:_SNIFF_LINES]

    def score(delimiter: str) -> tuple[bool, bool, int]:
        rows = list(csv.reader(lines, delimiter=delimiter))
        width = len(rows[0]) if rows else 0
        consistent = all(len(row) == width for row in rows)
        return width > 1, consistent, width

    scores = {delimiter: score(delimiter) for delimiter in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (scores[d], -DELIMITERS.index(d)))


def _read_text(path: Path) -> tuple[str, str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LabelsError(f"labels file not found: {path}") from None
    except OSError as exc:
        raise LabelsError(f"{path}: not a readable CSV file ({exc})") from None
    for encoding in _ENCODINGS:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise LabelsError(f"{path}: not a readable CSV file (neither UTF-8 nor Windows-1252 text)")  # pragma: no cover


def read_records(path: str | os.PathLike) -> tuple[list[str], list[tuple[int, list[str]]], str, str]:
    """Header, ``(line number, cells)`` of each non-blank row (cells stripped), delimiter and encoding.

    Raises
    ------
    LabelsError
        On a missing or unreadable file, or a file without a header row.
    """
    path = Path(path)
    text, encoding = _read_text(path)
    delimiter = _sniff_delimiter(text)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        records = [(reader.line_num, [cell.strip() for cell in row]) for row in reader]
    except csv.Error as exc:
        raise LabelsError(f"{path}: not a readable CSV file ({exc})") from None
    records = [(line, cells) for line, cells in records if any(cells)]
    if not records:
        raise LabelsError(f"{path}: empty; expected a header row with an image id column ({', '.join(ID_COLUMNS)})")
    (_, header), *rows = records
    return header, rows, delimiter, encoding


# ------------------------------------------------------------------------------------------------ detection


def parse_label_map(label_map: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """``{CSV_NAME: MODEL_NAME}`` from a dict or from ``"CSV_NAME=MODEL_NAME"`` strings.

    Raises
    ------
    LabelsError
        On an item without ``=`` or with an empty side, or one CSV name mapped twice.
    """
    if label_map is None:
        return {}
    if isinstance(label_map, Mapping):
        items = [(str(k).strip(), str(v).strip()) for k, v in label_map.items()]
    else:
        items = []
        for item in label_map:
            csv_name, sep, model_name = str(item).partition("=")
            if not sep:
                raise LabelsError(f"label map entries look like CSV_NAME=MODEL_NAME, got {item!r}")
            items.append((csv_name.strip(), model_name.strip()))
    out: dict[str, str] = {}
    for csv_name, model_name in items:
        if not csv_name or not model_name:
            raise LabelsError(f"label map entries look like CSV_NAME=MODEL_NAME, got {csv_name!r}={model_name!r}")
        if column_key(csv_name) in {column_key(k) for k in out}:
            raise LabelsError(f"label map names column {csv_name!r} twice")
        out[csv_name] = model_name
    return out


def _explicit(header: list[str], name: str | None, what: str, option: str, path: Path) -> str | None:
    if name is None:
        return None
    keys = [column_key(h) for h in header]
    if column_key(name) not in keys:
        raise LabelsError(f"{path}: no column {name!r} for the {what} ({option}); the columns are {header}")
    return header[keys.index(column_key(name))]


def _first_named(header: list[str], names: Sequence[str], taken: set[str]) -> list[str]:
    """Columns of ``header`` whose key is one of ``names``, in the order of ``names``, skipping ``taken``."""
    by_key = {column_key(h): h for h in header if h and h not in taken}
    return [by_key[name] for name in names if name in by_key]


def _match_labels(
    header: list[str], label_names: Sequence[str], label_map: dict[str, str], path: Path
) -> tuple[dict[str, str], list[str]]:
    keys = {column_key(h): h for h in header if h}
    wanted = {name.lower(): name for name in label_names}
    columns: dict[str, str] = {}
    for csv_name, model_name in label_map.items():
        if column_key(csv_name) not in keys:
            raise LabelsError(
                f"{path}: the label map names column {csv_name!r}, which the CSV does not have; "
                f"the columns are {header}"
            )
        if model_name.lower() not in wanted:
            raise LabelsError(
                f"the label map maps {csv_name!r} to {model_name!r}, which is not a model label; the "
                f"model's labels are {list(label_names)}"
            )
        target = wanted[model_name.lower()]
        if target in columns:
            raise LabelsError(f"the label map gives model label {target!r} two columns")
        columns[target] = keys[column_key(csv_name)]
    mapped = set(columns.values())
    for name in label_names:
        column = keys.get(column_key(name))
        if name not in columns and column is not None and column not in mapped:
            columns[name] = column
    ordered = {name: columns[name] for name in label_names if name in columns}
    return ordered, [name for name in label_names if name not in columns]


def detect_layout(
    path: Path,
    header: list[str],
    rows: list[tuple[int, list[str]]],
    delimiter: str,
    encoding: str,
    label_names: Sequence[str] | None = None,
    id_column: str | None = None,
    laterality_column: str | None = None,
    label_map: Mapping[str, str] | Sequence[str] | None = None,
) -> CsvLayout:
    """The layout of already-read records (see :func:`inspect_csv`)."""
    lowered = [column_key(name) for name in header if name]
    if dup := sorted({k for k in lowered if lowered.count(k) > 1}):
        raise LabelsError(f"{path}: duplicate column names {', '.join(map(repr, dup))}")
    mapping = parse_label_map(label_map)
    if mapping and label_names is None:
        raise LabelsError("a label map needs the model's label names")
    id_col = _explicit(header, id_column, "image id", "id_column / --id-column", path)
    lat_col = _explicit(header, laterality_column, "laterality", "laterality_column / --laterality-column", path)
    taken = {c for c in (id_col, lat_col) if c}
    label_columns, missing = {}, []
    if label_names is not None:
        label_columns, missing = _match_labels(header, list(label_names), mapping, path)
        if clash := taken & set(label_columns.values()):
            raise LabelsError(f"{path}: column {min(clash)!r} cannot be both a label and the image id / laterality")
        taken |= set(label_columns.values())
    id_candidates = _first_named(header, ID_COLUMNS, taken - {id_col})
    if id_col is None and id_candidates:
        id_col = id_candidates[0]
    taken |= {id_col} if id_col else set()
    if lat_col is None:
        lat_col = next(iter(_first_named(header, LATERALITY_COLUMNS, taken)), None)
    taken |= {lat_col} if lat_col else set()
    split_col = next(iter(_first_named(header, (SPLIT_COLUMN,), taken)), None)
    taken |= {split_col} if split_col else set()
    rest = [h for h in header if h and h not in taken]
    if label_names is None:
        index = {h: i for i, h in enumerate(header)}
        label_columns = {h: h for h in rest if _all_binary(rows, index[h])}
    metadata = [h for h in rest if h not in label_columns.values()]
    notes = []
    if id_col is None:
        notes.append(f"no image id column (looked for {', '.join(ID_COLUMNS)})")
    if missing:
        notes.append(f"no column for model label(s) {', '.join(map(repr, missing))}")
    return CsvLayout(
        Path(path),
        delimiter,
        encoding,
        list(header),
        len(rows),
        id_col,
        id_candidates,
        lat_col,
        split_col,
        label_columns,
        missing,
        metadata,
        notes,
    )


def _all_binary(rows: list[tuple[int, list[str]]], i: int) -> bool:
    cells = [cells[i] if i < len(cells) else "" for _, cells in rows]
    return bool(cells) and all(parse_binary(cell) is not None for cell in cells)


def inspect_csv(
    path: str | os.PathLike,
    label_names: Sequence[str] | None = None,
    *,
    id_column: str | None = None,
    laterality_column: str | None = None,
    label_map: Mapping[str, str] | Sequence[str] | None = None,
) -> CsvLayout:
    """Find which column of a labels CSV is what (rules in the module docstring), without parsing the values.

    Parameters
    ----------
    path : str or path-like
    label_names : sequence of str, optional
        The model's labels; their columns are found by name (case-insensitive) or through ``label_map``.
    id_column, laterality_column : str, optional
        Explicit column names (case-insensitive), overriding the automatic choice.
    label_map : dict or sequence of "CSV_NAME=MODEL_NAME", optional
        Columns whose name differs from the model label they hold.

    Returns
    -------
    CsvLayout
        ``layout.unsure`` (with ``layout.notes``) when there is no id column or a model label has no column: the
        cue for the napari column-mapping dialog.

    Raises
    ------
    LabelsError
        On a missing / unreadable / empty file, duplicate column names, an explicit column the file does not have,
        or a label map naming an unknown column or model label.
    """
    path = Path(path)
    header, rows, delimiter, encoding = read_records(path)
    return detect_layout(path, header, rows, delimiter, encoding, label_names, id_column, laterality_column, label_map)
