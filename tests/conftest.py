"""Fixtures shared by the whole suite."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for modules of tiny tensors: intra-op threads only add overhead there, and on a busy 2-core
    machine two threads wait on each other (the demo net ran 2-5x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
