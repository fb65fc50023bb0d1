"""Per-image labels: a CSV with one row per image, matched to a stack's image ids.

CSV format
----------
One row per image and a header row. Columns (names are case-insensitive):

``image`` (or ``image_id``, ``filename``, ``file``)
    The image id or file name; ``img_003.png`` matches the image id ``img_003``.
``laterality`` (optional)
    ``L`` / ``R`` (also ``left`` / ``right``, any case); empty means unknown.
``split`` (optional)
    Free text (e.g. ``train`` / ``eval``).
every other column
    A binary label, ``0`` or ``1`` in every row.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..io_utils import atomic_path
from .errors import LabelsError

__all__ = [
    "LabelsTable",
    "read_labels_csv",
    "write_labels_csv",
    "normalise_laterality",
    "ID_COLUMNS",
]

#: Accepted names of the image id column, in order of preference.
ID_COLUMNS = ("image", "image_id", "filename", "file")
LATERALITY_COLUMN = "laterality"
SPLIT_COLUMN = "split"
_RESERVED_COLUMNS = frozenset(ID_COLUMNS + (LATERALITY_COLUMN, SPLIT_COLUMN))
_LATERALITY_WORDS = {"l": "L", "left": "L", "r": "R", "right": "R", "": ""}


def normalise_laterality(value: object) -> str:
    """Map a laterality value to ``"L"``, ``"R"`` or ``""`` (unknown).

    Parameters
    ----------
    value : object
        ``L``/``R``/``left``/``right`` in any case, surrounding spaces allowed; ``""`` or ``None`` for unknown.

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
        raise ValueError(f"laterality must be L, R, left, right or empty, got {value!r}") from None


