"""Input data: aligned image stacks (lazy pixels, ids, laterality, labels) and labels tables.

``napari_global_xai.data.synthetic`` (the planted-truth generator) is a submodule, imported on use.
"""

from .csv_layout import CsvLayout, inspect_csv
from .errors import LabelsError, StackError
from .labels import InputNotice, LabelsTable, read_labels_csv, write_labels_csv
from .readers import read_stack, write_stack_tiff
from .stack import AlignedStack

__all__ = [
    "AlignedStack",
    "CsvLayout",
    "InputNotice",
    "inspect_csv",
    "LabelsTable",
    "StackError",
    "LabelsError",
    "read_stack",
    "read_labels_csv",
    "write_labels_csv",
    "write_stack_tiff",
]
