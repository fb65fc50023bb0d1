"""Where the work runs: the embedded default (this process), a LocalCluster, or an existing Dask scheduler.

One place parses the user's choice (``--cluster local[:N]`` / ``--scheduler tcp://HOST:PORT``, or the same strings
from a dock) into a :class:`ClusterSpec`, and one context manager, :func:`connect`, turns it into a
``distributed.Client`` (or ``None`` for the embedded default, which needs no cluster and no ``distributed``).

Notes
-----
A LocalCluster gets one thread per worker (``threads_per_worker=1``): the model passes are already parallel inside
torch, and one task per worker keeps every worker's memory at one chunk. Its default worker count is
:data:`DEFAULT_LOCAL_WORKERS` (two, the smallest number that actually distributes); give ``local:N`` for more.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import UsageError

__all__ = [
    "ClusterSpec",
    "ClusterError",
    "ClusterSpecError",
    "parse_cluster",
    "connect",
    "EMBEDDED",
    "DEFAULT_LOCAL_WORKERS",
    "CONNECT_TIMEOUT_S",
    "WORKER_CONFIG",
    "require_distributed",
]

#: The spec string of the default: in this process, no cluster.
EMBEDDED = "embedded"
#: Workers of ``--cluster local`` without a count.
DEFAULT_LOCAL_WORKERS = 2
#: Seconds to wait for an existing scheduler before giving up with one line.
CONNECT_TIMEOUT_S = 10.0

#: Dask settings of a LocalCluster started here (its workers, and its scheduler, which runs in this process).
#:
#: * Dask's nannies export ``MALLOC_TRIM_THRESHOLD_=65536`` to their workers; that fixes glibc's mmap threshold, so
#:   every tensor buffer over 128 KiB is mapped and unmapped anew: torch then spent 1.6x the CPU time of the same
#:   chunk in a plain process (measured: 1.9 s against 1.15 s for 19 chunks of 16 images). The thread limits are
#:   kept; the statistical profiler (a stack sample of every worker thread each 10 ms) is switched off.
#: * Dask's housekeeping timers (event-loop tick 20 ms, memory monitors 100 ms, work stealing 100 ms, system monitor
#:   500 ms) are slowed to 1-5 s: with defaults an idle ``local:1`` cluster used 0.52 s (this process) + 0.36 s
#:   (worker) of CPU per 20 s, 4.4 % of a core that a run pays for its whole wall time; with these 0.11 + 0.06 s.
#:   Chunks take seconds to minutes, so nothing here needs a faster tick.
WORKER_CONFIG = {
    "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1},
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.nanny.memory-monitor-interval": "1s",
    "distributed.scheduler.work-stealing-interval": "1s",
}

_LOCAL = re.compile(r"^local(?::(\d+))?$")
_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/]+(:\d+)?/?$")


class ClusterError(ValueError):
    """A cluster that cannot be used (``distributed`` missing, scheduler unreachable); one line, CLI exit 1."""


class ClusterSpecError(ClusterError, UsageError):
    """A ``--cluster`` / ``--scheduler`` value that is not a spec; one line, CLI exit 2."""


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run.

    Attributes
    ----------
    kind : {"embedded", "local", "scheduler"}
    n_workers : int
        Workers of a LocalCluster (0 otherwise).
    address : str
        Scheduler address of ``kind="scheduler"`` (``""`` otherwise).
    """

    kind: str = EMBEDDED
    n_workers: int = 0
    address: str = ""

    @property
    def distributed(self) -> bool:
        """Whether the work goes to Dask workers (False for the embedded default)."""
        return self.kind != EMBEDDED

    def __str__(self) -> str:
        if self.kind == "local":
            return f"local:{self.n_workers}"
        return self.address if self.kind == "scheduler" else EMBEDDED


