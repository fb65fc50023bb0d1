"""The group comparison's report section: its JSON and CSV results, shown generically under one title.

The rules match by name (``*group*``, ``*compar*``), so group results other tools wrote are shown the same way.
:mod:`napari_global_xai.report` gathers :data:`RULES` when it renders.
"""

from __future__ import annotations

from ..report_parts import titled

__all__ = ["RULES"]

#: ``*group*`` and ``*compar*`` JSON / CSV under "Group differences" (order 41).
RULES = [*titled("*group*", "Group differences", 41), *titled("*compar*", "Group differences", 41)]
