"""``global-xai peppr`` cancelled after its first chunk of images: the finished images' result is written, marked.

Built here: a two-logit model class (registered as a state_dict architecture) that presses Ctrl-C on its third
8-image batch, a 28-image stack (PEPPR reads 16 images per chunk on the CPU) with a labels CSV, and a model card.
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai.cli import main
from napari_global_xai.data.readers import write_stack_tiff
from napari_global_xai.models.architectures import register_architecture

H, W, N = 16, 24, 28


class CtrlCNet(nn.Module):
    """Two logits from two channels; sends SIGINT (what Ctrl-C does) on its third forward of exactly 8 images."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)
        self.full_batches = 0

    def forward(self, x):
        if len(x) == 8:
            self.full_batches += 1
            if self.full_batches == 3:  # chunk 1 = two 8-image batches; this is chunk 2's first batch
                os.kill(os.getpid(), signal.SIGINT)
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


register_architecture("peppr-ctrl-c-net")(CtrlCNet)


@pytest.fixture
def folder(tmp_path, one_torch_thread):
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    ids = [f"S{i:02d}" for i in range(N)]
    write_stack_tiff(tmp_path / "stack.tif", pixels, ids)
    rows = ["image,laterality,a,b"] + [f"{ids[i]},L,{i % 2},{int(i % 3 == 0)}" for i in range(N)]
    (tmp_path / "stack.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    torch.save(CtrlCNet().state_dict(), tmp_path / "net.pt")
    (tmp_path / "card.json").write_text(
        json.dumps(
            {
                "name": "ctrl-c",
                "labels": ["a", "b"],
                "weights": "net.pt",
                "format": "state_dict",
                "architecture": "peppr-ctrl-c-net",
                "input_channels": [0, 1],
                "mean": [0.5, 0.5],
                "std": [0.25, 0.25],
            }
        )
    )
    maps = np.zeros((3, H, W), np.float32)
    maps[:, 4:10, 6:14] = 1.0
    return tmp_path, maps


def test_peppr_cancelled_after_the_first_chunk_writes_the_finished_images_marked(folder, capsys):
    from napari_global_xai.aggregate import GlobalMaps
    from napari_global_xai.explain.file_formats import write_global_maps_tiff

    path, maps = folder
    gm = GlobalMaps(["a", "b"], maps[:2], np.zeros_like(maps[:2]), np.array([3, 3]), maps[2], ["a", "b"])
    write_global_maps_tiff(gm, path / "global_maps.tif")
    out = path / "peppr"
    code = main(
        [
            "peppr",
            str(path / "stack.tif"),
            "--model",
            str(path / "card.json"),
            "--global-maps",
            str(path / "global_maps.tif"),
            "--out",
            str(out),
            "--fractions",
            "0",
            "1",
            "--random-seeds",
            "1",
            "--quiet",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 130 and "Traceback" not in err
    assert err.splitlines()[-1] == (
        "global-xai peppr: cancelled: partial result (16 of 28 images) written, marked CANCELLED"
    )
    summary = json.loads((out / "peppr_summary.json").read_text())
    assert summary["status"] == "CANCELLED" and summary["n_images"] == 16 and summary["n_requested"] == 28
    assert (out / "peppr_curves.csv").exists() and not list(out.glob("*.tif"))