def parse_cluster(cluster: str | None = None, scheduler: str | None = None) -> ClusterSpec:
    """The :class:`ClusterSpec` of ``--cluster`` / ``--scheduler`` (both None: the embedded default).

    Parameters
    ----------
    cluster : str, optional
        ``"embedded"``, ``"local"`` or ``"local:N"`` (N >= 1 worker processes on this machine), or a scheduler
        address (``tcp://HOST:PORT``), accepted here too so a dock needs one field.
    scheduler : str, optional
        Address of a running scheduler, ``tcp://HOST:PORT`` (also ``tls://``, ``ws://``, ``inproc://``).

    Returns
    -------
    ClusterSpec

    Raises
    ------
    ClusterSpecError
        Both given, or a spec that is none of the above (one line naming what is accepted).
    """
    if cluster is not None and scheduler is not None:
        raise ClusterSpecError("give either --cluster or --scheduler, not both")
    if scheduler is not None:
        return _scheduler_spec(scheduler.strip())
    text = (cluster or EMBEDDED).strip().lower()
    if text == EMBEDDED:
        return ClusterSpec()
    match = _LOCAL.match(text)
    if match:
        n = int(match.group(1)) if match.group(1) else DEFAULT_LOCAL_WORKERS
        if n < 1:
            raise ClusterSpecError(f"cluster spec {cluster!r} asks for {n} workers; 'local:N' needs N >= 1")
        return ClusterSpec("local", n_workers=n)
    if "://" in text:
        return _scheduler_spec(cluster.strip())
    raise ClusterSpecError(
        f"unknown cluster spec {cluster!r}; use 'embedded' (this process), 'local' or 'local:N' "
        "(N worker processes here) or a scheduler address 'tcp://HOST:PORT'"
    )


def _scheduler_spec(address: str) -> ClusterSpec:
    if not _ADDRESS.match(address):
        raise ClusterSpecError(f"scheduler address {address!r} is not of the form tcp://HOST:PORT")
    return ClusterSpec("scheduler", address=address)


def require_distributed():
    """Import ``distributed``, or raise :class:`ClusterError` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            "running on a Dask cluster needs the 'distributed' package: pip install 'napari-global-xai[cluster]'"
        ) from None
    return distributed


@contextlib.contextmanager
def connect(spec: ClusterSpec | str | None, timeout: float | None = None, **local_kwargs) -> Iterator:
    """A ``distributed.Client`` for ``spec`` for the duration of the block (None for the embedded default).

    A LocalCluster started here is shut down at the end; a joined scheduler is only disconnected from. The client is
    not made Dask's default scheduler: only the chunk tasks the executor submits go to the cluster, while the
    stack's own lazy reads (dask arrays computed in this process) stay here, as in an embedded run.

    Parameters
    ----------
    spec : ClusterSpec, str or None
        A string is parsed with :func:`parse_cluster` (as ``--cluster``).
    timeout : float, optional
        Seconds to wait for an existing scheduler (default :data:`CONNECT_TIMEOUT_S`).
    **local_kwargs
        Passed to ``distributed.LocalCluster`` (e.g. ``processes=False`` in tests); defaults: one thread per
        worker, no dashboard, worker processes.

    Yields
    ------
    distributed.Client or None

    Raises
    ------
    ClusterError
        ``distributed`` missing, or the scheduler cannot be reached within ``timeout`` (one line with the address).
    """
    spec = spec if isinstance(spec, ClusterSpec) else parse_cluster(spec)
    if not spec.distributed:
        yield None
        return
    distributed = require_distributed()
    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
    if spec.kind == "local":
        options = {
            "n_workers": spec.n_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": ":0",
            "silence_logs": 40,
            **local_kwargs,
        }
        import dask

        with (
            dask.config.set(WORKER_CONFIG),
            distributed.LocalCluster(**options) as cluster,
            distributed.Client(cluster, set_as_default=False) as client,
        ):
            yield client
        return
    try:
        client = distributed.Client(spec.address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {spec.address} within {timeout:g} s "
            f"({type(exc).__name__}); is it running, and is the address right?"
        ) from None
    try:
        yield client
    finally:
        client.close()
