"""The run contract in the analyses pipelines: one RunControl (progress with a stage, cancel from a threading.Event),
a result dataclass with ``.cancelled`` that keeps what finished, and the frame decided from the model card."""

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai.analyses.compare_pipeline import run_compare
from napari_global_xai.analyses.regions_pipeline import run_regions
from napari_global_xai.analyses.regions_result import RegionsResult
from napari_global_xai.analyses.sanity_pipeline import run_sanity
from napari_global_xai.analysis_config import CompareConfig, RegionsConfig, SanityConfig
from napari_global_xai.config import ExplainConfig
from napari_global_xai.control import RunControl
from napari_global_xai.data import AlignedStack

H, W = 13, 17  # shapes the project does not use


class _OddNet(nn.Module):
    """Two input channels, three outputs, and a left-right asymmetric first layer (so frames matter)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, (3, 5), padding=(1, 2))
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def _model(harmonise: bool):
    from napari_global_xai.models.card import LoadedModel, ModelCard

    torch.manual_seed(3)
    card = ModelCard(
        name="odd",
        weights="unused.pt",
        format="pickle",
        labels=["p", "q", "r"],
        input_channels=[0, 1],
        mean=[0.4, 0.4],
        std=[0.2, 0.2],
        pixel_scale=255.0,
        input_size=None,
        cam_layer="conv",
        harmonise_laterality=harmonise,
    )
    return LoadedModel(_OddNet(), card, torch.device("cpu"))


def _stack(frame: str = "stored") -> AlignedStack:
    pixels = np.random.default_rng(7).integers(0, 255, size=(4, H, W, 2), dtype=np.uint8)
    return AlignedStack(pixels, [f"im{i}" for i in range(4)], laterality=np.array(["L", "R", "R", "L"]), frame=frame)


def _cancel_after_first_report():
    """A RunControl whose Event the first progress report sets, and the reports it saw."""
    event, seen = threading.Event(), []

    def progress(done, total, stage):
        seen.append((done, total, stage))
        event.set()

    return RunControl(progress=progress, cancel=event), seen


def test_sanity_returns_its_dataclass_and_a_cancel_keeps_the_finished_steps(tmp_path):
    model = _model(harmonise=True)
    config = SanityConfig(methods=[ExplainConfig(method="saliency")], n_images=3)
    full = run_sanity(_stack(), model, config, out_dir=tmp_path / "full")
    assert dataclasses.is_dataclass(full) and not full.cancelled
    assert len(full.steps) == len(full.layers) + 1 == 3  # original, head, conv
    control, seen = _cancel_after_first_report()
    part = run_sanity(_stack(), model, config, out_dir=tmp_path / "part", control=control)
    assert part.cancelled and len(part.steps) < len(full.steps)
    assert seen[0][2] == "sanity" and seen[0][0] == 1
    # what finished equals the uncancelled run's first steps
    np.testing.assert_allclose(part.spearman["saliency"], full.spearman["saliency"][: len(part.steps)])
    assert json.loads((tmp_path / "part" / "sanity.json").read_text())["cancelled"] is True


def test_sanity_frame_comes_from_the_card_not_from_the_stack_it_is_given():
    config = SanityConfig(methods=["saliency"], images=[0, 1, 2])
    for harmonise in (True, False):
        model = _model(harmonise)
        maps = [run_sanity(_stack(frame), model, config).original_maps["saliency"] for frame in ("stored", "left")]
        np.testing.assert_array_equal(maps[0], maps[1])
    # and the two cards really differ on the right eyes (image 1, 2), not on the left one
    left, stored = (
        run_sanity(_stack(), _model(h), SanityConfig(methods=["saliency"], images=[0, 1])).original_maps["saliency"]
        for h in (True, False)
    )
    np.testing.assert_allclose(left[0], stored[0])
    assert not np.allclose(left[1], stored[1])


def test_compare_returns_its_dataclass_and_a_cancel_keeps_the_finished_permutations(tmp_path):
    rng = np.random.default_rng(4)
    maps = rng.normal(size=(14, H, W))
    maps[:7, 2:6, 3:9] += 2.0
    values = ["a"] * 7 + ["b"] * 7
    regions = np.zeros((H, W), np.int64)
    regions[2:6, 3:9] = 1
    config = CompareConfig(n_permutations=1000)
    full = run_compare(maps, values, config, column="g", regions=regions, region_names={1: "box"})
    assert dataclasses.is_dataclass(full) and not full.cancelled and full.n_permutations == 1000
    assert full.by_region[0]["region"] == "box" and full.by_region[0]["n_significant"] > 0
    control, seen = _cancel_after_first_report()
    part = run_compare(maps, values, config, column="g", out_dir=tmp_path, control=control)
    assert part.cancelled and part.n_permutations == seen[0][0] < 1000 and seen[0][2] == "permutations"
    np.testing.assert_allclose(part.difference, full.difference)  # the statistic does not depend on the test
    assert json.loads((tmp_path / "compare_summary.json").read_text())["cancelled"] is True


def test_regions_returns_its_dataclass_and_a_cancel_keeps_the_finished_labels(tmp_path):
    regions = np.zeros((H, W), np.int64)
    regions[:, :8] = 1
    regions[:, 8:] = 2
    maps = {name: np.random.default_rng(k).random((3, H, W)) for k, name in enumerate(("u", "v", "w"))}
    no_boot = RegionsConfig(n_boot=0)
    full = run_regions(maps, no_boot, regions=regions, region_names={1: "west", 2: "east"})
    assert isinstance(full, RegionsResult) and not full.cancelled and [t.label for t in full.tables] == ["u", "v", "w"]
    control, seen = _cancel_after_first_report()
    part = run_regions(
        maps, no_boot, regions=regions, region_names={1: "west", 2: "east"}, out_dir=tmp_path, control=control
    )
    assert part.cancelled and [t.label for t in part.tables] == ["u"] and seen == [(1, 3, "regions")]
    west = part.tables[0].row("west")
    mean_map = maps["u"].mean(0)
    assert west["mass_share"] == pytest.approx(mean_map[:, :8].sum() / mean_map.sum())  # independent definition
    assert west["area_share"] == pytest.approx(8 / W) and west["mass_share"] == full.tables[0].row("west")["mass_share"]
    summary = json.loads((tmp_path / "regions_summary.json").read_text())
    assert summary["cancelled"] is True and list(summary["highest_enrichment"]) == ["u"]


def test_a_cancel_callable_goes_in_the_control_and_the_old_keywords_are_gone():
    stop = threading.Event()
    stop.set()
    maps = {"u": np.ones((2, H, W))}
    regions = np.ones((H, W), np.int64)
    no_boot = RegionsConfig(n_boot=0)
    assert run_regions(maps, no_boot, regions=regions, control=RunControl(cancel=stop.is_set)).cancelled
    with pytest.raises(TypeError, match="cancel"):
        run_regions(maps, no_boot, regions=regions, control=RunControl(), cancel=stop.is_set)
