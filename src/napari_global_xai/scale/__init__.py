"""Scale past one process: Dask clusters, picklable model / stack specs, chunk tasks, tree reduction.

``cluster`` parses ``--cluster local[:N]`` / ``--scheduler ADDR`` and connects; ``specs`` ships the model and the
stack to workers by reference (each opened once per worker); ``submit`` streams chunk tasks with progress and cancel;
``reduce`` merges accumulator partials in a tree; ``executor`` is the Dask executor of an explain run. The embedded
default (no cluster) imports none of this and needs no ``distributed``.
"""

from .cluster import ClusterError, ClusterSpec, connect, parse_cluster

__all__ = ["ClusterError", "ClusterSpec", "connect", "parse_cluster"]
