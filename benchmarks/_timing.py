"""Timing helpers shared by the benchmark scripts."""

import time

import torch


def sync(device=None) -> None:
    """Wait for queued accelerator work (CUDA, MPS) so that wall times include it."""
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()


def timed(fn, device=None) -> float:
    """Wall time of one ``fn()`` call, accelerator work included."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def best_of(fn, repeats: int = 3) -> float:
    """Minimum wall time of ``fn()`` over ``repeats`` calls after one untimed warm-up (CUDA synchronised)."""
    fn()
    return min(timed(fn) for _ in range(repeats))


def replay_passes(
    module, x: torch.Tensor, n_forward: int, n_backward: int, forward_batch: int, backward_batch: int, target: int = 0
) -> float:
    """Wall time of ``n_forward`` plain forwards and ``n_backward`` forward+backward passes to the input of images
    like ``x[0]`` at the given batch sizes (the remainder as one smaller batch), timed as a whole.

    This is a method's floor measured as sustained throughput: the same passes it made, without anything else, so
    the comparison sees the machine in the same state as the run it is compared with (single-pass minimum timings
    are optimistic on a shared machine).
    """

    def batches(n, b):
        return [b] * (n // b) + ([n % b] if n % b else [])

    sizes = set(batches(n_forward, forward_batch) + batches(n_backward, backward_batch))
    inputs = {b: x[:1].expand(b, *x.shape[1:]).contiguous(memory_format=torch.channels_last) for b in sizes}

    def run():
        with torch.no_grad():
            for b in batches(n_forward, forward_batch):
                module(inputs[b])
        for b in batches(n_backward, backward_batch):
            xi = inputs[b].clone().requires_grad_(True)
            torch.autograd.grad(module(xi)[:, target].sum(), xi)

    return timed(run, x.device)
