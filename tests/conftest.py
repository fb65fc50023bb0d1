"""Fixtures shared by the whole suite."""

import os

import pytest
import torch

# pytest-xdist runs one worker per core (pyproject addopts): each worker takes its share of the cores for torch's
# intra-op threads, so the workers do not oversubscribe the machine (tests that compare thread counts set their own).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, _CORES // _WORKERS))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for modules of tiny tensors: intra-op threads only add overhead there, and on a busy 2-core
    machine two threads wait on each other (the demo net ran 2-5x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
