"""Map layers in the run's display scale: napari's colour bar and status value read a named quantity (the saved
figures' ``map_scale``), lazily, from the one builder the reader and the Explain dock share; the Compare and Regions
docks hand their jobs the stored maps lazily, and the worker reads only the label it needs."""

import csv
import threading

import numpy as np
import pytest
import torch

from napari_global_xai._layers import IMAGE_MAPS_KEY, MAP_KIND_KEY, MAP_SCALE_KEY, stack_layer_data
from napari_global_xai._qt._runner import add_layers
from napari_global_xai.config import ExplainConfig
from napari_global_xai.data import AlignedStack
from napari_global_xai.explain.pipeline import run_explain
from napari_global_xai.figures import map_scale

from _timeouts import HANG_GUARD_MS
from _tiny_nets import two_label_model
from _tolerance import float32_atol, pairwise_sum_terms

H, W, N = 20, 30, 8
LABELS = ["near", "far"]


def _explain(folder, normalisation="mass"):
    """A saliency run on ``N`` random images, left and right eyes alternating, kept in each image's stored
    orientation (so the viewer's left-eye layers mirror the right eyes lazily)."""
    torch.manual_seed(2)
    model = two_label_model(H, W, harmonise_laterality=False)
    pixels = np.random.default_rng(4).integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    laterality = np.array(["L", "R"] * (N // 2))
    stack = AlignedStack(pixels, [f"s{i}" for i in range(N)], laterality=laterality, labels=None)
    config = ExplainConfig(method="saliency", subset="all", chunk_size=3, normalisation=normalisation)
    return run_explain(stack, model, config, out_dir=folder), stack


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scaled")
    result, stack = _explain(folder)
    return folder, result, stack


def _left_frame(result, stack) -> np.ndarray:
    """The run's stored maps ``(n, L, H, W)`` in the viewer's left-eye frame (right eyes mirrored)."""
    stored = np.asarray(result.image_maps)
    right = np.asarray(stack.laterality) == "R"
    return np.where(right[:, None, None, None], stored[..., ::-1], stored)


def test_map_layers_show_the_stored_values_times_the_scale_and_name_the_unit(explained, make_napari_viewer):
    import dask.array as da
    import zarr

    folder, result, stack = explained
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-global-xai")
    root = zarr.open_group(str(folder / "image_maps.zarr"), mode="r")
    top = root.attrs["napari_global_xai"]["display"]["global"][1]
    factor, unit = map_scale("mass", top)
    assert factor >= 100 and unit.startswith("share of the map's mass per pixel, × 10⁻")  # maps of 600 pixels
    for i, name in enumerate([*LABELS, "overall"]):
        layer = viewer.layers[f"{name} · saliency"]
        assert isinstance(layer.data, da.Array)  # lazy: a dask multiply over the store, nothing read
        stored = np.asarray(root["global/0"][i], np.float64)
        np.testing.assert_array_equal(np.asarray(layer.data), stored * factor)
        # the colour bar: the shared range scaled with the data, reading 1 to 10 of the named unit
        assert tuple(layer.contrast_limits) == pytest.approx((0.0, top * factor))
        assert 1 <= layer.contrast_limits[1] < 10
        assert layer.metadata[MAP_SCALE_KEY] == {"factor": factor, "unit": unit}
        assert f"values in {unit} (stored values × {factor:g})" in layer.metadata["description"]
        # the status bar's value under the cursor (napari reads it from visible layers) is the scaled value
        layer.visible = True
        y, x = np.unravel_index(np.argmax(stored), stored.shape)
        assert layer.get_value((y, x)) == pytest.approx(stored[y, x] * factor)
        # distinct stored values stay distinct and in order (a ranking read from the layer is the stored map's)
        assert np.array_equal(np.argsort(np.asarray(layer.data), axis=None), np.argsort(stored, axis=None))
    maps = viewer.layers["image-wise · saliency"]
    left = _left_frame(result, stack)
    assert isinstance(maps.data, da.Array) and maps.metadata[MAP_SCALE_KEY] == {"factor": factor, "unit": unit}
    np.testing.assert_array_equal(np.asarray(maps.data), left.transpose(1, 0, 2, 3) * np.float32(factor))
    stored_maps = maps.metadata[IMAGE_MAPS_KEY]["maps"]  # the stored values, for the analyses docks
    assert isinstance(stored_maps, da.Array)
    np.testing.assert_array_equal(np.asarray(stored_maps), left)
    std = viewer.layers["std · saliency"]
    assert isinstance(std.data, da.Array) and std.metadata[MAP_SCALE_KEY]["factor"] == factor
    np.testing.assert_array_equal(np.asarray(std.data[:, 0]), root["std/0"][...] * np.float32(factor))
    assert tuple(std.contrast_limits)[1] == pytest.approx(root.attrs["napari_global_xai"]["display"]["std"][1] * factor)


def test_the_explain_dock_and_the_reader_give_the_same_scaled_layers(explained):
    from napari_global_xai._qt.explain_widget import dock_layer_data
    from napari_global_xai._reader import read_explain_layers
    from napari_global_xai.explain.result import open_explain

    folder, result, stack = explained
    dock = [t for t in dock_layer_data(open_explain(folder), result, stack, "s") if MAP_KIND_KEY in t[1]["metadata"]]
    reader = [t for t in read_explain_layers(str(folder)) if MAP_KIND_KEY in t[1]["metadata"]]
    assert [kw["name"] for _, kw, _ in dock] == [kw["name"] for _, kw, _ in reader] and len(reader) == 5
    for (ours, kw, _), (theirs, kw_reader, _) in zip(dock, reader):
        assert type(ours) is type(theirs) and ours.dtype == theirs.dtype, kw["name"]
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
        assert kw["contrast_limits"] == kw_reader["contrast_limits"]
        assert kw["metadata"][MAP_SCALE_KEY] == kw_reader["metadata"][MAP_SCALE_KEY]
        assert kw["metadata"]["description"].startswith(kw_reader["metadata"]["description"])


def test_unnormalised_maps_are_shown_as_stored_with_their_unit(tmp_path):
    from napari_global_xai._reader import read_explain_layers

    result, _stack = _explain(tmp_path, normalisation="none")
    layers = {kw["name"]: (data, kw) for data, kw, _ in read_explain_layers(str(tmp_path))}
    data, kw = layers["overall · saliency"]
    assert kw["metadata"][MAP_SCALE_KEY] == {"factor": 1.0, "unit": "attribution (raw, after channel reduction)"}
    np.testing.assert_array_equal(np.asarray(data), result.global_maps.overall.astype(np.float32))


def _record_reads(layer) -> list:
    """Swap the layer's stored maps for the same values read through a recorder, one (image, label) per block:
    each read appends ``(on the main thread?, (image, label))``."""
    meta = layer.metadata[IMAGE_MAPS_KEY]
    stored = meta["maps"]
    reads = []

    def record(block, block_info=None):
        reads.append((threading.current_thread() is threading.main_thread(), block_info[0]["chunk-location"][:2]))
        return block

    meta["maps"] = stored.rechunk((1, 1, H, W)).map_blocks(record, dtype=stored.dtype)
    return reads


def _viewer_with_maps(make_napari_viewer, explained, dock_class):
    folder, _result, stack = explained
    viewer = make_napari_viewer()
    add_layers(viewer, [stack_layer_data(stack, "s")])
    viewer.open(str(folder), plugin="napari-global-xai")
    dock = dock_class(viewer)
    viewer.window.add_dock_widget(dock)
    dock.image_layer.reset_choices()
    dock.image_layer.value = viewer.layers["s"]
    dock.maps_layer.reset_choices()
    dock.maps_layer.value = viewer.layers["image-wise · saliency"]
    return viewer, dock


def _run_in_one_thread_each(dock, qtbot):
    """Run the dock with dask's synchronous scheduler (a block is read in the thread that asks for it) and wait for
    its layers."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        with qtbot.waitSignal(dock.run_panel.stopped, timeout=HANG_GUARD_MS):
            assert dock.start() is not None
        status = dock.run_panel.status.text()
        assert not status.startswith("error"), status
        qtbot.waitUntil(lambda: not dock.feeder.busy, timeout=HANG_GUARD_MS)


def test_compare_reads_one_label_of_the_stored_maps_in_its_worker(explained, make_napari_viewer, qtbot, tmp_path):
    from napari_global_xai._qt.compare_widget import CompareWidget
    from napari_global_xai.analyses.compare_pipeline import run_compare
    from napari_global_xai.config import DEFAULT_DEVICE

    _folder, result, stack = explained
    viewer, dock = _viewer_with_maps(make_napari_viewer, explained, CompareWidget)
    reads = _record_reads(dock.maps_layer.value)
    groups = ["a", "b"] * (N // 2)
    path = tmp_path / "groups.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([["file", "group"], *zip(stack.image_ids, groups)])
    dock.csv.value = str(path)
    dock.column.value = "group"
    dock.label.value = "far"
    dock.groups.value = "a, b"
    dock.n_permutations.value = 200
    dock.normalisation.value = "shares"
    kwargs = dock.inputs()
    assert reads == []  # the main thread read no map: the job gets them lazily
    _run_in_one_thread_each(dock, qtbot)
    assert reads and not any(main for main, _ in reads)  # every map was read in the worker
    assert sorted(loc for _, loc in reads) == [(i, LABELS.index("far")) for i in range(N)]  # that label, once
    # what the job compares: the stored maps (a pure copy and flip of the store, not the shown × factor) ...
    maps = _left_frame(result, stack)[:, LABELS.index("far")].astype(np.float32)
    read, idx = kwargs["maps"].read("far")
    np.testing.assert_array_equal(read, maps)
    np.testing.assert_array_equal(idx, np.arange(N))
    # ... and the dock's difference is the test's on them: two float32 means of shares and their difference, summed
    # in another memory layout (tests/_tolerance.py)
    expected = run_compare(maps, groups, kwargs["config"], column="group", device=DEFAULT_DEVICE)
    shares = maps / maps.sum(axis=(1, 2), keepdims=True)
    atol = float32_atol(np.abs(shares).max(), 2 * (pairwise_sum_terms(N // 2) + 1) + 1)
    diff = viewer.layers["difference group=a − group=b"].data
    np.testing.assert_allclose(diff, expected.difference, rtol=0, atol=atol)


def test_regions_reads_each_label_once_in_its_worker(explained, make_napari_viewer, qtbot):
    from napari_global_xai._qt.regions_widget import RegionsWidget
    from napari_global_xai.analyses.regions_pipeline import run_regions

    _folder, result, stack = explained
    viewer, dock = _viewer_with_maps(make_napari_viewer, explained, RegionsWidget)
    regions = np.repeat(np.repeat([[1, 2, 3]], W // 3, axis=1), H, axis=0)
    viewer.add_labels(regions, name="own regions")
    dock.regions.reset_choices()
    dock.regions.value = viewer.layers["own regions"]
    dock.n_boot.value = 20
    reads = _record_reads(dock.maps_layer.value)
    kwargs = dock.inputs()
    assert reads == [] and list(kwargs["maps_by_label"]) == LABELS  # lazy: nothing read on the main thread
    _run_in_one_thread_each(dock, qtbot)
    assert reads and not any(main for main, _ in reads)
    assert sorted(loc for _, loc in reads) == sorted((i, j) for i in range(N) for j in range(len(LABELS)))
    left = _left_frame(result, stack)
    expected = run_regions(
        {name: left[:, j].astype(np.float32) for j, name in enumerate(LABELS)},
        kwargs["config"],
        anatomy=kwargs["anatomy"],
        regions=regions,
    )
    assert [t.label for t in dock.tables] == LABELS
    for ours, theirs in zip(dock.tables, expected.tables):
        np.testing.assert_array_equal(ours.mass_share, theirs.mass_share)
        np.testing.assert_array_equal(ours.enrichment_ci, theirs.enrichment_ci)
