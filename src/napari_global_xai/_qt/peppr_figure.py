"""The PEPPR figure's own window: curves, summary table and filmstrip at a readable size, beside the viewer.

In a ~490 px napari dock the figure was unreadable (table text about 5 px, thumbnails about 40 × 30 px). The window
holds the themed canvas (napari-matplotlib) at a size where the table text is at least
:data:`~napari_global_xai.peppr.drawing.TABLE_FONT_PT` points and every thumbnail at least :data:`MIN_THUMB_PX`
pixels; it can be enlarged or maximised like any window, and scrolls when the screen is smaller than the figure.
The PEPPR dock (:mod:`._qt.peppr_widget`) owns it, fills it and opens it when a result arrives.
"""

from __future__ import annotations

from magicgui.widgets import Container, FloatSlider, PushButton
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget

__all__ = ["PepprFigureWindow", "MIN_FIGURE_PX", "MIN_THUMB_PX"]

#: Smallest canvas (width, height) in pixels: below it the window scrolls instead of shrinking the figure.
MIN_FIGURE_PX = (1040, 860)
#: Smallest side a filmstrip thumbnail is drawn at, in screen pixels (the dock asserts it in a test).
MIN_THUMB_PX = 96


class PepprFigureWindow(QWidget):
    """A top-level window (child of the PEPPR dock, closed with it) with the figure, the fraction slider and the
    save buttons.

    Attributes
    ----------
    plot : napari_matplotlib.base.BaseNapariMPLWidget
    fraction : magicgui FloatSlider
    save_figure, save_data, save_report : magicgui PushButton
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent, Qt.WindowType.Window)
        from napari_matplotlib.base import BaseNapariMPLWidget

        self.setWindowTitle("PEPPR figure")
        self.plot = BaseNapariMPLWidget(napari_viewer)
        self.plot.setMinimumSize(*MIN_FIGURE_PX)
        # the figure's own grid places curves, legend, table and filmstrip (as in the saved PNG); napari-matplotlib's
        # constrained layout would squeeze the curves to make room for the table's text
        self.plot.figure.set_layout_engine("none")
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.plot)
        self.fraction = FloatSlider(label="show fraction", min=0.0, max=1.0, step=0.01, value=0.1)
        self.save_figure = PushButton(text="Save figure PNG…")
        self.save_data = PushButton(text="Save curves CSV/JSON…")
        self.save_report = PushButton(text="Report (HTML + PDF) of a results folder…")
        self.tools = Container(
            widgets=[
                self.fraction,
                Container(widgets=[self.save_figure, self.save_data, self.save_report], layout="horizontal"),
            ]
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.tools.native)
        self.resize(*self.default_size())

    def default_size(self) -> tuple[int, int]:
        """The figure's size plus the tools, within the screen's available area."""
        width, height = MIN_FIGURE_PX[0] + 40, MIN_FIGURE_PX[1] + 120
        screen = self.screen() if hasattr(self, "screen") else None
        if screen is not None:
            area = screen.availableGeometry()
            width, height = min(width, area.width() - 20), min(height, area.height() - 40)
        return width, height

    def open(self) -> None:
        """Show the window (raised, not minimised)."""
        self.show()
        self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.raise_()
