"""Errors raised for bad input data; every message names the offending file, row or image."""

from __future__ import annotations

__all__ = ["StackError", "LabelsError"]


class StackError(ValueError):
    """An image stack cannot be read or used as an aligned stack.

    The message names the offending file(s), image id(s) or page(s) and says what is wrong.
    """


class LabelsError(StackError):
    """A labels table (CSV) is malformed or does not match the images.

    The message names the CSV file and the offending row(s) / column(s).
    """
