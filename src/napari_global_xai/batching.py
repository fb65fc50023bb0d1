"""Batch sizes and out-of-memory back-off, decided in one place for every pipeline.

On CPU, big batches do not pay (methods.md §4: batch 8–20 was 13–42 % slower per image than batch 1 on 2 cores for
a ResNet-18; the demo net is fastest around 8 images per pass), so the CPU default is a small fixed number of images
per pass. On CUDA the batch is sized from free memory and a per-image cost measured once (one probe pass, see
:class:`~napari_global_xai.saliency.engine.ImageMapEngine`), and halved on out-of-memory (remembered for later
batches through ``on_backoff``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from .control import Cancelled

__all__ = [
    "Cancelled",
    "is_out_of_memory",
    "images_per_pass",
    "measure_bytes_per_image",
    "iterate_batches",
    "memory_probe",
    "CudaMemory",
    "to_device",
]

CPU_IMAGES_PER_PASS = 8
#: Images per pass on an accelerator before (or without) a memory measurement.
UNMEASURED_IMAGES_PER_PASS = 32


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors (the back-off trigger)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class CudaMemory:
    """Accelerator memory figures of one CUDA device (what :func:`memory_probe` gives on CUDA).

    Tests inject a stand-in with the same three methods to check the batch sizing without a GPU.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def free(self) -> int:
        """Bytes free on the device now."""
        return int(torch.cuda.mem_get_info(self.device)[0])

    def reset_peak(self) -> int:
        """Wait for queued work and reset the peak counter; returns the bytes allocated now."""
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return int(torch.cuda.memory_allocated(self.device))

    def peak(self) -> int:
        """Wait for queued work; the most bytes allocated since :meth:`reset_peak`."""
        torch.cuda.synchronize(self.device)
        return int(torch.cuda.max_memory_allocated(self.device))


def memory_probe(device: torch.device):
    """The memory figures of ``device`` (:class:`CudaMemory`), or None where they cannot be measured (CPU, MPS)."""
    return CudaMemory(device) if device.type == "cuda" else None


def measure_bytes_per_image(
    run_one: Callable[[int], object], device: torch.device, probe: int = 2, memory=None
) -> int | None:
    """Peak accelerator memory of ``run_one(probe)`` divided by ``probe``; None where it cannot be measured.

    Parameters
    ----------
    run_one : callable(k)
        One model pass (forward and, for gradient methods, backward) over ``k`` images.
    device : torch.device
    probe : int
        Images in the measured pass.
    memory : object, optional
        Memory figures (``reset_peak()``, ``peak()``); default :func:`memory_probe` of ``device``.
    """
    memory = memory if memory is not None else memory_probe(device)
    if memory is None:
        return None
    before = memory.reset_peak()
    run_one(probe)
    return max(1, (memory.peak() - before) // probe)


def images_per_pass(
    device: torch.device, bytes_per_image: int | None = None, memory_fraction: float = 0.5, cap: int = 256, memory=None
) -> int:
    """How many images to push through the model at once.

    Parameters
    ----------
    device : torch.device
    bytes_per_image : int, optional
        Measured activation memory per image (see :func:`measure_bytes_per_image`).
    memory_fraction : float
        Share of the currently free accelerator memory the batch may use.
    cap : int
        Upper bound.
    memory : object, optional
        Memory figures (``free()``); default :func:`memory_probe` of ``device``.

    Returns
    -------
    int
        ``free * memory_fraction // bytes_per_image`` clipped to ``[1, cap]`` when the cost was measured; else
        :data:`CPU_IMAGES_PER_PASS` on CPU and :data:`UNMEASURED_IMAGES_PER_PASS` on an accelerator.

    Notes
    -----
    Half the free memory (not all of it) leaves room for the allocator's fragmentation and for what a method keeps
    between passes (IG's summed gradients, I-GOS's masks); the out-of-memory back-off of :func:`iterate_batches`
    covers what the estimate misses.
    """
    memory = memory if memory is not None else memory_probe(device)
    if memory is None or not bytes_per_image:
        return CPU_IMAGES_PER_PASS if device.type == "cpu" else UNMEASURED_IMAGES_PER_PASS
    return int(max(1, min(cap, memory.free() * memory_fraction // bytes_per_image)))


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; to CUDA through pinned host memory with an asynchronous copy.

    Notes
    -----
    A pinned source lets the copy run by DMA without blocking the host, so the host prepares the next batch while
    the device copies and computes (the copy is queued on the current stream, before the kernels that read it).
    """
    if device.type != "cuda" or x.device.type != "cpu":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def iterate_batches(
    items: Sequence | int,
    batch_size: int,
    run: Callable[[slice], object],
    on_done: Callable[[slice, object], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_backoff: Callable[[int], None] | None = None,
) -> Iterator[tuple[slice, object]]:
    """Run ``run(slice)`` over consecutive slices of ``items``, halving the batch on out-of-memory.

    Finished batches are never recomputed: after an out-of-memory error only the failing batch is retried, smaller.

    Parameters
    ----------
    items : sequence or int
        What is batched (only its length is used).
    batch_size : int
        Starting batch size.
    run : callable(slice) -> result
    cancel : callable() -> bool, optional
        Checked before each batch; when it returns True, :class:`Cancelled` is raised.
    on_backoff : callable(int), optional
        Told the new batch size after each out-of-memory halving (so a caller starts its next call there).

    Yields
    ------
    (slice, result)
    """
    n = items if isinstance(items, int) else len(items)
    start, size = 0, max(1, int(batch_size))
    while start < n:
        if cancel is not None and cancel():
            raise Cancelled(f"cancelled after {start} of {n} items")
        sl = slice(start, min(n, start + size))
        try:
            result = run(sl)
        except Exception as exc:  # noqa: BLE001 - only OOM is handled, everything else re-raised
            if not is_out_of_memory(exc) or size == 1:
                raise
            size = max(1, size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if on_backoff is not None:
                on_backoff(size)
            continue
        if on_done is not None:
            on_done(sl, result)
        yield sl, result
        start = sl.stop
