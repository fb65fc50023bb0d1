"""An explain results store opens in napari as lazy (dask over Zarr) layers whose values are the store's."""

import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai._layers import IMAGE_MAPS_KEY, map_layer_name
from napari_global_xai._reader import napari_get_reader, read_aligned_stack, read_explain_layers
from napari_global_xai.config import ExplainConfig
from napari_global_xai.data import AlignedStack
from napari_global_xai.explain.pipeline import run_explain
from napari_global_xai.models import LoadedModel, ModelCard

H, W, N = 20, 30, 5
LABELS = ["near", "far"]


class ThreeLayerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


@pytest.fixture
def store(tmp_path):
    torch.manual_seed(2)
    card = ModelCard(
        name="t",
        labels=LABELS,
        weights="unused.pt",
        format="torchscript",
        input_channels=[0, 1, 2],
        input_size=[H, W],
        harmonise_laterality=False,
    )
    model = LoadedModel(ThreeLayerNet(), card, torch.device("cpu"))
    pixels = np.random.default_rng(4).integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    stack = AlignedStack(
        pixels, [f"s{i}" for i in range(N)], laterality=np.array(["L"] * N), labels=None, sources=["<memory>"] * N
    )
    result = run_explain(
        stack, model, ExplainConfig(method="saliency", subset="all", chunk_size=2), out_dir=tmp_path / "out"
    )
    return tmp_path / "out", result


def test_reader_takes_the_store_and_the_output_folder(store):
    out, _ = store
    assert napari_get_reader(str(out)) is read_explain_layers  # not the image-folder reader (global_maps.png)
    assert napari_get_reader(str(out / "image_maps.zarr")) is read_explain_layers
    assert napari_get_reader(str(out / "image_maps.zarr" / "records")) is not read_aligned_stack


def test_store_opens_lazily_in_the_viewer_with_the_stored_values(store, make_napari_viewer):
    import dask.array as da
    import zarr

    out, result = store
    viewer = make_napari_viewer()
    viewer.open(str(out / "image_maps.zarr"), plugin="napari-global-xai")
    names = [layer.name for layer in viewer.layers]
    assert names == [f"{n} · saliency" for n in [*LABELS, "overall"]] + ["std · saliency", "image-wise · saliency"]
    assert names == [map_layer_name("global", "saliency", n) for n in [*LABELS, "overall"]] + [
        map_layer_name("std", "saliency"),
        map_layer_name("image-wise", "saliency"),
    ]
    root = zarr.open_group(str(out / "image_maps.zarr"), mode="r")
    scale = root.attrs["napari_global_xai"]["map_scale"]
    maps_layer = viewer.layers["image-wise · saliency"]
    assert isinstance(maps_layer.data, da.Array) and not isinstance(maps_layer.data, np.ndarray)
    assert maps_layer.data.shape == (len(LABELS), N, H, W)
    assert maps_layer.data.chunksize == (len(LABELS), 1, H, W)  # one image per chunk: napari reads what it shows
    stored = root["maps/0"][...].astype(np.float32) / np.float32(scale)
    np.testing.assert_array_equal(np.asarray(maps_layer.data), stored.transpose(1, 0, 2, 3))
    meta = maps_layer.metadata[IMAGE_MAPS_KEY]
    assert meta["labels"] == LABELS and meta["computed"].all() and meta["computed"].shape == (N, len(LABELS))
    for i, name in enumerate([*LABELS, "overall"]):
        layer = viewer.layers[f"{name} · saliency"]
        assert isinstance(layer.data, da.Array)
        np.testing.assert_array_equal(np.asarray(layer.data), root["global/0"][i])
        expected = result.global_maps.get(name).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(layer.data), expected)
    assert viewer.layers["overall · saliency"].visible and not maps_layer.visible


def test_a_tiff_results_folder_opens_through_the_same_reader(tmp_path):
    """--format tiff: the same layers (memmap and numpy, not dask), names and values as from the store."""
    from napari_global_xai.explain.result import open_explain

    torch.manual_seed(2)
    card = ModelCard(
        name="t",
        labels=LABELS,
        weights="unused.pt",
        format="torchscript",
        input_channels=[0, 1, 2],
        input_size=[H, W],
        harmonise_laterality=False,
    )
    model = LoadedModel(ThreeLayerNet(), card, torch.device("cpu"))
    pixels = np.random.default_rng(4).integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    stack = AlignedStack(pixels, [f"s{i}" for i in range(N)], laterality=np.array(["L"] * N), labels=None)
    config = ExplainConfig(method="saliency", subset="all", chunk_size=2)
    result = run_explain(stack, model, config, out_dir=tmp_path / "tif", out_format="tiff")
    assert napari_get_reader(str(tmp_path / "tif")) is read_explain_layers
    layers = read_explain_layers(str(tmp_path / "tif"))
    assert [kwargs["name"] for _, kwargs, _ in layers] == [f"{n} · saliency" for n in [*LABELS, "overall"]] + [
        "std · saliency",
        "image-wise · saliency",
    ]
    for i, name in enumerate([*LABELS, "overall"]):
        np.testing.assert_array_equal(layers[i][0], result.global_maps.get(name).astype(np.float32))
    maps, kwargs, _ = layers[-1]
    np.testing.assert_array_equal(maps, np.asarray(result.image_maps).transpose(1, 0, 2, 3))
    assert kwargs["metadata"][IMAGE_MAPS_KEY]["computed"].all()
    assert open_explain(tmp_path / "tif").image_ids == stack.image_ids
