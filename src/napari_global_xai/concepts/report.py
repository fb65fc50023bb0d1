"""The concepts section of a report: a concepts folder's summary and tables, shown generically under one title.

The rule matches by name (``*concept*``), so concept results other tools wrote are shown the same way; the files a
concept run writes are named in :data:`napari_global_xai.concepts.result.FILES` (its ``top_images.csv`` and the TIFFs
fall to the generic rules). :mod:`napari_global_xai.report` gathers :data:`RULES` when it renders.
"""

from __future__ import annotations

from ..report_parts import titled

__all__ = ["RULES"]

#: ``*concept*.json`` / ``*concept*.csv`` under "Concepts", after the analyses (order 43).
RULES = titled("*concept*", "Concepts", 43)
