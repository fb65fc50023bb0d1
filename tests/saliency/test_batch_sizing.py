"""GPU batch sizing without a GPU: injected memory figures, a planted per-image cost, out-of-memory back-off."""

import numpy as np
import pytest
import torch

from napari_global_xai.batching import (
    CPU_IMAGES_PER_PASS,
    UNMEASURED_IMAGES_PER_PASS,
    images_per_pass,
    measure_bytes_per_image,
)
from napari_global_xai.config import ExplainConfig
from napari_global_xai.saliency.engine import ImageMapEngine

from .conftest import PASS_TERMS, H, W, make_tiny_stack
from _tolerance import float32_atol, mass_normalised_terms


class PlantedMemory:
    """Memory figures of a pretend device: every forward pass of k images allocates k * ``per_image`` bytes."""

    def __init__(self, free, per_image, allocated=123_456):
        self._free, self.per_image, self.allocated = free, per_image, allocated
        self.high = allocated
        self.passes = []

    def watch(self, module):
        def hook(_module, inputs, _output):
            self.passes.append(len(inputs[0]))
            self.high = max(self.high, self.allocated + len(inputs[0]) * self.per_image)

        return module.register_forward_hook(hook)

    def free(self):
        return self._free

    def reset_peak(self):
        self.high = self.allocated
        return self.allocated

    def peak(self):
        return self.high


def test_images_per_pass_from_free_memory_and_defaults():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    memory = PlantedMemory(free=10_000, per_image=100)
    assert images_per_pass(cuda, 100, memory=memory) == 50  # half of the free memory / per image
    assert images_per_pass(cuda, 100, memory_fraction=0.25, memory=memory) == 25
    assert images_per_pass(cuda, 100, cap=16, memory=memory) == 16
    assert images_per_pass(cuda, 10**9, memory=memory) == 1  # never zero
    assert images_per_pass(cpu) == CPU_IMAGES_PER_PASS
    assert images_per_pass(cuda, None, memory=memory) == UNMEASURED_IMAGES_PER_PASS
    assert measure_bytes_per_image(lambda k: None, cpu) is None  # CPU: nothing to measure


@pytest.mark.parametrize("method,params,passes", [("saliency", {}, 1), ("ig", {"n_steps": 4}, 4)])
def test_engine_measures_once_and_sizes_batches_from_free_memory(method, params, passes, tiny_model, one_torch_thread):
    per_image, free = 7_000, 7_000 * 40  # room for 20 images at the default half of free memory
    memory = PlantedMemory(free, per_image)
    handle = memory.watch(tiny_model.module)
    try:
        engine = ImageMapEngine(tiny_model, ExplainConfig(method=method, params=params), [0, 1], memory=memory)
        probe_passes = list(memory.passes)
        stack = make_tiny_stack(n=4)
        engine.compute(stack.get(range(4)), np.ones((4, 2), bool))
    finally:
        handle.remove()
    assert engine.bytes_per_image == per_image  # the planted cost, from one probe pass of PROBE_IMAGES images
    assert ImageMapEngine.PROBE_IMAGES in probe_passes
    assert engine.images_per_pass == 20
    assert engine.maps_per_call == 20 // passes
    if method == "ig":
        assert engine.method.params["internal_batch_size"] == 20
    assert memory.passes.count(ImageMapEngine.PROBE_IMAGES) == probe_passes.count(ImageMapEngine.PROBE_IMAGES)


def test_out_of_memory_halves_the_batch_keeps_every_map_and_remembers(tiny_model, one_torch_thread):
    stack = make_tiny_stack(n=6)
    pixels, pairs = stack.get(range(6)), np.ones((6, 3), bool)
    reference = ImageMapEngine(tiny_model, ExplainConfig(method="saliency", maps_per_call=1), [0, 1, 2])
    expected = reference.compute(pixels, pairs)

    limit = 3

    def refuse_big(_module, inputs):
        if len(inputs[0]) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    memory = PlantedMemory(free=10**9, per_image=1_000)  # sized to 256 maps per call: far too many
    engine = ImageMapEngine(tiny_model, ExplainConfig(method="saliency"), [0, 1, 2], memory=memory)
    handle = tiny_model.module.register_forward_pre_hook(refuse_big)
    try:
        assert engine.maps_per_call > limit
        done = np.zeros((6, 3), bool)
        got = engine.compute(pixels, pairs, done=done)
    finally:
        handle.remove()
    assert done.all()
    assert engine.maps_per_call <= limit  # the next chunk starts at the size that fitted
    # batches of up to 3 against 1: equal to float32 rounding of a gradient pass (PASS_TERMS) and the mass
    # normalisation, derived (tests/_tolerance.py; was rtol=1e-5, atol=1e-9)
    atol = float32_atol(np.abs(expected).max(), mass_normalised_terms(PASS_TERMS, H * W))
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
