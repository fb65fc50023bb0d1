"""Where a dock's run goes: the "Run on" field (this process, ``local:N`` or a Dask scheduler) and the dock's cluster.

:class:`ClusterPicker` is the field every long-running dock shows (Explain, PEPPR, SAG): ``embedded`` (the default:
this process, as without the field), ``local:N`` (a LocalCluster of N worker processes on this machine) or a
scheduler address ``tcp://HOST:PORT``. The text is checked with :func:`~napari_global_xai.scale.parse_cluster`, the
parser of the CLI's ``--cluster`` / ``--scheduler``, so a dock accepts exactly what the CLI accepts; a bad value is
one line in the dock and nothing runs.

The picker owns a :class:`ClusterSession`: the ``distributed.Client`` (and the LocalCluster it started) of the
dock, made on the first run that needs it and reused by the next ones, closed when the spec changes, the dock is
destroyed or the application quits. The dock hands its job a :class:`ClusterTarget`; the job asks it for an
executor in its thread worker, so starting a LocalCluster (seconds) or waiting for a scheduler never blocks the
viewer, and the run's progress and Cancel work as in-process (progress per finished chunk; Cancel stops submitting,
the finished chunks are kept).

Notes
-----
The session is per dock (two docks on a cluster start two LocalClusters); a ``distributed.Client`` may be used from
any thread, so the client made in one run's worker thread serves the next run's worker and is closed from the main
thread.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from dataclasses import dataclass

from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QApplication, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ..config import DEFAULT_DEVICE
from ..scale.cluster import DEFAULT_LOCAL_WORKERS, EMBEDDED, ClusterError, ClusterSpec, parse_cluster

__all__ = ["ClusterPicker", "ClusterSession", "ClusterTarget", "CLUSTER_CHOICES"]

#: The choices offered in the field (any ``local:N`` or scheduler address can be typed).
CLUSTER_CHOICES = (EMBEDDED, "local:1", f"local:{DEFAULT_LOCAL_WORKERS}")
_TOOLTIP = (
    "where the run computes: 'embedded' = in napari's process (default); 'local:N' = N Dask worker processes on "
    "this machine (started on the first run, kept for the next); 'tcp://HOST:PORT' = a running Dask scheduler "
    "(its workers must see the stack's and the model's files under the same paths)"
)


class ClusterSession:
    """A dock's Dask client for one :class:`~napari_global_xai.scale.ClusterSpec`, made once and reused.

    Thread-safe: :meth:`client` runs in thread workers, :meth:`close` in the main thread.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._spec: ClusterSpec | None = None
        self._client = None
        self._exit: contextlib.ExitStack | None = None

    @property
    def spec(self) -> ClusterSpec | None:
        """The spec of the open client (None when none is open)."""
        return self._spec

    def is_open(self, spec: ClusterSpec) -> bool:
        """Whether a running client for ``spec`` is open (the next run reuses it)."""
        client = self._client
        return self._spec == spec and client is not None and getattr(client, "status", "") == "running"

    def client(self, spec: ClusterSpec, report=None):
        """The client of ``spec``: the open one, or a new one (the previous client, if any, is closed first).

        Parameters
        ----------
        spec : ClusterSpec
            A distributed spec (``local`` or ``scheduler``).
        report : callable(done, total, stage), optional
            Told when a new cluster is being started or joined.

        Raises
        ------
        ClusterError
            ``distributed`` missing, or the scheduler cannot be reached (one line).
        """
        from ..scale import connect

        with self._lock:
            if self.is_open(spec):
                return self._client
            self._close_locked()
            if report is not None:
                what = f"starting {spec.n_workers} local Dask workers" if spec.kind == "local" else f"joining {spec}"
                report(0, 1, what)
            exit_stack = contextlib.ExitStack()
            try:
                client = exit_stack.enter_context(connect(spec))
            except ClusterError:
                exit_stack.close()
                raise
            except Exception as exc:  # noqa: BLE001 - a cluster that fails to start: one line, nothing left running
                exit_stack.close()
                raise ClusterError(f"cannot start the Dask cluster {spec}: {_one_line(exc)}") from None
            self._spec, self._client, self._exit = spec, client, exit_stack
            return client

    def close(self) -> None:
        """Close the client (and shut down a LocalCluster started here); a later run makes a new one."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        exit_stack, self._exit, self._client, self._spec = self._exit, None, None, None
        if exit_stack is not None:
            with contextlib.suppress(Exception):  # a scheduler that went away: nothing left to close
                exit_stack.close()


@dataclass(frozen=True)
class ClusterTarget:
    """What a dock's job needs to run on a cluster: the dock's session, the chosen spec and the model device."""

    session: ClusterSession
    spec: ClusterSpec
    device: str = DEFAULT_DEVICE

    def executor(self, stack=None, report=None):
        """In the job's thread: the :class:`~napari_global_xai.scale.executor.DaskExecutor` of the run.

        Parameters
        ----------
        stack : AlignedStack, optional
            Checked to travel to the workers by reference (one line if it cannot), before the model loads.
        report : callable(done, total, stage), optional

        Raises
        ------
        ClusterError
            The stack cannot be sent, or the cluster cannot be reached.
        """
        if stack is not None:
            _check_stack_travels(stack)
        from ..scale.executor import DaskExecutor

        client = self.session.client(self.spec, report)
        return DaskExecutor(client, device=self.device or None)


def _check_stack_travels(stack) -> None:
    from ..scale.specs import StackSpec

    try:
        StackSpec.from_stack(stack)
    except Exception as exc:  # noqa: BLE001 - any pickling failure: one line saying what to do
        raise ClusterError(
            f"this stack cannot be sent to Dask workers ({_one_line(exc)}); choose '{EMBEDDED}' to run it in "
            "napari's process"
        ) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class ClusterPicker(QWidget):
    """The "Run on" field: ``embedded``, ``local:N`` or ``tcp://HOST:PORT``, checked as typed; owns the session.

    Attributes
    ----------
    combo : QComboBox
        Editable; offers :data:`CLUSTER_CHOICES`.
    message : QLabel
        One line: a bad spec, or the open cluster.
    session : ClusterSession

    Parameters
    ----------
    owner : QWidget, optional
        The dock: its cluster is closed when it is taken out of the viewer (napari's dock close button) or when the
        viewer window it ran in closes (also when the widget is destroyed or the application quits).
    """

    def __init__(self, owner=None, parent=None):
        super().__init__(parent)
        self._owner = owner
        self._window = lambda: None  # weak: a dock taken out of the viewer must not keep its window alive
        if owner is not None:
            owner.installEventFilter(self)
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.addItems(CLUSTER_CHOICES)
        self.combo.setCurrentText(EMBEDDED)
        self.combo.lineEdit().setPlaceholderText("embedded, local:N or tcp://HOST:PORT")
        self.combo.setToolTip(_TOOLTIP)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #ff6b6b")  # only errors are shown here
        self.message.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(QLabel("Run on:"))
        row.addWidget(self.combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.message)
        self.session = ClusterSession()
        self.combo.lineEdit().editingFinished.connect(self.check)
        self.combo.textActivated.connect(self.check)
        self.destroyed.connect(self.session.close)  # the session is a plain object: its method outlives the widget
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.session.close)

    @property
    def text(self) -> str:
        return self.combo.currentText().strip()

    @text.setter
    def text(self, value: str) -> None:
        self.combo.setCurrentText(value)
        self.check()

    def spec(self) -> ClusterSpec:
        """The chosen spec.

        Raises
        ------
        ClusterSpecError
            Not a spec (one line naming what is accepted).
        """
        return parse_cluster(self.text or EMBEDDED)

    def target(self, device: str = DEFAULT_DEVICE) -> ClusterTarget | None:
        """The job's :class:`ClusterTarget`, or None for the embedded default (the run is as without the field).

        Raises
        ------
        ClusterSpecError
            Not a spec.
        """
        spec = self.spec()
        if not spec.distributed:
            return None
        window = self.window()
        if window is not self._window() and window is not self._owner and window is not self:
            window.installEventFilter(self)  # the viewer's window, known once the dock is in it
            self._window = weakref.ref(window)
        return ClusterTarget(self.session, spec, str(device))

    def check(self, _text=None) -> bool:
        """Show a bad spec as one line under the field (cleared when the spec is good); returns whether it is."""
        try:
            self.spec()
        except ClusterError as exc:
            self._say(f"error: {exc}")
            return False
        self._say("")
        return True

    def close_cluster(self) -> None:
        """Close the dock's client and LocalCluster now (a run on another spec also replaces them)."""
        self.session.close()

    def eventFilter(self, watched, event) -> bool:
        """Close the cluster when the dock leaves the viewer or the viewer's window closes."""
        kind = event.type()
        if kind == QEvent.Type.ParentChange and watched is self._owner and watched.parent() is None:
            self.session.close()
        elif kind == QEvent.Type.Close and watched is self._window():
            self.session.close()
        return False

    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))
