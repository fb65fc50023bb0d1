"""The run contract every long pipeline shares: progress with a stage, cancel, and partial results.

A pipeline takes one :class:`RunControl`, reports ``control.report(done, total, stage)``, calls
``control.check()`` between units of work, and on a cancel returns its result dataclass with ``cancelled=True``
(what it finished stays usable).
Where nothing usable exists yet, :class:`Cancelled` is raised and carries whatever partial result there is.

Front ends adapt to it: the CLI draws a progress bar from ``progress`` and sets a :class:`threading.Event` on
Ctrl-C; the napari docks forward ``progress`` to a thread worker's signal and cancel from the Cancel button.
No napari, Qt, tqdm or torch here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Cancelled", "RunControl", "ProgressFn", "CancelFn", "status_of"]

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]


class Cancelled(Exception):
    """A run was cancelled before it had a usable result.

    Attributes
    ----------
    partial : object or None
        What the run finished before the cancel (a pipeline's result dataclass with ``cancelled=True``, or a list
        of per-item results), when there is anything.
    """

    def __init__(self, message: str = "cancelled", partial=None):
        super().__init__(message)
        self.partial = partial


@dataclass
class RunControl:
    """Progress and cancel for one run.

    Parameters
    ----------
    progress : callable(done, total, stage), optional
        Called after every unit of work; ``stage`` names the step (``"explain"``, ``"peppr"``, ``"sag"``, ...).
    cancel : callable() -> bool or threading.Event, optional
        Polled by :meth:`cancelled` between units of work.
    """

    progress: ProgressFn | None = None
    cancel: CancelFn | threading.Event | None = None

    def report(self, done: int, total: int, stage: str) -> None:
        """Report progress (no-op without a progress callable)."""
        if self.progress is not None:
            self.progress(int(done), int(total), stage)

    def cancelled(self) -> bool:
        """True once the run should stop."""
        if self.cancel is None:
            return False
        if isinstance(self.cancel, threading.Event):
            return self.cancel.is_set()
        return bool(self.cancel())

    def check(self, message: str = "cancelled", partial=None) -> None:
        """Raise :class:`Cancelled` (carrying ``partial``) when the run should stop."""
        if self.cancelled():
            raise Cancelled(message, partial)

    def stage(self, name: str) -> Callable[[int, int], None]:
        """A two-argument ``(done, total)`` callback that reports under ``name`` (for engines below a pipeline)."""
        return lambda done, total: self.report(done, total, name)

    @property
    def cancel_fn(self) -> CancelFn | None:
        """``cancel`` as a plain callable (None when there is none), for engines that take ``cancel() -> bool``."""
        return None if self.cancel is None else self.cancelled


def status_of(cancelled: bool) -> str:
    """Provenance marker of a result: ``"CANCELLED"`` (partial, marked loudly) or ``"complete"``."""
    return "CANCELLED" if cancelled else "complete"
