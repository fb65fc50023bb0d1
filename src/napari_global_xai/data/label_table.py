"""The per-image label table (:class:`LabelsTable`) and how its rows are matched to a stack's image ids; laterality
values and the :class:`InputNotice` warning. Reading and writing the CSV is :mod:`.labels` (which re-exports these)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from .csv_layout import (
    ID_COLUMNS,
    LATERALITY_COLUMNS,
    SPLIT_COLUMN,
    column_key,
    parse_binary,
    parse_label_map,
)
from .errors import LabelsError

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
