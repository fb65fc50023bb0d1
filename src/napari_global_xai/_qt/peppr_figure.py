"""The PEPPR figure's own window: curves, summary table and filmstrip at a readable size, beside the viewer.

In a ~490 px napari dock the figure was unreadable (table text about 5 px, thumbnails about 40 × 30 px). The window
holds the themed canvas (napari-matplotlib) at a size where the table text is at least
:data:`~napari_global_xai.peppr.drawing.TABLE_FONT_PT` points and every thumbnail at least :data:`MIN_THUMB_PX`
pixels; it can be enlarged or maximised like any window, and scrolls when the screen is smaller than the figure.
The PEPPR dock (:mod:`._qt.peppr_widget`) owns it, fills it and opens it when a result arrives.
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import Container, FloatSlider, PushButton
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget

__all__ = ["PepprFigureWindow", "MIN_FIGURE_PX", "MIN_THUMB_PX", "swap_filmstrip", "save_figure_png"]

#: Smallest canvas (width, height) in pixels: below it the window scrolls instead of shrinking the figure.
MIN_FIGURE_PX = (1040, 860)
#: Smallest longer side a filmstrip thumbnail is drawn at, in screen pixels (the dock asserts it in a test).
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
        from matplotlib.layout_engine import PlaceHolderLayoutEngine
        from napari_matplotlib.base import BaseNapariMPLWidget

        self.setWindowTitle("PEPPR figure")
        self.plot = BaseNapariMPLWidget(napari_viewer)
        self.plot.setMinimumSize(*MIN_FIGURE_PX)
        # the figure's own grid places curves, legend, table and filmstrip (as in the saved PNG); napari-matplotlib's
        # constrained layout would squeeze the curves to make room for the table's text. Not "none": after constrained
        # layout that keeps refusing subplots_adjust (a warning per draw, and the filmstrip's margins not applied)
        self.plot.figure.set_layout_engine(PlaceHolderLayoutEngine(adjust_compatible=True, colorbar_gridspec=True))
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


def swap_filmstrip(handles, drawn, strip) -> bool:
    """Put ``strip`` (another image's filmstrip) into the figure where ``drawn`` is drawn: the filmstrip image's
    pixels and the image number in the strip's title, nothing rebuilt. False (nothing changed) unless both strips
    have the same rows, fractions, map and thumbnail size; the caller then draws the figure anew.

    Rebuilding the figure for each image held the viewer's main thread for 0.4-0.6 s per move of the image slider;
    swapping leaves only the canvas's repaint.
    """
    import numpy as np

    from ..peppr.drawing import filmstrip_mosaic

    if handles is None or drawn is None or handles.strip_image is None:
        return False
    same = (
        [title for title, _ in drawn.rows] == [title for title, _ in strip.rows]
        and np.array_equal(drawn.fractions, strip.fractions)
        and drawn.map_name == strip.map_name
        and all(np.shape(old) == np.shape(new) for (_, old), (_, new) in zip(drawn.rows, strip.rows))
    )
    title = getattr(handles.strip_ax.figure, "_suptitle", None)  # the filmstrip's (sub)figure title
    if not same or title is None:
        return False
    handles.strip_image.set_data(filmstrip_mosaic(strip)[0])
    title.set_text(title.get_text().replace(f"image {drawn.image_index}", f"image {strip.image_index}", 1))
    return True


def save_figure_png(path, view, strip, fraction) -> Path:
    """The PEPPR figure (curves, table, filmstrip when given) as a PNG on a white background, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..io_utils import atomic_path
    from ..peppr.drawing import draw_peppr_figure

    fig = Figure(figsize=(10, 8.5 if strip is not None else 4.2), dpi=110)
    FigureCanvasAgg(fig)
    draw_peppr_figure(fig, view, strip, fraction)
    with atomic_path(path) as tmp:  # "tight": every artist in the file, the table's last column included
        fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.15)
    return Path(path)
