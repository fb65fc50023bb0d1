"""The PEPPR run contract: the frame decided once per pipeline, PepprConfig in, partial results on cancel.

Everything is built here: a tiny left/right-asymmetric CNN, a two-channel stack with right eyes stored mirrored, and
maps drawn in the left-eye frame.
"""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai.config import PepprConfig
from napari_global_xai.control import Cancelled, RunControl
from napari_global_xai.data import AlignedStack
from napari_global_xai.models.card import LoadedModel, ModelCard
from napari_global_xai.peppr import PepprResult, run_peppr, run_peppr_pipeline

H, W = 20, 28
BOX = (slice(4, 12), slice(2, 10))  # left side of a left eye
FRACTIONS = (0, 0.1, 0.3, 0.6, 1.0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LeftBoxNet(nn.Module):
    """Scores the brightest green pixel inside a fixed box on the left: mirroring an image changes its score."""

    def __init__(self):
        super().__init__()
        mask = torch.zeros(1, 1, H, W, dtype=torch.bool)
        mask[..., BOX[0], BOX[1]] = True
        self.register_buffer("box", mask)

    def forward(self, x):
        g = torch.where(self.box, x[:, 1:2], torch.full_like(x[:, 1:2], -1e3))
        top = g.amax(dim=(1, 2, 3))
        return torch.stack([4 * top - 2, -top], dim=1)


def model(harmonise=True):
    card = ModelCard(
        name="leftbox",
        labels=["lesion", "other"],
        weights="none",
        architecture="leftbox",
        mean=[0.4, 0.4],
        std=[0.2, 0.2],
        harmonise_laterality=harmonise,
    )
    return LoadedModel(LeftBoxNet(), card, torch.device("cpu"))


def left_images(n=10, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, size=(n, H, W, 2)).astype(np.uint8)
    for i in np.nonzero(lesion(n))[0]:  # left and right eyes with a lesion in the box
        r, c = rng.integers(BOX[0].start, BOX[0].stop - 2), rng.integers(BOX[1].start, BOX[1].stop - 2)
        images[i, r : r + 2, c : c + 2, 1] = 250
    return images


def lesion(n):
    return (np.arange(n) % 4 < 2).astype(np.uint8)


def box_map():
    m = np.zeros((H, W))
    m[BOX] = 1.0
    return {"lesion": m}


def stored_stack(left):
    """Right eyes (odd images) are stored mirrored, as a camera writes them."""
    lat = np.array(["L", "R"] * (len(left) // 2))
    stored = left.copy()
    stored[lat == "R"] = stored[lat == "R"][:, :, ::-1]
    return AlignedStack(stored, [f"img{i}" for i in range(len(left))], laterality=lat), stored


def curves(res: PepprResult):
    return np.concatenate(
        [res.curves["lesion"].erase, res.curves["lesion"].restore, res.random[0].erase, res.random[0].restore]
    )


def test_pipeline_harmonises_once_and_engines_never_flip():
    left = left_images()
    stack, stored = stored_stack(left)
    m, cfg = model(), PepprConfig(fractions=FRACTIONS, random_seeds=1)
    reference = run_peppr(m, left, box_map(), None, config=cfg)  # flipped by hand: the truth
    via_pipeline = run_peppr_pipeline(stack, m, box_map(), cfg)
    # every comparison here forwards the same pixels in the same chunks and batches, same threads: the same
    # arithmetic, so atol=1e-12 (far below float32's resolution of these scores) means bit for bit; a run with other
    # batches or threads would agree only to float32 rounding (docs/reproducibility.md)
    np.testing.assert_allclose(curves(via_pipeline), curves(reference), atol=1e-12)
    # a stack already in the left-eye frame is not flipped again (by the pipeline or the engine)
    np.testing.assert_allclose(
        curves(run_peppr_pipeline(stack.to_left_eye(), m, box_map(), cfg)), curves(reference), atol=1e-12
    )
    np.testing.assert_allclose(
        curves(run_peppr(m, stack.to_left_eye(), box_map(), None, config=cfg)), curves(reference), atol=1e-12
    )
    # the engine uses the frame it is given: a stored-frame stack is read as stored, like the stored array
    as_stored = run_peppr(m, stack, box_map(), None, config=cfg)
    np.testing.assert_allclose(curves(as_stored), curves(run_peppr(m, stored, box_map(), None, config=cfg)), atol=1e-12)
    assert np.abs(curves(as_stored) - curves(reference)).max() > 0.05  # the mirrored lesions are missed
    # a card that does not harmonise: the pipeline keeps the stored frame
    plain = model(harmonise=False)
    np.testing.assert_allclose(
        curves(run_peppr_pipeline(stack, plain, box_map(), cfg)),
        curves(run_peppr(plain, stored, box_map(), None, config=cfg)),
        atol=1e-12,
    )


def test_the_config_is_the_one_door_for_settings():
    left = left_images(8, seed=1)
    truth = lesion(8)[:, None]
    cfg = PepprConfig(fractions=FRACTIONS, random_seeds=2, fill="black", include_reverse=False)
    a = run_peppr(model(), left, box_map(), truth, ["lesion"], cfg)
    # a config changed from the defaults by dataclasses.replace is the same run
    b = run_peppr(
        model(),
        left,
        box_map(),
        truth,
        ["lesion"],
        dataclasses.replace(PepprConfig(), fractions=FRACTIONS, random_seeds=2, fill="black", include_reverse=False),
    )
    assert a.table == b.table and a.fill == "black" and not a.reverse and len(a.random) == 2
    with pytest.raises(TypeError, match="unexpected keyword argument 'fill'"):  # settings go in the config only
        run_peppr(model(), left, box_map(), truth, ["lesion"], fill="black")
    with pytest.raises(ValueError, match="choose from"):
        run_peppr(model(), left, box_map(), truth, ["lesion"], PepprConfig(fill="grey"))


class CancelOnSecondChunk:
    """Pixels read chunk by chunk; asks for a cancel as soon as the second chunk is read."""

    def __init__(self, images, event):
        self.images, self.event, self.shape, self.reads = images, event, images.shape, 0

    def __getitem__(self, idx):
        self.reads += 1
        if self.reads == 2:
            self.event.set()
        return self.images[idx]


def test_cancel_returns_the_finished_images_as_a_complete_result():
    left = left_images(12, seed=2)
    truth = lesion(12)[:, None]
    stop = threading.Event()
    with pytest.raises(Cancelled) as caught:
        run_peppr(
            model(),
            CancelOnSecondChunk(left, stop),
            box_map(),
            truth,
            ["lesion"],
            PepprConfig(fractions=FRACTIONS, random_seeds=1, chunk_size=4),
            control=RunControl(cancel=stop),
        )
    part = caught.value.partial
    assert isinstance(part, PepprResult) and part.cancelled and part.n_images == 4 and part.n_requested == 12
    np.testing.assert_array_equal(part.eval_indices, [0, 1, 2, 3])
    cfg = PepprConfig(fractions=FRACTIONS, random_seeds=1)
    alone = run_peppr(model(), left[:4], box_map(), truth[:4], ["lesion"], cfg)
    # the same 4 images in one chunk, hence the same batches: bit for bit in effect (1e-12)
    np.testing.assert_allclose(curves(part), curves(alone), atol=1e-12)
    stop.set()  # cancelled before any chunk finished: nothing
    with pytest.raises(Cancelled) as caught:
        run_peppr(model(), left, box_map(), truth, ["lesion"], cfg, control=RunControl(cancel=stop))
    assert caught.value.partial is None


def test_pipeline_writes_a_cancelled_partial_result_marked(tmp_path):
    left = left_images(12, seed=3)
    stack, _ = stored_stack(left)
    stop, calls = threading.Event(), []

    def progress(done, total, stage):
        calls.append(stage)
        if len(calls) == 2:  # shared fully filled image, then the first chunk's only batch
            stop.set()

    res = run_peppr_pipeline(
        stack,
        model(),
        box_map(),
        PepprConfig(fractions=FRACTIONS, random_seeds=1, chunk_size=4, batch_size=1000),
        out_dir=tmp_path / "out",
        control=RunControl(progress=progress, cancel=stop),
    )
    assert res.cancelled and res.n_images == 4 and set(calls) == {"peppr"}
    summary = json.loads((tmp_path / "out" / "peppr_summary.json").read_text())
    assert summary["status"] == "CANCELLED" and summary["n_images"] == 4 and summary["n_requested"] == 12
    assert not list((tmp_path / "out").glob("*.tif"))
