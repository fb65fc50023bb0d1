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
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..io_utils import atomic_path
from .csv_layout import (
    ID_COLUMNS,
    LATERALITY_COLUMNS,
    SPLIT_COLUMN,
    CsvLayout,
    column_key,
    detect_layout,
    parse_binary,
    parse_label_map,
    read_records,
)
from .errors import LabelsError

__all__ = [
    "LabelsTable",
    "InputNotice",
    "read_labels_csv",
    "write_labels_csv",
    "normalise_laterality",
    "ID_COLUMNS",
]

LATERALITY_COLUMN = "laterality"
_RESERVED_COLUMNS = frozenset(ID_COLUMNS + LATERALITY_COLUMNS + (SPLIT_COLUMN,))
_LATERALITY_WORDS = {"l": "L", "left": "L", "os": "L", "r": "R", "right": "R", "od": "R", "": ""}


class InputNotice(UserWarning):
    """Something about the input was adapted or is incomplete, and the run goes on (a missing label column, a
    resize, a bit-depth conversion, ...). The CLI prints each as one ``note:`` line."""


def normalise_laterality(value: object) -> str:
    """Map a laterality value to ``"L"``, ``"R"`` or ``""`` (unknown).

    Parameters
    ----------
    value : object
        ``L``/``R``/``left``/``right``/``OS``/``OD`` in any case (OS, oculus sinister = left; OD, oculus dexter =
        right), surrounding spaces allowed; ``""`` or ``None`` for unknown.

    Returns
    -------
    str
        ``"L"``, ``"R"`` or ``""``.

    Raises
    ------
    ValueError
        For any other value.
    """
    key = "" if value is None else str(value).strip().lower()
    try:
        return _LATERALITY_WORDS[key]
    except KeyError:
        raise ValueError(f"laterality must be L, R, left, right, OS, OD or empty, got {value!r}") from None


def laterality_array(
    values: Sequence[object], image_ids: Sequence[str], error: type[Exception] = ValueError
) -> np.ndarray:
    """Normalise a laterality column (see :func:`normalise_laterality`).

    Parameters
    ----------
    values : sequence
        One value per image.
    image_ids : sequence of str
        Names the image of a bad value in the error message.
    error : type of Exception
        Raised on a bad value.

    Returns
    -------
    numpy.ndarray of str, shape (n,)
    """
    normalised = []
    for image_id, value in zip(image_ids, values, strict=True):
        try:
            normalised.append(normalise_laterality(value))
        except ValueError as exc:
            raise error(f"image {image_id!r}: {exc}") from None
    return np.array(normalised, dtype="<U1")