def laterality_array(values: Sequence[object], image_ids: Sequence[str],
                     error: type[Exception] = ValueError) -> np.ndarray:
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
    """Binary labels (and optional laterality / split) of a set of images.

    Attributes
    ----------
    image_ids : list of str
        One per row.
    names : list of str
        Label (column) names.
    values : numpy.ndarray, shape (n, L), uint8
        0/1 label values.
    laterality : numpy.ndarray of str, shape (n,), optional
        ``"L"``, ``"R"`` or ``""`` (unknown).
    split : numpy.ndarray of str, shape (n,), optional
        Free text, e.g. ``"train"``.

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

    def __post_init__(self) -> None:
        self.image_ids = [str(i) for i in self.image_ids]
        self.names = [str(name) for name in self.names]
        self._check_ids_and_names()
        self.values = self._checked_values(np.asarray(self.values))
        if self.laterality is not None:
            self.laterality = self._checked_laterality(self.laterality)
        if self.split is not None:
            self.split = self._checked_column(self.split, SPLIT_COLUMN).astype(str)

    def _check_ids_and_names(self) -> None:
        if dup := duplicates(self.image_ids):
            raise LabelsError(f"duplicate image ids in labels: {preview(dup)}")
        if dup := duplicates([name.lower() for name in self.names]):
            raise LabelsError(f"duplicate label names: {preview(dup)}")
        if reserved := [name for name in self.names if name.lower() in _RESERVED_COLUMNS]:
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
                f"{np.asarray(values[row, col]).tolist()!r} ({len(bad)} bad value(s) in all)")
        return values.astype(np.uint8)

    def _checked_column(self, column: Sequence[object], what: str) -> np.ndarray:
        column = np.asarray(column, dtype=object).reshape(-1)
        if len(column) != len(self.image_ids):
            raise LabelsError(f"{what} has {len(column)} values for {len(self.image_ids)} images")
        return column

    def _checked_laterality(self, laterality: Sequence[object]) -> np.ndarray:
        column = self._checked_column(laterality, LATERALITY_COLUMN)
        return laterality_array(column, self.image_ids, LabelsError)

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


@dataclass(frozen=True)
class _Columns:
    """Where each kind of column sits in the header."""

    image: int
    laterality: int | None
    split: int | None
    labels: tuple[tuple[str, int], ...]
    unnamed: tuple[int, ...]


def _read_csv_records(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, cells)`` of each non-blank row, cells stripped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            records = [(reader.line_num, [cell.strip() for cell in row]) for row in reader]
    except FileNotFoundError:
        raise LabelsError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError(f"{path}: not a readable CSV file ({exc})") from None
    records = [(line, cells) for line, cells in records if any(cells)]
    if not records:
        raise LabelsError(f"{path}: empty; expected a header row with an image id column {ID_COLUMNS}")
    (_, header), *rows = records
    return header, rows


def _find_columns(header: list[str], path: Path) -> _Columns:
    lowered = [name.lower() for name in header]
    if dup := duplicates([name for name in lowered if name]):
        raise LabelsError(f"{path}: duplicate column names {preview(dup)}")
    image = next((lowered.index(name) for name in ID_COLUMNS if name in lowered), None)
    if image is None:
        raise LabelsError(f"{path}: no image id column; expected one of {', '.join(ID_COLUMNS)}, found {header}")
    laterality = lowered.index(LATERALITY_COLUMN) if LATERALITY_COLUMN in lowered else None
    split = lowered.index(SPLIT_COLUMN) if SPLIT_COLUMN in lowered else None
    labels = tuple((name, i) for i, name in enumerate(header) if name and lowered[i] not in _RESERVED_COLUMNS)
    unnamed = tuple(i for i, name in enumerate(header) if not name)
    return _Columns(image, laterality, split, labels, unnamed)


def _parse_binary(cell: str) -> int | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return int(value) if value in (0.0, 1.0) else None


def _parse_row(cells: list[str], columns: _Columns, where: str) -> tuple[list[int], str, str]:
    """Label values, laterality and split of one row; ``where`` names the row in error messages."""
    values = []
    for name, i in columns.labels:
        value = _parse_binary(cells[i])
        if value is None:
            shown = cells[i] if cells[i] else "(empty)"
            raise LabelsError(f"{where}: label {name!r} is {shown!r}; labels must be 0 or 1")
        values.append(value)
    if stray := [i + 1 for i in columns.unnamed if cells[i]]:
        raise LabelsError(f"{where}: value(s) in column(s) {stray} that have no name in the header")
    try:
        laterality = normalise_laterality(cells[columns.laterality]) if columns.laterality is not None else ""
    except ValueError as exc:
        raise LabelsError(f"{where}: {exc}") from None
    split = cells[columns.split] if columns.split is not None else ""
    return values, laterality, split


def _table_from_csv(path: Path) -> LabelsTable:
    header, rows = _read_csv_records(path)
    columns = _find_columns(header, path)
    ids, values, laterality, split = [], [], [], []
    for line, cells in rows:
        if len(cells) > len(header):
            raise LabelsError(f"{path}, line {line}: {len(cells)} fields but the header has {len(header)}")
        cells = cells + [""] * (len(header) - len(cells))
        image_id = cells[columns.image]
        if not image_id:
            raise LabelsError(f"{path}, line {line}: empty image id")
        row_values, row_laterality, row_split = _parse_row(cells, columns, f"{path}, row {image_id!r} (line {line})")
        ids.append(image_id)
        values.append(row_values)
        laterality.append(row_laterality)
        split.append(row_split)
    if dup := duplicates(ids):
        raise LabelsError(f"{path}: duplicate image ids {preview(dup)}")
    return LabelsTable(
        image_ids=ids,
        names=[name for name, _ in columns.labels],
        values=np.array(values, dtype=np.uint8).reshape(len(ids), len(columns.labels)),
        laterality=None if columns.laterality is None else np.array(laterality, dtype="<U1"),
        split=None if columns.split is None else np.array(split, dtype=str),
    )


def read_labels_csv(path: str | os.PathLike, image_ids: Sequence[str] | None = None) -> LabelsTable:
    """Read a labels CSV (format in the module docstring).

    Parameters
    ----------
    path : str or path-like
        The CSV file.
    image_ids : sequence of str, optional
        The stack's image ids. When given, rows are matched to them (by exact id, else by the file name stem of the
        row's id) and returned in this order, and every image must have exactly one row and every row an image.

    Returns
    -------
    LabelsTable
        Rows in file order, or in the order of ``image_ids`` with ``image_ids`` as ids.

    Raises
    ------
    LabelsError
        On a missing file or id column, duplicate ids, values not in {0, 1} (empty counts as bad), bad laterality
        values, or rows and images that do not match; the message names the file and the row / column.
    """
    path = Path(path)
    table = _table_from_csv(path)
    return table if image_ids is None else table.aligned_to(image_ids, source=str(path))


def write_labels_csv(table: LabelsTable, path: str | os.PathLike) -> None:
    """Write ``table`` as a labels CSV, atomically (the file appears whole or not at all).

    Parameters
    ----------
    table : LabelsTable
    path : str or path-like
        Target file; replaced if it exists.
    """
    header = ["image"]
    columns: list[Sequence[object]] = [table.image_ids]
    for name, column in ((LATERALITY_COLUMN, table.laterality), (SPLIT_COLUMN, table.split)):
        if column is not None:
            header.append(name)
            columns.append(list(column))
    header += table.names
    columns += [table.values[:, j].tolist() for j in range(len(table.names))]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(zip(*columns))
