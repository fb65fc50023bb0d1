"""Per-image labels: a CSV with one row per image, matched to a stack's image ids.

CSV format
----------
One row per image and a header row; ``,``, ``;`` or tab delimited (detected). Which column is what follows
:mod:`napari_global_xai.data.csv_layout`; in short (column names are case-insensitive):

image id
    ``image`` (or ``image_id``, ``filename``, ``file``, ``path``, ``id``, ``name``), or any column named explicitly.
    ``img_003.png`` matches the image id ``img_003``.
laterality (optional)
    ``laterality`` (or ``LR``, ``eye``, ``side``), or any column named explicitly: ``L`` / ``R``, ``left`` /
    ``right``, ``OS`` / ``OD`` (OS = left, OD = right), any case; empty means unknown.
``split`` (optional)
    Free text (e.g. ``train`` / ``eval``).
labels
    With the model's label names: the column of each model label (matched by name, case-insensitively, or through a
    label map ``CSV_NAME=MODEL_NAME``), ``0`` or ``1`` in every row. Without them: every other column that holds only
    ``0`` / ``1``.
every other column
    Metadata, kept for subgroup analyses: integers, decimals (NaN where empty) or text.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..io_utils import atomic_path
from .csv_layout import (
    ID_COLUMNS,
    SPLIT_COLUMN,
    CsvLayout,
    detect_layout,
    parse_binary,
    read_records,
)
from .errors import LabelsError
from .label_table import LATERALITY_COLUMN, InputNotice, LabelsTable, duplicates, normalise_laterality, preview

# re-exported: these lived here before the table moved to label_table.py
from .label_table import laterality_array as laterality_array

__all__ = [
    "LabelsTable",
    "InputNotice",
    "missing_truth_message",
    "read_labels_csv",
    "write_labels_csv",
    "normalise_laterality",
    "ID_COLUMNS",
]


_INT = re.compile(r"[+-]?\d+")


def missing_truth_message(names: list[str]) -> str:
    """``"the labels table has no column for model label(s) 'MH', 'x'"``."""
    return f"the labels table has no column for model label(s) {', '.join(map(repr, names))}"


def typed_column(cells: Sequence[str], decimal_comma: bool = False) -> np.ndarray:
    """A metadata column as int64 (all integers), float64 (all numbers; NaN where empty) or str.

    Parameters
    ----------
    cells : sequence of str
        Stripped cell texts; ``""`` is empty.
    decimal_comma : bool
        Also read ``3,5`` as 3.5 (files delimited by ``;`` or tab, as European spreadsheets write them).

    Returns
    -------
    numpy.ndarray, shape (len(cells),)

    Notes
    -----
    An all-empty column is text (``""``). Integers with an empty cell become float64 with NaN there.
    """
    filled = [cell for cell in cells if cell]
    if not filled:
        return np.array(cells, dtype=str)
    if all(_INT.fullmatch(cell) for cell in filled) and len(filled) == len(cells):
        return np.array([int(cell) for cell in cells], dtype=np.int64)
    try:
        numbers = [float(cell.replace(",", ".") if decimal_comma else cell) if cell else np.nan for cell in cells]
    except ValueError:
        return np.array(cells, dtype=str)
    return np.array(numbers, dtype=np.float64)


def _strict_binary(
    cells: Sequence[str], column: str, ids: Sequence[str], lines: Sequence[int], path: Path, model_label: str | None
) -> np.ndarray:
    values = np.zeros(len(cells), np.uint8)
    for row, cell in enumerate(cells):
        value = parse_binary(cell)
        if value is None:
            shown = cell if cell else "(empty)"
            via = f" (model label {model_label!r})" if model_label and model_label != column else ""
            raise LabelsError(
                f"{path}, row {ids[row]!r} (line {lines[row]}): label {column!r}{via} is {shown!r}; "
                "labels must be 0 or 1"
            )
        values[row] = value
    return values


def _table_from_records(
    path: Path, header: list[str], rows: list[tuple[int, list[str]]], layout: CsvLayout, with_label_names: bool
) -> LabelsTable:
    if layout.id_column is None:
        raise LabelsError(
            f"{path}: no image id column; expected one of {', '.join(ID_COLUMNS)} or a column named "
            f"with id_column (CLI: --id-column), found {header}"
        )
    index = {name: i for i, name in enumerate(header) if name}
    unnamed = [i for i, name in enumerate(header) if not name]
    lines, table_rows = [], []
    for line, cells in rows:
        if len(cells) > len(header):
            raise LabelsError(f"{path}, line {line}: {len(cells)} fields but the header has {len(header)}")
        cells = cells + [""] * (len(header) - len(cells))
        if not cells[index[layout.id_column]]:
            raise LabelsError(f"{path}, line {line}: empty image id")
        if stray := [i + 1 for i in unnamed if cells[i]]:
            raise LabelsError(
                f"{path}, row {cells[index[layout.id_column]]!r} (line {line}): value(s) in column(s) "
                f"{stray} that have no name in the header"
            )
        lines.append(line)
        table_rows.append(cells)
    cols = {name: [cells[i] for cells in table_rows] for name, i in index.items()}
    ids = cols[layout.id_column]
    if dup := duplicates(ids):
        raise LabelsError(f"{path}: duplicate image ids {preview(dup)}")
    laterality = None
    if layout.laterality_column is not None:
        laterality = []
        for row, value in enumerate(cols[layout.laterality_column]):
            try:
                laterality.append(normalise_laterality(value))
            except ValueError as exc:
                raise LabelsError(
                    f"{path}, row {ids[row]!r} (line {lines[row]}): column {layout.laterality_column!r}: {exc}"
                ) from None
    names = list(layout.label_columns)
    values = np.zeros((len(ids), len(names)), np.uint8)
    for j, (name, column) in enumerate(layout.label_columns.items()):
        values[:, j] = _strict_binary(cols[column], column, ids, lines, path, name if with_label_names else None)
    decimal_comma = layout.delimiter != ","
    return LabelsTable(
        image_ids=ids,
        names=names,
        values=values,
        laterality=None if laterality is None else np.array(laterality, dtype="<U1"),
        split=None if layout.split_column is None else np.array(cols[layout.split_column], dtype=str),
        metadata={name: typed_column(cols[name], decimal_comma) for name in layout.metadata_columns},
        missing=list(layout.missing_labels),
    )


def read_labels_csv(
    path: str | os.PathLike,
    image_ids: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    *,
    id_column: str | None = None,
    laterality_column: str | None = None,
    label_map: Mapping[str, str] | Sequence[str] | None = None,
) -> LabelsTable:
    """Read a labels CSV (format in the module docstring).

    Parameters
    ----------
    path : str or path-like
        The CSV file (``,``, ``;`` or tab delimited; UTF-8 or Windows-1252).
    image_ids : sequence of str, optional
        The stack's image ids. When given, rows are matched to them (by exact id, else by the file name stem of the
        row's id) and returned in this order, and every image must have exactly one row and every row an image.
    label_names : sequence of str, optional
        The model's labels. Their columns (by name, case-insensitive, or through ``label_map``) are the labels,
        strictly 0/1; every other column is metadata. Default: every column holding only 0/1 is a label.
    id_column, laterality_column : str, optional
        Name the image id / laterality column (case-insensitive) instead of detecting it.
    label_map : dict or sequence of "CSV_NAME=MODEL_NAME", optional
        Columns whose name differs from the model label they hold.

    Returns
    -------
    LabelsTable
        Rows in file order, or in the order of ``image_ids`` with ``image_ids`` as ids. With ``label_names``,
        ``names`` are the model labels found (model order and spelling) and ``missing`` the others.

    Raises
    ------
    LabelsError
        On a missing file or id column, duplicate ids, label values not in {0, 1} (empty counts as bad), bad
        laterality values, explicit columns or label-map names the file does not have, or rows and images that do
        not match; the message names the file and the row / column.

    Warns
    -----
    InputNotice
        When the file is not UTF-8 and was read as Windows-1252.

    Notes
    -----
    Never positional: a column's role comes from its name (or an explicit choice), never from its place.
    """
    path = Path(path)
    header, rows, delimiter, encoding = read_records(path)
    layout = detect_layout(
        path, header, rows, delimiter, encoding, label_names, id_column, laterality_column, label_map
    )
    if encoding != "utf-8-sig":
        warnings.warn(f"{path}: not UTF-8; read as Windows-1252 text", InputNotice, stacklevel=2)
    table = _table_from_records(path, header, rows, layout, label_names is not None)
    return table if image_ids is None else table.aligned_to(image_ids, source=str(path))


def _cell(value: object) -> object:
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return ""
    return value.item() if isinstance(value, np.generic) else value


def write_labels_csv(table: LabelsTable, path: str | os.PathLike) -> None:
    """Write ``table`` as a labels CSV, atomically (the file appears whole or not at all).

    Parameters
    ----------
    table : LabelsTable
    path : str or path-like
        Target file; replaced if it exists. Columns: ``image``, ``laterality`` and ``split`` (when present), the
        labels, then the metadata (NaN written as an empty cell).
    """
    header = ["image"]
    columns: list[Sequence[object]] = [table.image_ids]
    for name, column in ((LATERALITY_COLUMN, table.laterality), (SPLIT_COLUMN, table.split)):
        if column is not None:
            header.append(name)
            columns.append(list(column))
    header += table.names
    columns += [table.values[:, j].tolist() for j in range(len(table.names))]
    header += list(table.metadata)
    columns += [[_cell(v) for v in column] for column in table.metadata.values()]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(zip(*columns))
