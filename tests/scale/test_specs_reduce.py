"""Cluster spec parsing, stacks shipped by reference, tree reduction of accumulators (in-process Dask: fast)."""

import pickle

import numpy as np
import pytest
import tifffile

from napari_global_xai.aggregate import GlobalMapAccumulator
from napari_global_xai.data import AlignedStack
from napari_global_xai.scale import ClusterSpec, parse_cluster
from napari_global_xai.scale.cluster import DEFAULT_LOCAL_WORKERS, ClusterSpecError
from napari_global_xai.scale.specs import StackSpec, _memmaps_by_reference

from _tolerance import float32_atol, float64_atol

distributed = pytest.importorskip("distributed")


@pytest.mark.parametrize(
    "cluster,scheduler,expected",
    [
        (None, None, ClusterSpec()),
        ("embedded", None, ClusterSpec()),
        ("local", None, ClusterSpec("local", DEFAULT_LOCAL_WORKERS)),
        (" LOCAL:3 ", None, ClusterSpec("local", 3)),
        (None, "tcp://10.0.0.5:8786", ClusterSpec("scheduler", address="tcp://10.0.0.5:8786")),
        ("tls://node7:8786", None, ClusterSpec("scheduler", address="tls://node7:8786")),
    ],
)
def test_cluster_specs(cluster, scheduler, expected):
    spec = parse_cluster(cluster, scheduler)
    assert spec == expected
    assert spec.distributed == (expected.kind != "embedded")
    assert parse_cluster(str(spec)) == spec  # str() round-trips (a dock stores one string)


@pytest.mark.parametrize(
    "cluster,scheduler",
    [("local:-1", None), ("locl", None), ("local:2x", None), (None, "10.0.0.5:8786"), ("local", "tcp://a:1")],
)
def test_bad_specs_raise_one_line_usage_errors(cluster, scheduler):
    from napari_global_xai.errors import UsageError

    with pytest.raises(ClusterSpecError) as info:
        parse_cluster(cluster, scheduler)
    assert isinstance(info.value, UsageError) and "\n" not in str(info.value)


