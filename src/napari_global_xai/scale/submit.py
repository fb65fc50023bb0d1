"""Run many chunk tasks on a Dask cluster with progress, cancel and a bounded number in flight.

:func:`stream_tasks` submits one task per chunk, at most ``window`` at a time (so results never pile up on the
workers faster than the client takes them), and yields each result as it completes, in completion order. Cancel is
checked after every result and every :data:`POLL_S` seconds while waiting: pending futures are cancelled, nothing
more is submitted, and the results yielded so far stay valid (the caller keeps them). A worker lost mid-run is
handled by the scheduler, which re-runs its tasks on the remaining (or restarted) workers; tasks are pure functions
of their inputs, so the re-run gives the same result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

__all__ = ["stream_tasks", "default_window", "POLL_S"]

#: Seconds between looks at the run's cancel while no task has finished: a cancel stops a cluster run this soon,
#: however long a chunk takes (a chunk of IG maps of a large model can take minutes).
POLL_S = 0.1


def default_window(client) -> int:
    """Tasks in flight: two per worker thread plus one (each worker has the next chunk queued), at least 2."""
    try:
        threads = sum(client.nthreads().values())
    except Exception:  # noqa: BLE001 - a scheduler that does not answer: the minimum
        threads = 1
    return max(2, 2 * threads + 1)


def stream_tasks(
    client,
    submit: Callable[[object], object],
    items: Iterable,
    cancel: Callable[[], bool] | None = None,
    window: int | None = None,
) -> Iterator[tuple[object, object, object]]:
    """Yield ``(item, future, result)`` for every item, as the tasks complete.

    Parameters
    ----------
    client : distributed.Client
    submit : callable(item) -> distributed.Future
        Submits one item's task.
    items : iterable
        Work items (e.g. chunk index arrays); consumed lazily, ``window`` ahead of the results.
    cancel : callable() -> bool, optional
        Asked after each result and every :data:`POLL_S` s while waiting for one. When it returns True, the
        in-flight futures are cancelled and the generator raises
        :class:`~napari_global_xai.batching.Cancelled` (the results yielded before stay with the caller).
    window : int, optional
        Most tasks in flight (default :func:`default_window`).

    Yields
    ------
    (item, future, result)
        The future is yielded so the caller can hand it to further tasks (a tree reduction) before releasing it.

    Raises
    ------
    Cancelled
        On cancel.
    Exception
        A task's own error, re-raised here (after the other in-flight tasks are cancelled).
    """
    from distributed import as_completed

    from ..batching import Cancelled

    window = window or default_window(client)
    source = iter(items)
    owner: dict = {}
    pending = as_completed(loop=client.loop)  # this client's loop: it need not be Dask's default client

    def top_up() -> None:
        while len(owner) < window:
            try:
                item = next(source)
            except StopIteration:
                return
            future = submit(item)
            owner[future.key] = (item, future)
            pending.add(future)

    def stop() -> None:
        futures = [f for _, f in owner.values()]
        owner.clear()
        pending.clear()
        if futures:
            client.cancel(futures)

    def cancelled() -> None:
        if cancel is not None and cancel():
            stop()
            raise Cancelled("cancelled; the chunks finished so far are kept")

    top_up()
    try:
        while owner:
            if not pending.has_ready():  # nothing back yet: look at cancel every POLL_S, not only per chunk
                cancelled()
                time.sleep(POLL_S)
                continue
            future = next(pending)
            item, _ = owner.pop(future.key)
            try:
                result = future.result()
            except BaseException:
                stop()
                raise
            yield item, future, result
            cancelled()
            top_up()
    except GeneratorExit:  # the caller stopped reading: nothing keeps running for it
        stop()
        raise
