"""Issue #22, parts 4-5: PEPPR fraction endpoints on every path, one list of input image extensions, valid JSON.

Everything is built here: a tiny 2-label model class of this file (registered as a state_dict architecture), a
10-image RGB stack with a labels CSV in which one label has a single class (its AUROC is NaN), a model card and a
global-maps TIFF.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from data.test_readers import write_dicom
from torch import nn

from napari_global_xai.aggregate import GlobalMaps
from napari_global_xai.cli import main
from napari_global_xai.data.readers import write_stack_tiff

H, W, N = 16, 20, 10
LABELS = ["drusen", "scar"]
USER_FRACTIONS = (0.1, 0.35)  # neither endpoint given


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, len(LABELS))

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _strict_loads(text: str):
    """json.loads that refuses NaN / Infinity / -Infinity (which are not JSON)."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def inputs(tmp_path, one_torch_thread):
    """``in/`` with stack.tif (+ stack.csv: ``scar`` is 0 for every image), card.json, net.pt and global_maps.tif."""
    from napari_global_xai.explain.file_formats import write_global_maps_tiff
    from napari_global_xai.models.architectures import register_architecture

    register_architecture("named-bugs-net")(TinyNet)
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    ids = [f"P{i:03d}" for i in range(N)]
    write_stack_tiff(folder / "stack.tif", rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8), ids)
    rows = ["image,drusen,scar"] + [f"{ids[i]},{i % 2},0" for i in range(N)]
    (folder / "stack.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(2)
    torch.save(TinyNet().state_dict(), folder / "net.pt")
    card = {
        "name": "tiny",
        "labels": LABELS,
        "weights": "net.pt",
        "format": "state_dict",
        "architecture": "named-bugs-net",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }
    (folder / "card.json").write_text(json.dumps(card))
    maps = rng.random((2, H, W))
    gm = GlobalMaps(LABELS, maps, np.zeros_like(maps), np.array([5, 5]), maps.mean(0), list(LABELS))
    write_global_maps_tiff(gm, folder / "global_maps.tif")
    return folder


# ------------------------------------------------------------------------------------------------ 1. fractions


def test_peppr_fraction_grid_and_areas_are_the_same_from_the_cli_and_the_api(inputs, tmp_path, capsys):
    from napari_global_xai.config import PepprConfig
    from napari_global_xai.data import read_stack
    from napari_global_xai.explain.result import open_explain
    from napari_global_xai.models import load_model
    from napari_global_xai.peppr import run_peppr_pipeline

    folder = inputs
    expected = (0.0, *USER_FRACTIONS, 1.0)
    assert PepprConfig(fractions=USER_FRACTIONS).fractions == expected
    assert PepprConfig(fractions=(0, 0.5, 1)).fractions == (0.0, 0.5, 1.0)  # nothing added when both are given

    cli_out = tmp_path / "cli"
    argv = ["peppr", str(folder / "stack.tif"), "--model", str(folder / "card.json")]
    argv += ["--global-maps", str(folder / "global_maps.tif"), "--out", str(cli_out), "--random-seeds", "1"]
    argv += ["--device", "cpu", "--quiet", "--fractions", *map(str, USER_FRACTIONS)]
    assert main(argv) == 0, capsys.readouterr().err
    assert "note: added fraction(s) 0, 1" in capsys.readouterr().out
    cli = json.loads((cli_out / "peppr_summary.json").read_text())

    api_out = tmp_path / "api"
    stack, model = read_stack(folder / "stack.tif"), load_model(folder / "card.json", device="cpu")
    gm = open_explain(folder / "global_maps.tif").global_maps
    result = run_peppr_pipeline(
        stack, model, gm, PepprConfig(fractions=USER_FRACTIONS, random_seeds=1), out_dir=api_out
    )
    api = json.loads((api_out / "peppr_summary.json").read_text())

    assert tuple(result.fractions) == expected
    assert tuple(cli["fractions"]) == tuple(api["fractions"]) == expected
    # the areas are normalised trapezoids over the grid: with 0 and 1 on both, the runs agree number for number
    assert cli["summary"] == api["summary"] and cli["table"] == api["table"]
    areas = [row for row in api["table"] if row.get("A_erase") is not None]
    assert areas, api["table"]
    curve = result.curves["overall"]
    want = np.trapezoid(curve.curve("erase", "drusen"), result.fractions)  # the fraction axis spans 0..1
    assert api["summary"]["overall"]["drusen"]["A_erase"] == pytest.approx(want)


def test_the_peppr_dock_builds_the_same_fraction_grid(inputs):
    pytest.importorskip("magicgui")
    from napari_global_xai._qt.peppr_widget import _parse_fractions, peppr_job
    from napari_global_xai.config import PepprConfig
    from napari_global_xai.data import read_stack
    from napari_global_xai.errors import UsageError
    from napari_global_xai.explain.result import open_explain

    folder = inputs
    text = ", ".join(map(str, USER_FRACTIONS))
    gm = open_explain(folder / "global_maps.tif").global_maps
    result, _ = peppr_job(
        read_stack(folder / "stack.tif"),
        str(folder / "card.json"),
        "cpu",
        {"overall": gm.overall},
        None,
        PepprConfig(fractions=_parse_fractions(text), fill="zero", random_seeds=1),
    )
    assert tuple(result.fractions) == (0.0, *USER_FRACTIONS, 1.0)
    with pytest.raises(UsageError, match="strictly increasing"):  # refused as on the CLI, not silently sorted
        _parse_fractions("0.5, 0.1")


# ------------------------------------------------------------------------------------------------ 2. extensions


def test_the_manifest_offers_exactly_the_data_layers_stack_files_and_stores():
    import yaml

    import napari_global_xai
    from napari_global_xai.data.image_files import IMAGE_EXTENSIONS, STACK_FILE_EXTENSIONS

    manifest = yaml.safe_load((Path(napari_global_xai.__file__).parent / "napari.yaml").read_text())
    (reader,) = manifest["contributions"]["readers"]
    # single files: the multi-image formats (a lone PNG/JPEG is one image, left to napari's own reader); folders
    # (accepts_directories) of any IMAGE_EXTENSIONS file; *.zarr: an explain results store
    assert reader["filename_patterns"] == [f"*{e}" for e in STACK_FILE_EXTENSIONS] + ["*.zarr"]
    assert reader["accepts_directories"] is True
    assert set(STACK_FILE_EXTENSIONS) <= set(IMAGE_EXTENSIONS) and ".dicom" in STACK_FILE_EXTENSIONS


def test_a_dicom_file_is_read_by_the_napari_reader_and_the_stack_loader(tmp_path):
    from napari_global_xai._reader import napari_get_reader
    from napari_global_xai.data import read_stack

    frames = np.random.default_rng(3).integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    path = write_dicom(tmp_path / "scan.DICOM", frames)
    np.testing.assert_array_equal(read_stack(path).get(slice(None)), frames)
    reader = napari_get_reader(str(path))
    assert reader is not None
    (data, kwargs, kind), *rest = reader(str(path))
    assert kind == "image" and not rest
    np.testing.assert_array_equal(np.asarray(data), frames)  # all left eyes (unknown laterality): not mirrored

    folder = tmp_path / "folder"
    folder.mkdir()
    for i, frame in enumerate(frames):
        write_dicom(folder / f"im{i}.dicom", frame[None])
    stack = read_stack(folder)
    assert stack.image_ids == ["im0", "im1", "im2"]
    np.testing.assert_array_equal(stack.get(slice(None)), frames)
    assert napari_get_reader(str(folder)) is not None


# ------------------------------------------------------------------------------------------------ 3. JSON


def test_save_json_writes_valid_json_with_nan_as_null(tmp_path):
    from napari_global_xai.io_utils import save_json

    data = {
        "auroc": float("nan"),
        "gain": np.float32("inf"),
        "loss": -math.inf,
        "curve": np.array([0.5, np.nan, 1.0]),
        "count": np.int64(3),
        "where": tmp_path,
        "rows": ({"x": np.float64("nan")},),
    }
    save_json(tmp_path / "s.json", data)
    got = _strict_loads((tmp_path / "s.json").read_text())
    assert got == {
        "auroc": None,
        "gain": None,
        "loss": None,
        "curve": [0.5, None, 1.0],
        "count": 3,
        "where": str(tmp_path),
        "rows": [{"x": None}],
    }


def test_global_maps_tiff_metadata_is_valid_json(tmp_path):
    import tifffile

    from napari_global_xai.explain.file_formats import write_global_maps_tiff
    from napari_global_xai.explain.result import open_explain

    maps = np.ones((2, 4, 5))
    gm = GlobalMaps(LABELS, maps, maps, np.array([1, 0]), maps[0], ["drusen"], {"threshold": float("nan")})
    write_global_maps_tiff(gm, tmp_path / "gm.tif", provenance={"auroc": np.float64("nan")})
    with tifffile.TiffFile(tmp_path / "gm.tif") as tif:
        meta = _strict_loads(tif.pages[0].description)
    assert meta["metadata"] == {"threshold": None} and meta["provenance"] == {"auroc": None}
    assert open_explain(tmp_path / "gm.tif").global_maps.labels == LABELS


def test_every_json_file_of_a_peppr_run_with_a_nan_auroc_is_valid_json(inputs, tmp_path, capsys):
    folder = inputs
    out = tmp_path / "peppr"
    argv = ["peppr", str(folder / "stack.tif"), "--model", str(folder / "card.json")]
    argv += ["--global-maps", str(folder / "global_maps.tif"), "--out", str(out), "--random-seeds", "1"]
    argv += ["--device", "cpu", "--quiet", "--fractions", "0", "0.5", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    files = sorted(out.rglob("*.json"))
    assert files
    for path in files:
        _strict_loads(path.read_text())
    summary = _strict_loads((out / "peppr_summary.json").read_text())
    assert summary["summary"]["overall"]["scar"]["full"] is None  # one class: AUROC undefined, written as null
    assert summary["summary"]["overall"]["drusen"]["full"] is not None


def test_model_card_is_written_as_valid_json(tmp_path):
    from napari_global_xai.models.card import ModelCard

    card = ModelCard(name="c", labels=["a"], weights="w.pt", architecture="x", mean=[np.float32(0.5)], std=[1.0])
    card.to_json(tmp_path / "card.json")
    data = _strict_loads((tmp_path / "card.json").read_text())
    assert data["mean"] == [0.5] and ModelCard.from_json(tmp_path / "card.json").mean == [0.5]
