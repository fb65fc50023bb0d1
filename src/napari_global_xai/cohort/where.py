"""The row filter of a cohort: a tiny expression language over the study table's columns, read safely.

Grammar (Python's expression syntax, parsed with :mod:`ast` and evaluated column-wise; nothing is ever executed)::

    expr    := expr "and" expr | expr "or" expr | "not" expr | "(" expr ")" | compare | COLUMN
    compare := operand (OP operand)+                 OP: == != < <= > >= in "not in"
    operand := COLUMN | NUMBER | 'TEXT' | True | False | [value, ...] | (value, ...)

A bare ``COLUMN`` must hold true/false values (e.g. ``map_haemorrhage``). ``in`` / ``not in`` take a list of values
on the right. Anything else (calls, attributes, subscripts, arithmetic, names that are no column) is refused in one
line naming what was found and the columns there are. Examples::

    outcome == 'FP'
    outcome in ['FP', 'FN'] and prob >= 0.3
    laterality == 'R' or not (age < 60)
    0.4 <= prob_haemorrhage < 0.6

Qt-free and torch-free.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import numpy as np

__all__ = ["select_rows", "MAX_WHERE_LENGTH"]

#: Longest filter accepted (characters).
MAX_WHERE_LENGTH = 2000

_COMPARE = {
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
}


def select_rows(where: str | None, columns: Mapping[str, np.ndarray], n: int | None = None) -> np.ndarray:
    """The rows that satisfy ``where``: an ``(n,)`` bool mask (every row for an empty filter).

    Parameters
    ----------
    where : str or None
        The filter (module notes).
    columns : mapping of str to numpy.ndarray
        The table's columns, each ``(n,)``: text, integer, float or bool.
    n : int, optional
        Number of rows (default: the length of the first column).

    Raises
    ------
    UsageError
        A syntax error, a construct outside the grammar, an unknown column or a comparison of text with a number
        (one line, naming the columns).
    """
    from ..errors import UsageError

    n = len(next(iter(columns.values()))) if n is None else int(n)
    if where is None or not str(where).strip():
        return np.ones(n, bool)
    text = str(where).strip()
    if len(text) > MAX_WHERE_LENGTH:
        raise UsageError(f"--where: the filter is longer than {MAX_WHERE_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise UsageError(
            f"--where: cannot read {text!r} ({getattr(exc, 'msg', exc)}); e.g. \"outcome == 'FP'\""
        ) from None
    try:
        mask = _Evaluator(columns, n).boolean(tree.body)
    except RecursionError:
        raise UsageError("--where: the filter is nested too deeply") from None
    return np.asarray(mask, bool)


class _Evaluator:
    def __init__(self, columns: Mapping[str, np.ndarray], n: int):
        self.columns = columns
        self.n = n

    def _refuse(self, what: str):
        from ..errors import UsageError

        raise UsageError(
            f"--where: {what}; use comparisons (== != < <= > >= in, not in) of columns with numbers or quoted text, "
            f"joined by and / or / not (columns: {', '.join(self.columns)})"
        )

    def boolean(self, node) -> np.ndarray:
        if isinstance(node, ast.BoolOp):
            parts = [self.boolean(v) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = parts[0]
            for part in parts[1:]:
                out = combine(out, part)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~self.boolean(node.operand)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name):
            values = self.column(node)
            if values.dtype != bool:
                self._refuse(f"column {node.id!r} is not true/false; compare it with a value")
            return values
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return np.full(self.n, node.value)
        return self._refuse(f"{ast.unparse(node)!r} is not allowed")

    def column(self, node: ast.Name) -> np.ndarray:
        if node.id not in self.columns:
            self._refuse(f"unknown column {node.id!r}")
        return np.asarray(self.columns[node.id])

    def operand(self, node):
        """A column (array) or a value (scalar)."""
        if isinstance(node, ast.Name):
            return self.column(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
            return node.value
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, (int, float))
            and not isinstance(node.operand.value, bool)
        ):
            return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
        return self._refuse(f"{ast.unparse(node)!r} is not allowed")

    def values(self, node) -> list:
        if not isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            self._refuse(f"'in' needs a list of values, not {ast.unparse(node)!r}")
        out = [self.operand(v) for v in node.elts]
        if any(isinstance(v, np.ndarray) for v in out):
            self._refuse("'in' lists hold values, not columns")
        return out

    def compare(self, node: ast.Compare) -> np.ndarray:
        mask = np.ones(self.n, bool)
        left_node, left = node.left, self.operand(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                values = self.values(right_node)
                if not isinstance(left, np.ndarray):
                    self._refuse(f"the left of 'in' must be a column, not {ast.unparse(left_node)!r}")
                for v in values:
                    self._check_types(left, v, left_node, right_node)
                hit = np.isin(left, np.asarray(values, dtype=left.dtype if left.dtype.kind in "US" else None))
                mask &= ~hit if isinstance(op, ast.NotIn) else hit
                left_node, left = right_node, None
                continue
            if type(op) not in _COMPARE:
                self._refuse(f"the operator in {ast.unparse(node)!r} is not allowed")
            right = self.operand(right_node)
            if left is None:
                self._refuse(f"'in' cannot be chained in {ast.unparse(node)!r}")
            self._check_types(left, right, left_node, right_node)
            result = _COMPARE[type(op)](left, right)
            mask &= np.broadcast_to(np.asarray(result, bool), (self.n,))
            left_node, left = right_node, right
        return mask

    def _check_types(self, a, b, a_node, b_node) -> None:
        def kind(v):
            dtype = v.dtype if isinstance(v, np.ndarray) else np.asarray(v).dtype
            return "text" if dtype.kind in "USO" else "number"

        if kind(a) != kind(b):
            text_node = a_node if kind(a) == "text" else b_node
            self._refuse(
                f"{ast.unparse(text_node)!r} is text but {ast.unparse(b_node if text_node is a_node else a_node)!r} "
                "is a number (quote text values: outcome == 'FP')"
            )
