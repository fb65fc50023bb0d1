"""The scale tests' own model and stack (a little two-output network saved as TorchScript with its own card, and a
multi-page TIFF with a labels CSV, so Dask workers reopen the stack by reference, not as pickled pixels), and two
run callbacks: one kills a worker mid-run, one cancels after the first chunk."""

import json
import time

import numpy as np
import tifffile
import torch
from torch import nn

from napari_global_xai.data import read_stack
from napari_global_xai.models import load_model

N, H, W = 12, 40, 56
LABELS = ["ring", "bar"]


class RingBarNet(nn.Module):
    """Two outputs read from a small conv trunk; CAM layer ``trunk.2``."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 6, 5, padding=2), nn.Tanh(), nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU()
        )
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.trunk(x).amax(dim=(2, 3)))


def write_inputs(folder):
    """Model file, card, stack TIFF and labels CSV in ``folder``; returns ``folder``."""
    torch.manual_seed(3)
    torch.jit.script(RingBarNet().eval()).save(str(folder / "ringbar.pt"))
    (folder / "ringbar.json").write_text(
        json.dumps(
            {
                "weights": "ringbar.pt",
                "labels": LABELS,
                "mean": [0.5, 0.5, 0.5],
                "std": [0.25, 0.25, 0.25],
                "cam_layer": "trunk.2",
            }
        )
    )
    rng = np.random.default_rng(11)
    images = rng.integers(0, 255, size=(N, H, W, 3), dtype=np.uint8)
    tifffile.imwrite(folder / "stack.tif", images, photometric="rgb")
    rows = ["image,laterality,ring,bar"] + [f"stack_{i:04d},{'LR'[i % 2]},{i % 2},{int(i % 3 == 0)}" for i in range(N)]
    (folder / "stack.csv").write_text("\n".join(rows) + "\n")
    return folder


def load_inputs(folder):
    """``(stack, model)`` loaded afresh from ``folder`` (CPU)."""
    model = load_model(folder / "ringbar.json", device="cpu")
    stack = read_stack(folder / "stack.tif", labels=folder / "stack.csv", label_names=model.labels)
    return stack, model


async def _exit_soon():  # on a worker: the process ends a moment after answering (no clean shutdown)
    import asyncio
    import os

    asyncio.get_running_loop().call_later(0.05, os._exit, 1)


class WorkerKiller:
    """A run's ``progress`` callback that kills one worker process when the first chunk's result has arrived."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.victim = sorted(cluster.scheduler_info()["workers"])[0]
        self.killed = False

    def __call__(self, done, total, stage=None):
        if done > 0 and not self.killed:
            self.killed = True
            self.cluster.run(_exit_soon, workers=[self.victim])

    def victim_gone(self) -> bool:
        """Wait until the scheduler has dropped the victim (its nanny starts a new worker); True when it did."""
        deadline = time.monotonic() + 600  # hang guard only: the scheduler notices a dead worker within seconds
        while self.victim in self.cluster.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.victim not in self.cluster.scheduler_info()["workers"]


class CancelAfterFirstChunk:
    """``progress`` and ``cancel`` of a run that the user cancels as soon as the first chunk's result arrives."""

    def __init__(self):
        self.done = 0

    def progress(self, done, total, stage=None):
        self.done = done

    def cancel(self) -> bool:
        return self.done > 0