def preview(items: Sequence[object], limit: int = 5, show: Callable[[object], str] = repr) -> str:
    """``'a', 'b', 'c' and 7 more``: a short listing of ``items`` for error messages (``show`` formats one)."""
    shown = ", ".join(show(item) for item in items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def duplicates(values: Sequence[str]) -> list[str]:
    """Values that occur more than once, sorted."""
    return sorted(value for value, count in Counter(values).items() if count > 1)


def _stem(name: str) -> str:
    """File name stem of an id that may be a file name or a path (``sub/img_003.png`` -> ``img_003``)."""
    return PurePosixPath(name.replace("\\", "/")).stem


@dataclass(eq=False)
class LabelsTable:
    """Binary labels (and optional laterality / split / metadata) of a set of images.

    Attributes
    ----------
    image_ids : list of str
        One per row.
    names : list of str
        Label (column) names; after :meth:`matched_to`, the model's spelling.
    values : numpy.ndarray, shape (n, L), uint8
        0/1 label values.
    laterality : numpy.ndarray of str, shape (n,), optional
        ``"L"``, ``"R"`` or ``""`` (unknown).
    split : numpy.ndarray of str, shape (n,), optional
        Free text, e.g. ``"train"``.
    metadata : dict of str -> numpy.ndarray, shape (n,)
        Every other column (name as in the CSV): int64, float64 (NaN where empty) or str arrays.
    missing : list of str
        Model labels the table has no column for (set by :meth:`matched_to` / :func:`read_labels_csv` with label
        names); their ground truth is unknown.

    Raises
    ------
    LabelsError
        On inconsistent shapes, duplicate ids or names, values not in {0, 1} or bad laterality values.
    """

    image_ids: list[str]
    names: list[str]
    values: np.ndarray
    laterality: np.ndarray | None = None
    split: np.ndarray | None = None
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.image_ids = [str(i) for i in self.image_ids]
        self.names = [str(name) for name in self.names]
        self.missing = [str(name) for name in self.missing]
        self._check_ids_and_names()
        self.values = self._checked_values(np.asarray(self.values))
        if self.laterality is not None:
            self.laterality = self._checked_laterality(self.laterality)
        if self.split is not None:
            self.split = self._checked_column(self.split, SPLIT_COLUMN).astype(str)
        self.metadata = {
            str(name): self._checked_metadata(column, str(name)) for name, column in dict(self.metadata).items()
        }
        if clash := [name for name in self.metadata if name.lower() in {n.lower() for n in self.names}]:
            raise LabelsError(f"column(s) {preview(clash)} are both a label and metadata")

    def _check_ids_and_names(self) -> None:
        if dup := duplicates(self.image_ids):
            raise LabelsError(f"duplicate image ids in labels: {preview(dup)}")
        if dup := duplicates([name.lower() for name in self.names]):
            raise LabelsError(f"duplicate label names: {preview(dup)}")
        if reserved := [name for name in self.names if column_key(name) in _RESERVED_COLUMNS]:
            raise LabelsError(f"label names {preview(reserved)} are reserved column names")

    def _checked_values(self, values: np.ndarray) -> np.ndarray:
        expected = (len(self.image_ids), len(self.names))
        if values.size == 0 and 0 in expected:
            values = values.reshape(expected)
        if values.shape != expected:
            raise LabelsError(f"label values have shape {values.shape}, expected (n_images, n_labels) = {expected}")
        bad = np.argwhere(~np.isin(values, (0, 1)))
        if len(bad):
            row, col = bad[0]
            raise LabelsError(
                f"label values must be 0 or 1: image {self.image_ids[row]!r}, label {self.names[col]!r} has "
                f"{np.asarray(values[row, col]).tolist()!r} ({len(bad)} bad value(s) in all)"
            )
        return values.astype(np.uint8)

    def _checked_column(self, column: Sequence[object], what: str) -> np.ndarray:
        column = np.asarray(column, dtype=object).reshape(-1)
        if len(column) != len(self.image_ids):
            raise LabelsError(f"{what} has {len(column)} values for {len(self.image_ids)} images")
        return column

    def _checked_laterality(self, laterality: Sequence[object]) -> np.ndarray:
        column = self._checked_column(laterality, LATERALITY_COLUMN)
        return laterality_array(column, self.image_ids, LabelsError)

    def _checked_metadata(self, column: Sequence[object], name: str) -> np.ndarray:
        array = np.asarray(column)
        if array.ndim != 1 or len(array) != len(self.image_ids):
            raise LabelsError(f"metadata column {name!r} has shape {array.shape} for {len(self.image_ids)} images")
        return array

    def __len__(self) -> int:
        return len(self.image_ids)

    def column(self, name: str) -> np.ndarray:
        """Values of one label.

        Parameters
        ----------
        name : str
            A label name (one of :attr:`names`).

        Returns
        -------
        numpy.ndarray, shape (n,), uint8

        Raises
        ------
        KeyError
            If there is no such label.
        """
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"no label {name!r}; labels are {self.names}") from None

    def metadata_column(self, name: str) -> np.ndarray:
        """Values of one metadata column (name matched case-insensitively).

        Parameters
        ----------
        name : str

        Returns
        -------
        numpy.ndarray, shape (n,)
            int64, float64 or str.

        Raises
        ------
        KeyError
            If there is no such column.
        """
        for key, column in self.metadata.items():
            if column_key(key) == column_key(name):
                return column
        raise KeyError(f"no metadata column {name!r}; metadata columns are {list(self.metadata)}")

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelsTable:
        """Rows ``indices`` (in that order) as a new table.

        Parameters
        ----------
        indices : sequence of int or numpy.ndarray

        Returns
        -------
        LabelsTable
        """
        idx = np.asarray(indices, dtype=np.intp).reshape(-1)
        return LabelsTable(
            image_ids=[self.image_ids[i] for i in idx],
            names=list(self.names),
            values=self.values[idx],
            laterality=None if self.laterality is None else self.laterality[idx],
            split=None if self.split is None else self.split[idx],
            metadata={name: column[idx] for name, column in self.metadata.items()},
            missing=list(self.missing),
        )

    def aligned_to(self, image_ids: Sequence[str], source: str = "labels") -> LabelsTable:
        """Reorder the rows to follow ``image_ids``, matching by exact id, else by file name stem.

        Parameters
        ----------
        image_ids : sequence of str
            The stack's image ids; every one needs exactly one row, and every row needs an image.
        source : str
            What to call this table in error messages (e.g. the CSV path).

        Returns
        -------
        LabelsTable
            One row per image id, in that order, with ``image_ids`` equal to the given ids.

        Raises
        ------
        LabelsError
            If images have no row, rows name no image, or two rows match one image.
        """
        order = _match_rows(self.image_ids, list(image_ids), source)
        table = self.subset(order)
        table.image_ids = [str(i) for i in image_ids]
        return table

    def matched_to(
        self,
        label_names: Sequence[str],
        label_map: Mapping[str, str] | Sequence[str] | None = None,
        source: str = "labels",
    ) -> LabelsTable:
        """This table with the model's labels as its labels, everything else as metadata.

        Parameters
        ----------
        label_names : sequence of str
            The model's labels. Each takes the label or metadata column of the same name (case-insensitive), or
            the column the label map gives it.
        label_map : dict or sequence of "CSV_NAME=MODEL_NAME", optional
        source : str
            What to call this table in error messages.

        Returns
        -------
        LabelsTable
            ``names``: the model labels that have a column, in the model's order and spelling; ``missing``: those
            that do not; label columns that are not model labels become (uint8) metadata. Matching a matched table
            again to the same labels changes nothing.

        Raises
        ------
        LabelsError
            If a metadata column taken as a label holds anything but 0 / 1 (names the image and value), or the label
            map names an unknown column or model label.
        """
        label_names = [str(name) for name in label_names]
        columns = {
            **{name: ("label", i) for i, name in enumerate(self.names)},
            **{name: ("meta", name) for name in self.metadata},
        }
        by_key = {column_key(name): name for name in columns}
        wanted = {name.lower(): name for name in label_names}
        chosen: dict[str, str] = {}
        for csv_name, model_name in parse_label_map(label_map).items():
            if column_key(csv_name) not in by_key:
                raise LabelsError(
                    f"{source}: the label map names column {csv_name!r}, which the table does not "
                    f"have; the columns are {list(columns)}"
                )
            if model_name.lower() not in wanted:
                raise LabelsError(
                    f"the label map maps {csv_name!r} to {model_name!r}, which is not a model label; "
                    f"the model's labels are {label_names}"
                )
            chosen[wanted[model_name.lower()]] = by_key[column_key(csv_name)]
        for name in label_names:
            column = by_key.get(column_key(name))
            if name not in chosen and column is not None and column not in chosen.values():
                chosen[name] = column
        names = [name for name in label_names if name in chosen]
        values = np.zeros((len(self), len(names)), np.uint8)
        for j, name in enumerate(names):
            kind, key = columns[chosen[name]]
            values[:, j] = self.values[:, key] if kind == "label" else self._binary_metadata(key, name, source)
        used = set(chosen.values())
        metadata = {name: self.values[:, i] for i, name in enumerate(self.names) if name not in used}
        metadata.update({name: column for name, column in self.metadata.items() if name not in used})
        return LabelsTable(
            self.image_ids,
            names,
            values,
            self.laterality,
            self.split,
            metadata,
            [name for name in label_names if name not in chosen],
        )

    def _binary_metadata(self, column: str, label: str, source: str) -> np.ndarray:
        raw = self.metadata[column]
        if raw.dtype.kind in "iufb":
            as_float = raw.astype(float)
        else:
            parsed = [parse_binary(str(v)) for v in raw]
            as_float = np.array([np.nan if v is None else v for v in parsed], float)
        bad = np.nonzero(~np.isin(as_float, (0.0, 1.0)))[0]
        if len(bad):
            i = bad[0]
            raise LabelsError(
                f"{source}: column {column!r} (model label {label!r}) must hold 0 or 1: image "
                f"{self.image_ids[i]!r} has {str(raw[i]) or '(empty)'!r} ({len(bad)} bad value(s) "
                "in all)"
            )
        return as_float.astype(np.uint8)


