"""The region table's report section: its JSON and CSV results, shown generically under one title.

The rule matches by name (``*region*``), so region tables other tools wrote are shown the same way.
:mod:`napari_global_xai.report` gathers :data:`RULES` when it renders.
"""

from __future__ import annotations

from ..report_parts import titled

__all__ = ["RULES"]

#: ``*region*.json`` / ``*region*.csv`` under "Region table" (order 42).
RULES = titled("*region*", "Region table", 42)
