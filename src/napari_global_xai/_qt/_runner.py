"""Run a core pipeline in a napari thread worker with a progress bar and a Run/Cancel button.

Every dock uses :class:`RunPanel`: it owns the button, the progress bar and the status line, and hands the job one
:class:`~napari_global_xai.control.RunControl` (the run contract): ``progress(done, total, stage)`` becomes a queued
Qt signal (the worker thread never touches widgets) and the Cancel button sets the control's
:class:`threading.Event`. Results and errors arrive in the main thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

__all__ = ["RunPanel", "LayerFeeder", "add_layers", "after", "BREATH_MS"]

#: Pause (ms) between two pieces of main-thread work a result hands over (a layer, a filled-images layer): the event
#: loop goes idle in between, so the canvas's repaint, the user's input and timers get their turn. With 0 the next
#: piece was posted before a timer's turn came, so a 50 ms timer's gap spanned two pieces (and their repaints).
BREATH_MS = 30


#: Shortest interval between two progress repaints, s: a worker may report hundreds of batches a second, and each
#: report repaints the window (composited through OpenGL when the viewer's canvas is in it: tens to hundreds of ms
#: on a software renderer); later reports within the interval are shown together, the last one always
PROGRESS_INTERVAL_S = 0.25


class _Bridge(QObject):
    progress = Signal(int, int, str)


class RunPanel(QWidget):
    """Run/Cancel button + progress bar + status line for one background job at a time.

    Signals (emitted in the main thread, after the dock handled the outcome): ``succeeded(result)``,
    ``failed(exception)`` and ``stopped()`` at the end of every run.

    Parameters
    ----------
    run_text : str
        Label of the button while idle.
    """

    succeeded = Signal(object)
    failed = Signal(object)
    stopped = Signal()

    def __init__(self, run_text: str = "Run", parent=None):
        super().__init__(parent)
        self.run_text = run_text
        self.button = QPushButton(run_text)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.button)
        row.addWidget(self.bar, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self._pending = None  # the latest progress report not shown yet
        self._shown_at = -float("inf")  # time.monotonic() of the last progress shown
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.timeout.connect(self._show_pending)
        self._cancel_event = threading.Event()
        self.clock = None  # the run's ProgressClock (unit, percent, time left)
        self.worker = None
        self._start: Callable | None = None
        self.button.clicked.connect(self._on_click)

    # --- public -----------------------------------------------------------------------------------------------
    def set_start(self, start: Callable[[], None]) -> None:
        """``start()`` is called when the idle button is clicked; it calls :meth:`launch`."""
        self._start = start

    @property
    def running(self) -> bool:
        return self.worker is not None

    def progress_callback(self, done: int, total: int, stage: str) -> None:
        """Thread-safe: the progress of :meth:`control`."""
        self._bridge.progress.emit(int(done), int(total), str(stage))

    def control(self):
        """The :class:`~napari_global_xai.control.RunControl` of this panel's runs (progress bar, Cancel button)."""
        from ..control import RunControl

        return RunControl(progress=self.progress_callback, cancel=self._cancel_event)

    def cancel(self) -> None:
        if self.running:
            self._cancel_event.set()
            self.status.setText("cancelling… (finished work is kept)")

    def launch(self, function: Callable, on_result: Callable, on_error: Callable | None = None, **kwargs):
        """Run ``function(**kwargs, control=RunControl)`` in a thread worker; returns the worker.

        ``on_result(result)`` and ``on_error(exc)`` run in the main thread.
        """
        from napari.qt.threading import create_worker

        from ..control import ProgressClock

        self._cancel_event.clear()
        self.clock = ProgressClock()
        kwargs["control"] = self.control()
        worker = create_worker(function, _start_thread=False, _ignore_errors=True, **kwargs)
        worker.errored.connect(self._drop_pending)  # first: a late progress report must not cover the outcome
        worker.returned.connect(self._on_returned)
        worker.returned.connect(on_result)
        worker.returned.connect(self.succeeded.emit)
        worker.errored.connect(on_error or self._default_error)
        worker.errored.connect(self.failed.emit)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.button.setText("Cancel")
        self.bar.setRange(0, 0)  # busy until the first progress report
        self.status.setText("starting…")
        worker.start()
        return worker

    # --- slots ------------------------------------------------------------------------------------------------
    def _on_click(self):
        if self.running:
            self.cancel()
        elif self._start is not None:
            self._start()

    def _on_progress(self, done, total, stage):
        """Show a report now, or with the next ones after at most :data:`PROGRESS_INTERVAL_S` (one repaint)."""
        self._pending = (done, total, stage)
        wait = self._shown_at + PROGRESS_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self._show_pending()
        elif not self._progress_timer.isActive():
            self._progress_timer.start(int(wait * 1000) + 1)

    def _drop_pending(self, *_):
        self._progress_timer.stop()
        self._pending = None

    def _show_pending(self):
        if self._pending is None:
            return
        (done, total, stage), self._pending = self._pending, None
        self._shown_at = time.monotonic()
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(min(done, max(total, 1)))
        if self.clock is None:
            from ..control import ProgressClock

            self.clock = ProgressClock()
        self.status.setText(self.clock.text(done, total, stage))  # unit, percent and time left

    def _on_returned(self, _result):
        """A run that was not cancelled is done: a full bar (its last stage, e.g. preparing layers, reports 0/1)."""
        self._drop_pending()
        if not self._cancel_event.is_set():
            self.bar.setRange(0, 1)
            self.bar.setValue(1)

    def _on_finished(self):
        self._drop_pending()
        self.worker = None
        self.button.setText(self.run_text)
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
        self.stopped.emit()

    def _default_error(self, exc):
        from napari.utils.notifications import show_error

        self.status.setText(f"error: {exc}")
        show_error(str(exc))


class LayerFeeder(QObject):
    """Add prepared layer data tuples one per event-loop turn, :data:`BREATH_MS` apart, so the viewer never freezes
    while results arrive.

    Adding a 384×512 image layer costs about 60 ms of main-thread time (vispy node and texture); adding eight in one
    slot would block the viewer for half a second. ``done`` is emitted after the last layer.
    """

    done = Signal()

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self._queue: list = []
        self._timer = QTimer(self)  # a child: it goes with the dock, so no layer arrives after the dock was closed
        self._timer.setSingleShot(True)
        self._timer.setInterval(BREATH_MS)
        self._timer.timeout.connect(self._next)

    def feed(self, layer_data: list) -> None:
        self._queue.extend(layer_data)
        if not self._timer.isActive():
            self._timer.start()

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    def _next(self):
        if not self._queue:
            return
        add_layers(self.viewer, [self._queue.pop(0)])
        if self._queue:
            self._timer.start()
        else:
            self.done.emit()


def after(owner: QObject, ms: int, fn) -> None:
    """Call ``fn`` in ``ms`` milliseconds unless ``owner`` (a dock) is deleted first: the timer is ``owner``'s child,
    so work handed over in pieces never runs on a closed dock's deleted widgets."""
    timer = QTimer(owner)
    timer.setSingleShot(True)
    timer.timeout.connect(fn)
    timer.timeout.connect(timer.deleteLater)
    timer.start(ms)


def add_layers(viewer, layer_data: list[tuple]) -> list:
    """Add layer data tuples, replacing layers of the same name; returns the layers."""
    from napari.layers import Layer

    added = []
    for data, kwargs, kind in layer_data:
        if kwargs["name"] in viewer.layers:
            viewer.layers.remove(kwargs["name"])
        added.append(viewer.add_layer(Layer.create(data, kwargs, kind)))
    return added
