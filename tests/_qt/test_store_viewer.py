"""An explain results store opens in napari as lazy (dask over Zarr) layers whose values are the store's."""

import numpy as np
import pytest
import torch

from napari_global_xai._layers import IMAGE_MAPS_KEY, MAP_SCALE_KEY, map_layer_name
from napari_global_xai._reader import napari_get_reader, read_aligned_stack, read_explain_layers
from napari_global_xai.config import ExplainConfig
from napari_global_xai.data import AlignedStack
from napari_global_xai.explain.pipeline import run_explain

from _tiny_nets import two_label_model

H, W, N = 20, 30, 5
LABELS = ["near", "far"]


@pytest.fixture
def store(tmp_path):
    torch.manual_seed(2)
    model = two_label_model(H, W, harmonise_laterality=False)
    pixels = np.random.default_rng(4).integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    stack = AlignedStack(
        pixels, [f"s{i}" for i in range(N)], laterality=np.array(["L"] * N), labels=None, sources=["<memory>"] * N
    )
    result = run_explain(
        stack, model, ExplainConfig(method="saliency", subset="all", chunk_size=2), out_dir=tmp_path / "out"
    )
    return tmp_path / "out", result, stack


def test_reader_takes_the_store_and_the_output_folder(store):
    out, _, _ = store
    assert napari_get_reader(str(out)) is read_explain_layers  # not the image-folder reader (global_maps.png)
    assert napari_get_reader(str(out / "image_maps.zarr")) is read_explain_layers
    assert napari_get_reader(str(out / "image_maps.zarr" / "records")) is not read_aligned_stack


def test_store_opens_lazily_in_the_viewer_with_the_stored_values(store, make_napari_viewer):
    import dask.array as da
    import zarr

    out, result, stack = store
    viewer = make_napari_viewer()
    viewer.open(str(out / "image_maps.zarr"), plugin="napari-global-xai")
    names = [layer.name for layer in viewer.layers]
    assert names == ["mean anatomy", "image-wise · saliency", "std · saliency"] + [
        f"{n} · saliency" for n in [*LABELS, "overall"]
    ]
    assert names[1:] == [map_layer_name("image-wise", "saliency"), map_layer_name("std", "saliency")] + [
        map_layer_name("global", "saliency", n) for n in [*LABELS, "overall"]
    ]
    assert tuple(viewer.dims.axis_labels) == ("label", "image", "y", "x")
    assert viewer.layers.selection.active.name == "overall · saliency"  # the visible map, on top
    anatomy = viewer.layers["mean anatomy"]
    assert anatomy.rgb and anatomy.visible and isinstance(anatomy.data, da.Array)
    np.testing.assert_array_equal(np.asarray(anatomy.data), stack.mean_image().round().astype(np.uint8))
    root = zarr.open_group(str(out / "image_maps.zarr"), mode="r")
    scale = root.attrs["napari_global_xai"]["map_scale"]
    maps_layer = viewer.layers["image-wise · saliency"]
    assert isinstance(maps_layer.data, da.Array) and not isinstance(maps_layer.data, np.ndarray)
    assert maps_layer.data.shape == (len(LABELS), N, H, W)
    assert maps_layer.data.chunksize == (len(LABELS), 1, H, W)  # one image per chunk: napari reads what it shows
    stored = root["maps/0"][...].astype(np.float32) / np.float32(scale)
    # shown in the run's display scale (tests/_qt/test_map_scale_layers.py); the metadata keeps the stored maps
    factor = maps_layer.metadata[MAP_SCALE_KEY]["factor"]
    np.testing.assert_array_equal(np.asarray(maps_layer.data), stored.transpose(1, 0, 2, 3) * np.float32(factor))
    meta = maps_layer.metadata[IMAGE_MAPS_KEY]
    np.testing.assert_array_equal(np.asarray(meta["maps"]), stored)
    assert meta["labels"] == LABELS and meta["computed"].all() and meta["computed"].shape == (N, len(LABELS))
    for i, name in enumerate([*LABELS, "overall"]):
        layer = viewer.layers[f"{name} · saliency"]
        assert isinstance(layer.data, da.Array) and layer.metadata[MAP_SCALE_KEY]["factor"] == factor
        np.testing.assert_array_equal(np.asarray(layer.data), root["global/0"][i] * np.float64(factor))
        expected = result.global_maps.get(name).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(layer.data), expected * np.float64(factor))
    assert viewer.layers["overall · saliency"].visible and not maps_layer.visible


