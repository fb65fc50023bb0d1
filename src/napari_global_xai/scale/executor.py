"""The Dask executor: chunk tasks of explain, PEPPR and SAG on a cluster, behind the runs' executor seam.

:class:`DaskExecutor` implements ``map_chunks(task, pending, cancel, on_maps)`` of :mod:`napari_global_xai.chunks`.
The run's task (an :class:`~napari_global_xai.explain.task.ExplainChunkTask`, a PEPPR
:class:`~napari_global_xai.peppr.task.CurveChunkTask` or a SAG
:class:`~napari_global_xai.sag.task.SagChunkTask`; any :class:`~napari_global_xai.chunks.ShippedTask`) is
shipped without its model and stack (a :class:`RemoteChunkTask` holding a :class:`~.specs.ModelSpec` and a
:class:`~.specs.StackSpec` instead), each worker rebuilds it once (model loaded once per worker, engine or scorer
built once), and every chunk is one Dask task returning the chunk's result. Results come back as chunks finish, at
most a window of tasks in flight (:func:`~.submit.stream_tasks`); the run writes and merges them as with the
in-process executor, so the results are the same (explain's global maps bit-identical: the accumulator is exact and
order independent; PEPPR's per-image scores bit-identical, its AUROCs computed once on the client).

Cancel stops submitting, cancels the tasks in flight and returns: the finished chunks are already with the run.
A worker lost mid-run is survived: the scheduler re-runs its tasks elsewhere (the task is a pure function of the
chunk number), so the results are the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .specs import ModelSpec, StackSpec, _cached, worker_model, worker_stack

__all__ = ["DaskExecutor", "RemoteChunkTask"]


@dataclass(frozen=True)
class RemoteChunkTask:
    """A chunk task as it travels to the workers: the task without model and stack, plus their specs."""

    shell: object
    model: ModelSpec
    stack: StackSpec
    token: str

    @classmethod
    def from_task(cls, task, model_spec: ModelSpec | None = None) -> RemoteChunkTask:
        import cloudpickle

        model_spec = model_spec or ModelSpec.from_model(task.model)
        stack_spec = StackSpec.from_stack(task.stack)
        shell = task.detach()
        digest = hashlib.sha1(cloudpickle.dumps(shell))
        digest.update(f"{model_spec.token}/{stack_spec.token}".encode())
        return cls(shell, model_spec, stack_spec, digest.hexdigest())

    def build(self):
        """The task with this worker's model and stack (its engine is built on the first chunk)."""
        return self.shell.attach(worker_model(self.model), worker_stack(self.stack))


def run_remote_chunk(remote: RemoteChunkTask, chunk: int):
    """Worker side: chunk ``chunk`` of the (once per worker rebuilt) task."""
    task = _cached("task", remote.token, remote.build)
    return task(chunk)


class DaskExecutor:
    """Run chunk tasks on a Dask cluster (the ``executor`` of ``run_explain``, ``run_peppr_pipeline``, ``run_sag``).

    Parameters
    ----------
    client : distributed.Client
    device : str, optional
        Device on the workers (default: the model's device type; ``"auto"`` lets each worker take its GPU).
    torch_threads : int, optional
        ``torch.set_num_threads`` on each worker.
    window : int, optional
        Most chunk tasks in flight (default two per worker thread plus one).
    """

    def __init__(self, client, device: str | None = None, torch_threads: int | None = None, window: int | None = None):
        self.client = client
        self.device = device
        self.torch_threads = torch_threads
        self.window = window

    def map_chunks(
        self,
        task,
        pending: Sequence[int],
        cancel: Callable[[], bool] | None = None,
        on_maps: Callable[[int, int, int], None] | None = None,
    ) -> Iterator:
        """Yield each pending chunk's result as it finishes.

        ``on_maps`` is not called (maps are computed on the workers; the run counts each chunk's maps when its
        result arrives).
        """
        from ..batching import Cancelled
        from .submit import stream_tasks

        if cancel is not None and cancel():
            return
        spec = ModelSpec.from_model(task.model, device=self.device, torch_threads=self.torch_threads)
        remote = self.client.submit(_identity, RemoteChunkTask.from_task(task, spec), pure=False)
        try:
            for _chunk, _future, result in stream_tasks(
                self.client,
                lambda c: self.client.submit(run_remote_chunk, remote, int(c), pure=False),
                pending,
                cancel=cancel,
                window=self.window,
            ):
                yield result
        except Cancelled:
            return
        finally:
            self.client.cancel([remote])


def _identity(value):
    """A task that returns its argument: the remote task lives on the cluster (re-made if its worker is lost)."""
    return value
