"""The sanity check's report section: its JSON and CSV results, shown generically under one title.

The rule matches by name (``*sanity*``), so sanity results other tools wrote are shown the same way.
:mod:`napari_global_xai.report` gathers :data:`RULES` when it renders.
"""

from __future__ import annotations

from ..report_parts import titled

__all__ = ["RULES"]

#: ``*sanity*.json`` / ``*sanity*.csv`` under "Sanity check (model randomisation)" (order 40).
RULES = titled("*sanity*", "Sanity check (model randomisation)", 40)