def test_a_tiff_results_folder_opens_through_the_same_reader(tmp_path):
    """--format tiff: the same layers, names and values as from the store (lazy over the TIFFs)."""
    from napari_global_xai.explain.result import open_explain

    torch.manual_seed(2)
    model = two_label_model(H, W, harmonise_laterality=False)
    pixels = np.random.default_rng(4).integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    stack = AlignedStack(pixels, [f"s{i}" for i in range(N)], laterality=np.array(["L"] * N), labels=None)
    config = ExplainConfig(method="saliency", subset="all", chunk_size=2)
    result = run_explain(stack, model, config, out_dir=tmp_path / "tif", out_format="tiff")
    assert napari_get_reader(str(tmp_path / "tif")) is read_explain_layers
    layers = read_explain_layers(str(tmp_path / "tif"))
    # a TIFF folder does not record the eyes: its maps are shown as the run made them, in each image's stored
    # orientation (the card does not harmonise laterality), and named so
    stored = map_layer_name("image-wise", "saliency", note="stored orientation")
    assert [kwargs["name"] for _, kwargs, _ in layers] == [stored, "std · saliency"] + [
        f"{n} · saliency" for n in [*LABELS, "overall"]
    ]
    factor = layers[0][1]["metadata"][MAP_SCALE_KEY]["factor"]  # the run's display scale, as from the store
    for i, name in enumerate([*LABELS, "overall"]):
        expected = result.global_maps.get(name).astype(np.float32) * np.float64(factor)
        np.testing.assert_array_equal(layers[2 + i][0], expected)
    maps, kwargs, _ = layers[0]
    np.testing.assert_array_equal(maps, np.asarray(result.image_maps).transpose(1, 0, 2, 3) * np.float32(factor))
    assert kwargs["metadata"][IMAGE_MAPS_KEY]["computed"].all()
    assert open_explain(tmp_path / "tif").image_ids == stack.image_ids


STUDY_N, STUDY_SHAPE = 2000, (128, 192)


@pytest.fixture(scope="module")
def study_store(tmp_path_factory):
    """A store of 2,000 images (2 labels, 128 x 192 maps: 393 MB as float32), written by the store's own writer."""
    from _synthetic_store import write_synthetic_store

    return write_synthetic_store(tmp_path_factory.mktemp("study"), STUDY_N, shape=STUDY_SHAPE, chunk_size=500)


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def test_a_study_store_opens_lazily_and_memory_stays_flat(study_store, store, make_napari_viewer, monkeypatch):
    """Every layer over the 2,000-image store is a dask array, nothing reads the per-chunk records (the flags come
    from the store's flags arrays), and opening it grows the process by a small fraction of its maps' size."""
    import gc

    import dask.array as da

    import napari_global_xai.store.records as records

    viewer = make_napari_viewer()
    viewer.open(str(store[0] / "image_maps.zarr"), plugin="napari-global-xai")  # napari's first-layer costs
    viewer.layers.clear()
    gc.collect()

    def no_records(*_args, **_kwargs):
        raise AssertionError("a finished store's flags must not be read from its records")

    monkeypatch.setattr(records, "read_records", no_records)
    before = _rss()
    viewer.open(str(study_store), plugin="napari-global-xai")
    np.asarray(viewer.layers["image-wise · saliency"].data[1, STUDY_N - 1])  # a slice is read on demand
    grown = _rss() - before
    maps_bytes = STUDY_N * 2 * STUDY_SHAPE[0] * STUDY_SHAPE[1] * 4
    assert grown < maps_bytes / 8, f"RSS grew {grown / 2**20:.0f} MiB opening {maps_bytes / 2**20:.0f} MiB of maps"
    names = [layer.name for layer in viewer.layers]
    assert names == ["mean anatomy", "image-wise · saliency", "std · saliency"] + [
        f"{n} · saliency" for n in ["lesion", "disc", "overall"]
    ]
    for layer in viewer.layers:
        assert isinstance(layer.data, da.Array), layer.name
    maps = viewer.layers["image-wise · saliency"]
    assert maps.data.shape == (2, STUDY_N, *STUDY_SHAPE) and maps.metadata[IMAGE_MAPS_KEY]["computed"].all()
    assert tuple(viewer.dims.axis_labels) == ("label", "image", "y", "x")
    assert viewer.dims.range[1].stop == pytest.approx(STUDY_N - 1)  # napari's own slider moves through images


def test_the_store_root_opens_with_napari_ome_zarr_and_napari_builtin_refuses_it(study_store, make_napari_viewer):
    """The root is a bioformats2raw-layout collection: napari-ome-zarr opens each image (one layer per channel,
    named ``<image>: <channel>``), lazily; napari's builtin zarr reader opens the first group only, so on the root it
    stops with its message listing the groups, never one nameless multi-channel layer."""
    import dask.array as da

    pytest.importorskip("napari_ome_zarr")
    viewer = make_napari_viewer()
    viewer.open(str(study_store), plugin="napari-ome-zarr")
    names = [layer.name for layer in viewer.layers]
    assert names == [
        "anatomy: R",
        "anatomy: G",
        "anatomy: B",
        "maps: lesion",
        "maps: disc",
        "std: lesion",
        "std: disc",
        "global: lesion",
        "global: disc",
        "global: overall",
    ]
    for layer in viewer.layers:
        data = layer.data[0] if isinstance(layer.data, list) else layer.data  # napari-ome-zarr gives a pyramid
        assert isinstance(data, da.Array), layer.name
    assert viewer.layers["maps: lesion"].data.shape == (STUDY_N, *STUDY_SHAPE)
    assert tuple(viewer.dims.axis_labels)[-3:] == ("image", "y", "x")
    assert [layer.name for layer in viewer.layers if layer.visible] == names[:3] + ["global: overall"]
    viewer.layers.clear()
    with pytest.raises(Exception, match="No arrays found in zarr group"):
        viewer.open(str(study_store), plugin="napari")
    assert len(viewer.layers) == 0