def _match_rows(row_ids: list[str], image_ids: list[str], source: str) -> np.ndarray:
    """Row index for each image id (exact id first, then the row id's file name stem)."""
    if dup := duplicates(image_ids):
        raise LabelsError(f"{source}: the stack has duplicate image ids {preview(dup)}")
    wanted = set(image_ids)
    row_of: dict[str, int] = {}
    clashes, strays = [], []
    for row, row_id in enumerate(row_ids):
        target = row_id if row_id in wanted else _stem(row_id)
        if target not in wanted:
            strays.append(row_id)
        elif target in row_of:
            clashes.append(f"{row_ids[row_of[target]]!r} and {row_id!r} both match image {target!r}")
        else:
            row_of[target] = row
    missing = [image_id for image_id in image_ids if image_id not in row_of]
    problems = []
    if clashes:
        problems.append("several rows for one image: " + "; ".join(clashes[:5]))
    if missing:
        problems.append(f"{len(missing)} image(s) have no row: {preview(missing)}")
    if strays:
        problems.append(f"{len(strays)} row(s) name no image of the stack: {preview(strays, 20)}")
    if problems:
        raise LabelsError(f"{source}: " + "; ".join(problems))
    return np.array([row_of[image_id] for image_id in image_ids], dtype=np.intp)


# ----------------------------------------------------------------------------------------------------------- CSV

_INT = re.compile(r"[+-]?\d+")


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
