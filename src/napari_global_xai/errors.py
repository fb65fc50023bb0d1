"""Errors a user can cause, one class per kind, so every front end reports them the same way.

The CLI maps them to exit codes (:func:`napari_global_xai.cli.main`): :class:`UsageError` → 2 (an option or
parameter value is wrong: fix the command), every other error here → 1 (an input file or the output folder cannot
be used). The data and model errors (:class:`~napari_global_xai.data.errors.StackError`,
:class:`~napari_global_xai.models.card.ModelLoadError`) are ``ValueError`` subclasses like these and map to 1.
This module imports nothing heavy.
"""

from __future__ import annotations

__all__ = ["UsageError", "InputError", "OutputFolderError", "ResultWarning"]


class UsageError(ValueError):
    """An option or parameter value is not allowed (unknown name, wrong type, out of range).

    The message names the option or parameter, the value given and what is allowed.
    """


class InputError(ValueError):
    """An input file exists but is not what the command needs (e.g. a TIFF that is not a global-maps file).

    The message names the file and says what to give instead.
    """


class OutputFolderError(InputError):
    """The output folder cannot be created or written; raised before any long work starts."""


class ResultWarning(UserWarning):
    """A finished result that is partly meaningless: a label whose global map holds no map, images whose
    probabilities are NaN or infinite. One line naming what and why; the CLI prints it as a warning and exits
    non-zero when nothing of the result is meaningful."""