def test_memmap_views_travel_by_reference(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65535, size=(9, 7, 5, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", pixels, photometric="rgb")
    mapped = tifffile.memmap(tmp_path / "s.tif", mode="r")
    views = [mapped, mapped[3:7], mapped[::-2], mapped[:, :, ::-1], mapped.transpose(0, 3, 1, 2)[1:, 2]]
    for view in views:
        with _memmaps_by_reference():
            blob = pickle.dumps(view)
        assert len(blob) < 400  # the file name and geometry, not the pixels (9*7*5*3*2 = 1890 bytes)
        np.testing.assert_array_equal(pickle.loads(blob), view)
    writable = np.memmap(tmp_path / "w.raw", dtype=np.uint8, mode="w+", shape=(64,))
    with _memmaps_by_reference():
        assert len(pickle.dumps(writable)) > 64  # not read-only: its bytes travel (they may be unflushed)
    assert np.memmap not in __import__("copyreg").dispatch_table  # the reducer is scoped to the block


def test_stack_spec_reopens_the_same_images_in_the_same_frame(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, size=(6, 8, 10, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", pixels, photometric="rgb")
    stack = AlignedStack(
        tifffile.memmap(tmp_path / "s.tif", mode="r"),
        [f"i{k}" for k in range(6)],
        laterality=list("LRLRRL"),
        frame="left",
    )
    spec = pickle.loads(pickle.dumps(StackSpec.from_stack(stack)))
    again = spec.open()
    np.testing.assert_array_equal(again.get([1, 4, 5]), stack.get([1, 4, 5]))
    np.testing.assert_array_equal(again.get([1])[0], pixels[1][:, ::-1])  # a right eye, mirrored
    assert StackSpec.from_stack(stack).token == spec.token
    assert StackSpec.from_stack(stack.subset([0, 1])).token != spec.token


def _partials(n_chunks, shape=(6, 5), seed=0):
    rng = np.random.default_rng(seed)
    chunks = []
    for _ in range(n_chunks):
        k = int(rng.integers(1, 5))
        maps = rng.random((k, 2, *shape)).astype(np.float32)
        maps /= maps.sum(axis=(2, 3), keepdims=True)
        chunks.append((maps, rng.random((k, 2)) > 0.3))
    return chunks


def test_tree_reduction_equals_streaming_for_any_order():
    from napari_global_xai.scale.reduce import TreeReducer

    chunks = _partials(11)
    streamed = GlobalMapAccumulator(["a", "b"], (6, 5))
    for maps, include in chunks:
        streamed.update(maps, include)
    expected = streamed.result()
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0") as client:
        for order in (range(11), [10, 3, 7, 0, 1, 9, 2, 8, 4, 6, 5]):
            reducer = TreeReducer(client)
            for i in order:
                reducer.add(
                    client.submit(
                        lambda m, inc: GlobalMapAccumulator(["a", "b"], (6, 5)).update(m, inc), *chunks[i], pure=False
                    )
                )
            got = reducer.result().result()
            np.testing.assert_array_equal(got.mean, expected.mean)  # int64 fixed point: bit-identical
            np.testing.assert_array_equal(got.count, expected.count)
            np.testing.assert_array_equal(got.overall, expected.overall)
            # float64 moments merged in another order (Chan et al.): each of the 11 merges and the chunks' own sums
            # round a few times; 4 roundings per merge of the std's scale, 11 × 4 = 44 (was rtol=1e-12, atol=1e-15)
            std_atol = float64_atol(np.nanmax(np.abs(expected.std)), 11 * 4)
            np.testing.assert_allclose(got.std, expected.std, rtol=0, atol=std_atol)
        assert TreeReducer(client).result() is None


def test_model_spec_loads_once_per_process_and_refuses_a_model_without_file(tmp_path):
    import json

    import torch
    import torch.nn.functional as F

    from napari_global_xai.models import LoadedModel, ModelCard, ModelLoadError, load_model
    from napari_global_xai.scale.specs import ModelSpec, clear_worker_cache, worker_model

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten())
    in_memory = LoadedModel(
        net, ModelCard(labels=["a", "b"], weights="nowhere.pt", input_channels=[0]), torch.device("cpu")
    )
    with pytest.raises(ModelLoadError, match="loads the model from its file on every worker"):
        ModelSpec.from_model(in_memory)
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    (tmp_path / "m.json").write_text(json.dumps({"weights": "m.pt", "labels": ["a", "b"], "mean": [0.5]}))
    spec = pickle.loads(pickle.dumps(ModelSpec.from_model(load_model(tmp_path / "m.json", device="cpu"))))
    clear_worker_cache()
    first = worker_model(spec)
    assert worker_model(spec) is first  # cached: loaded once
    x = torch.rand(3, 1, 9, 9)
    # the same network, but channels-last weights round the 3×3 conv's 9 products and its bias in another order:
    # each output is off the exact sum by at most 10 u × Σ|terms| (Higham), so the two differ by at most
    # 10 eps × max Σ|w·x| (tests/_tolerance.py; was torch's default rtol=1.3e-6, atol=1e-5)
    conv = net[0]
    terms_scale = (F.conv2d(x.abs(), conv.weight.abs()) + conv.bias.abs()[:, None, None]).max()
    atol = float32_atol(terms_scale, 10)
    torch.testing.assert_close(first.scores(x), net(x), rtol=0, atol=atol)
    clear_worker_cache()
    # a device index names one GPU of the client; every worker takes its own (the index is dropped)
    loaded = load_model(tmp_path / "m.json", device="cpu")
    assert ModelSpec.from_model(loaded, device="cuda:1").device == "cuda"
    assert ModelSpec.from_model(loaded).device == "cpu"
