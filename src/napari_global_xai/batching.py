"""Batch sizes and out-of-memory back-off, decided in one place for every pipeline.

On CPU, big batches do not pay (methods.md §4: batch 8–20 was 13–42 % slower per image than batch 1 on 2 cores for
a ResNet-18; the demo net is fastest around 8 images per pass), so the CPU default is a small fixed number of images
per pass. On CUDA the batch is sized from free memory and a measured per-image cost, and halved on out-of-memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from .control import Cancelled

__all__ = ["Cancelled", "is_out_of_memory", "images_per_pass", "measure_bytes_per_image", "iterate_batches"]

CPU_IMAGES_PER_PASS = 8


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors (the back-off trigger)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def measure_bytes_per_image(run_one: Callable[[int], object], device: torch.device, probe: int = 2) -> int | None:
    """Peak accelerator memory of ``run_one(probe)`` divided by ``probe``; None on CPU/MPS (not measurable)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run_one(probe)
    torch.cuda.synchronize(device)
    return max(1, (torch.cuda.max_memory_allocated(device) - before) // probe)


def images_per_pass(device: torch.device, bytes_per_image: int | None = None, memory_fraction: float = 0.5,
                    cap: int = 256) -> int:
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
    """
    if device.type != "cuda" or not bytes_per_image:
        return CPU_IMAGES_PER_PASS if device.type == "cpu" else 32
    free, _total = torch.cuda.mem_get_info(device)
    return int(max(1, min(cap, free * memory_fraction // bytes_per_image)))


def iterate_batches(items: Sequence | int, batch_size: int, run: Callable[[slice], object],
                    on_done: Callable[[slice, object], None] | None = None,
                    cancel: Callable[[], bool] | None = None) -> Iterator[tuple[slice, object]]:
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
            continue
        if on_done is not None:
            on_done(sl, result)
        yield sl, result
        start = sl.stop
