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
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Cancelled",
    "RunControl",
    "ProgressFn",
    "CancelFn",
    "status_of",
    "STAGE_UNITS",
    "unit_of",
    "format_duration",
    "ProgressClock",
]

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


#: The unit each pipeline stage counts ``done`` / ``total`` in (every progress bar names it).
STAGE_UNITS = {
    "explain": "images",
    "peppr": "image forwards",
    "deletion": "image forwards",
    "sag": "images",
    "sanity": "randomisation steps",
    "permutations": "permutations",
    "regions": "labels",
    "features": "images",
    "concept maps": "images",
    "train": "training steps",
}


def unit_of(stage: str) -> str:
    """The unit of a stage's progress (:data:`STAGE_UNITS`; ``"steps"`` for any other stage)."""
    return STAGE_UNITS.get(stage, "steps")


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 10 min``: a time left as people read it."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ProgressClock:
    """What a progress line says: stage, done / total with its unit, percent and the time left.

    The time left is the stage's mean rate since its first report (a resumed run's earlier work is not counted as
    speed) applied to what is left; it is unknown until the stage has advanced once.

    Parameters
    ----------
    clock : callable() -> float, optional
        Seconds (default :func:`time.monotonic`; tests pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.stage: str | None = None
        self._start: tuple[float, int] = (0.0, 0)
        self._last: tuple[float, int] = (0.0, 0)
        self.total = 0

    def update(self, done: int, total: int, stage: str) -> None:
        """Record one report (a new stage starts its own clock)."""
        now = self.clock()
        if stage != self.stage or done < self._last[1]:
            self.stage, self._start = stage, (now, int(done))
        self._last, self.total = (now, int(done)), int(total)

    def remaining(self) -> float | None:
        """Seconds left in the current stage, or None while the rate is unknown."""
        (t0, d0), (t1, d1) = self._start, self._last
        if d1 <= d0 or t1 <= t0:
            return None
        return (self.total - d1) * (t1 - t0) / (d1 - d0)

    def text(self, done: int, total: int, stage: str) -> str:
        """Record the report and say it: ``"peppr: 2,017 / 4,673 image forwards · 43 % · about 1 min 20 s left"``.

        A stage of one step (``0 / 1``: preparing layers, joining a cluster) is said by its name alone.
        """
        self.update(done, total, stage)
        if total <= 1:
            return f"{stage}…" if done < max(total, 1) else f"{stage}: done"
        left = self.remaining()
        if done >= total:
            when = "done"
        elif left is None:
            when = "estimating time left"
        else:
            when = f"about {format_duration(left)} left"
        return f"{stage}: {done:,} / {total:,} {unit_of(stage)} · {100 * done // total} % · {when}"
