"""Dock layout that fits a laptop screen: every dock's content in one vertical scroll area, advanced options in a
collapsed group.

A napari dock asks the main window for its content's minimum size; a long form plus a plot asked for more than a
1,280 × 800 screen and pushed the window off it. Inside a scroll area the dock asks for almost nothing and scrolls
instead; the forms keep their natural size.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

__all__ = ["scroll_body", "advanced_group", "ADVANCED_TITLE"]

#: Title of the collapsed group of settings a first run does not need.
ADVANCED_TITLE = "Advanced options"


def scroll_body(dock: QWidget) -> QWidget:
    """Give ``dock`` one vertical scroll area filling it; return the scrolled body widget: lay the dock out in it
    (``layout = QVBoxLayout(scroll_body(self))``).

    The body follows the dock's width (no horizontal scrolling unless a widget cannot shrink) and scrolls
    vertically, so the dock's minimum size hint stays small whatever its content.
    """
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    area = QScrollArea(dock)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    body = QWidget()
    body.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
    area.setWidget(body)
    outer.addWidget(area)
    dock.scroll_area = area
    return body


def advanced_group(*widgets, title: str = ADVANCED_TITLE, expanded: bool = False):
    """A collapsible group (superqt's ``QCollapsible``, collapsed by default) holding ``widgets``.

    Each item is a ``QWidget`` or a magicgui widget (its ``.native`` is added).
    """
    from superqt import QCollapsible

    group = QCollapsible(title, expandedIcon="▼", collapsedIcon="▶")
    group.setDuration(0)  # no animation: the scroll area's size follows at once
    for widget in widgets:
        group.addWidget(getattr(widget, "native", widget))
    if expanded:
        group.expand(animate=False)
    else:
        group.collapse(animate=False)
    return group
