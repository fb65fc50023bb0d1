"""The docks send a run to a Dask cluster: the "Run on" field (embedded, local:N, tcp://HOST:PORT) in a real viewer.

The model is this file's own little network saved as TorchScript with its own card and odd label names; the stack a
deflate-compressed multi-page TIFF with a labels CSV beside it, written here and opened with the plugin's reader (so
the workers reopen it by its file name). Every LocalCluster is closed by the fixture that made the dock.
"""

import json
from dataclasses import replace

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from napari_global_xai._qt.explain_widget import ExplainWidget

from _timeouts import HANG_GUARD_MS

pytest.importorskip("distributed")

N, H, W = 8, 28, 36
LABELS = ["speck", "streak"]
CHUNK = 2  # images per chunk task: four chunks


class SpeckStreakNet(nn.Module):
    """Two scores read from a small conv trunk (max over space)."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.Tanh(), nn.Conv2d(5, 6, 3, padding=1), nn.ReLU())
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.trunk(x).amax(dim=(2, 3)))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster_dock_inputs")
    torch.manual_seed(7)
    torch.jit.script(SpeckStreakNet().eval()).save(str(folder / "speckstreak.pt"))
    card = {"weights": "speckstreak.pt", "labels": LABELS, "mean": [0.4] * 3, "std": [0.3] * 3}
    (folder / "speckstreak.json").write_text(json.dumps(card))
    rng = np.random.default_rng(23)
    images = rng.integers(0, 255, size=(N, H, W, 3), dtype=np.uint8)
    tifffile.imwrite(folder / "fundi.tif", images, photometric="rgb", compression="zlib")
    rows = ["image,laterality,speck,streak"] + [
        f"fundi_{i:04d},{'RL'[i % 2]},{int(i % 3 != 1)},{int(i % 2 == 0)}" for i in range(N)
    ]
    (folder / "fundi.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def dock(make_napari_viewer, qtbot, inputs, one_torch_thread, monkeypatch):
    """The Explain dock on the test stack and model, saliency, every image, chunks of two images; its cluster is
    closed at the end."""
    viewer = make_napari_viewer()
    viewer.open(str(inputs / "fundi.tif"), plugin="napari-global-xai")
    widget = ExplainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    qtbot.waitUntil(lambda: not widget._devices_worker.is_running, timeout=HANG_GUARD_MS)
    widget.image_layer.reset_choices()
    widget.image_layer.value = viewer.layers["fundi"]
    widget.model_card.value = str(inputs / "speckstreak.json")
    widget.device.value = "cpu"
    widget.method.value = "saliency"
    widget.subset.value = "positive"
    config = widget.config
    monkeypatch.setattr(widget, "config", lambda: replace(config(), chunk_size=CHUNK))
    yield viewer, widget
    widget.cluster.close_cluster()
    assert widget.cluster.session.spec is None


def _run(widget, qtbot):
    """Run, wait for the end of the run, then for its layers (a failed run ends the test at once: no layers come)."""
    with qtbot.waitSignal(widget.run_panel.stopped, timeout=HANG_GUARD_MS):
        worker = widget.start()
        assert worker is not None, widget.run_panel.status.text()
    status = widget.run_panel.status.text()
    assert status.startswith(("done: ", "cancelled: ")), status
    qtbot.waitUntil(lambda: not widget.feeder.busy, timeout=HANG_GUARD_MS)
    return widget.last_result


def _opened_on_workers(client, kind: str) -> dict:
    """How many models / stacks each worker holds open (the worker cache of ``scale.specs``)."""

    def count():  # a local function: shipped to the workers by value
        from napari_global_xai.scale.specs import _CACHE

        return sum(key[0] == kind for key in _CACHE)

    return client.run(count)


def _record_progress(widget, monkeypatch, on_report=None):
    seen = []
    original = widget.run_panel.progress_callback

    def progress(done, total, stage):
        seen.append((done, total, stage))
        if on_report is not None:
            on_report(done, total, stage)
        original(done, total, stage)

    monkeypatch.setattr(widget.run_panel, "progress_callback", progress)
    return seen


def test_explain_dock_on_a_local_cluster_gives_the_embedded_maps_bit_for_bit(dock, qtbot, monkeypatch):
    viewer, widget = dock
    assert widget.cluster.text == "embedded" and widget.cluster.target() is None
    reference = _run(widget, qtbot)
    reference_layer = np.array(viewer.layers["overall · saliency"].data)
    assert reference.n_computed > 0 and widget.cluster.session.spec is None  # embedded: no cluster was started

    widget.cluster.text = "local:2"
    seen = _record_progress(widget, monkeypatch)
    result = _run(widget, qtbot)
    assert widget.run_panel.status.text().startswith("done: ") and widget.run_panel.status.text().endswith(
        "(on local:2)"
    )
    assert not result.cancelled
    # bit for bit by construction: the same chunks (CHUNK, hence the same batches) at one torch thread on both sides
    # (one_torch_thread here; a LocalCluster worker runs one thread, Dask's nanny sets OMP_NUM_THREADS=1); other
    # chunkings or thread counts agree only to float32 rounding (docs/reproducibility.md)
    for name in ("mean", "std", "count", "overall"):
        np.testing.assert_array_equal(getattr(result.global_maps, name), getattr(reference.global_maps, name))
    for name in ("computed", "include", "probabilities"):
        np.testing.assert_array_equal(getattr(result, name), getattr(reference, name))
    np.testing.assert_array_equal(np.asarray(result.image_maps), np.asarray(reference.image_maps))
    np.testing.assert_array_equal(viewer.layers["overall · saliency"].data, reference_layer)
    # progress per finished chunk, in images, ending at all of them
    explained = [done for done, total, stage in seen if stage == "explain"]
    assert explained[-1] == N and explained == sorted(explained)
    assert set(explained) <= set(range(0, N + 1, CHUNK))
    # the work ran on the two workers (each loaded the model at most once) ...
    client = widget.cluster.session._client
    assert len(client.scheduler_info()["workers"]) == 2
    loads = _opened_on_workers(client, "model")
    assert set(loads.values()) <= {0, 1} and sum(loads.values()) >= 1
    # ... and the next run reuses the dock's cluster
    again = _run(widget, qtbot)
    assert widget.cluster.session._client is client
    np.testing.assert_array_equal(again.global_maps.mean, reference.global_maps.mean)


@pytest.mark.parametrize("text", ["tcp://", "local:0", "gpu-farm", "tcp://host name:8786"])
def test_a_bad_cluster_spec_is_one_line_and_runs_nothing(dock, qtbot, text):
    viewer, widget = dock
    layers_before = [layer.name for layer in viewer.layers]
    widget.cluster.text = text
    assert widget.cluster.message.isVisibleTo(widget) and widget.cluster.message.text().startswith("error: ")
    assert widget.start() is None and widget.run_panel.worker is None
    status = widget.run_panel.status.text()
    assert status.startswith("error: ") and "\n" not in status and "Traceback" not in status
    assert [layer.name for layer in viewer.layers] == layers_before and widget.last_result is None
    widget.cluster.text = "embedded"
    assert not widget.cluster.message.isVisibleTo(widget)  # a good spec clears the message


def test_an_unreachable_scheduler_is_one_line_before_the_model_loads(dock, qtbot, monkeypatch):
    import napari_global_xai.models as models

    viewer, widget = dock
    loads = []
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loads.append(a))
    monkeypatch.setattr("napari_global_xai.scale.cluster.CONNECT_TIMEOUT_S", 2.0)  # refused at once: no need for 10
    layers_before = [layer.name for layer in viewer.layers]
    widget.cluster.text = "tcp://127.0.0.1:9"  # the discard port: nothing listens there
    with qtbot.waitSignal(widget.run_panel.stopped, timeout=HANG_GUARD_MS):
        assert widget.start() is not None
    status = widget.run_panel.status.text()
    assert status.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9"), status
    assert "\n" not in status
    assert loads == [] and widget.last_result is None
    assert [layer.name for layer in viewer.layers] == layers_before
    assert widget.run_panel.button.text() == "Explain"  # the dock stays usable


def test_cancel_on_a_cluster_keeps_the_finished_chunks_marked_cancelled(dock, qtbot, monkeypatch):
    viewer, widget = dock
    reference = _run(widget, qtbot)
    widget.cluster.text = "local:1"

    def cancel_after_first_chunk(done, total, stage):
        if stage == "explain" and done > 0:  # in the run's thread: the event the Cancel button sets
            widget.run_panel._cancel_event.set()

    _record_progress(widget, monkeypatch, cancel_after_first_chunk)
    result = _run(widget, qtbot)
    assert result.cancelled and result.provenance["status"] == "CANCELLED"
    chunks = {int(i) // CHUNK for i in np.flatnonzero(result.computed.any(axis=1))}
    assert len(chunks) == 1  # the chunk that finished first, whole; nothing of the others
    rows = np.arange(N) // CHUNK == chunks.pop()
    np.testing.assert_array_equal(result.computed[rows], reference.computed[rows])
    assert not result.computed[~rows].any() and reference.computed[~rows].any()
    maps, ref_maps = np.asarray(result.image_maps), np.asarray(reference.image_maps)
    np.testing.assert_array_equal(maps[rows], ref_maps[rows])
    assert not maps[~rows].any()
    np.testing.assert_array_equal(result.global_maps.count, (result.computed & result.include).sum(axis=0))
    assert widget.run_panel.status.text().startswith("cancelled: kept")
    assert "image-wise · saliency" in viewer.layers and widget.run_panel.button.text() == "Explain"


def _analysis_dock(kind, viewer, widget, qtbot, inputs):
    """The PEPPR or SAG dock on the test stack and model (PEPPR on the maps of an embedded Explain run)."""
    from napari_global_xai._qt.peppr_widget import PepprWidget
    from napari_global_xai._qt.sag_widget import SagWidget

    if kind == "PEPPR":
        _run(widget, qtbot)
        panel = PepprWidget(viewer)
        viewer.window.add_dock_widget(panel, tabify=True)
        panel.map_layers.reset_choices()
        panel.select_maps(viewer.layers["overall · saliency"])
    else:
        panel = SagWidget(viewer)
        viewer.window.add_dock_widget(panel, tabify=True)
        panel.image_layer.reset_choices()
        panel.image_layer.value = viewer.layers["fundi"]
    qtbot.waitUntil(lambda: not panel.model_inputs.devices_worker.is_running, timeout=HANG_GUARD_MS)
    panel.model_card.value = str(inputs / "speckstreak.json")
    return panel


@pytest.mark.parametrize("how", ["dock closed", "viewer closed"])
def test_the_dock_closes_its_cluster_with_the_dock_or_the_viewer(dock, qtbot, how):
    from napari_global_xai.scale import parse_cluster

    viewer, widget = dock
    widget.cluster.text = "local:1"
    target = widget.cluster.target("cpu")  # as when a run starts
    client = target.session.client(target.spec)  # what the run's worker does on first use
    assert widget.cluster.session.is_open(parse_cluster("local:1")) and client.status == "running"
    cluster = client.cluster
    if how == "dock closed":
        viewer.window.remove_dock_widget(widget)  # what napari's close button on the dock does
    else:
        viewer.close()
    qtbot.waitUntil(lambda: widget.cluster.session.spec is None, timeout=HANG_GUARD_MS)
    assert client.status == "closed" and cluster.status.name == "closed"


def test_screenshot_of_the_explain_dock_run_on_a_cluster(sample_dock, qtbot, show_for_screenshot):
    """The plugin's own sample (a compressed TIFF) explained on a LocalCluster from the dock; the window is saved to
    tests/_artifacts/explain_dock_cluster.png with the "Run on" field in the dock."""
    from pathlib import Path

    from PIL import Image

    viewer, widget = sample_dock(ExplainWidget)  # shown for the screenshot only
    qtbot.waitUntil(lambda: not widget._devices_worker.is_running, timeout=HANG_GUARD_MS)
    try:
        widget.method.value = "gradcam"
        widget.cluster.text = "local:1"
        result = _run(widget, qtbot)
        assert widget.run_panel.status.text().endswith("(on local:1)") and not result.cancelled
        assert result.n_computed == int(result.include.sum()) > 0
        bar = widget.run_panel.bar
        assert bar.maximum() > 0 and bar.value() == bar.maximum()  # a finished run shows a full bar
        client = widget.cluster.session._client
        assert sum(_opened_on_workers(client, "stack").values()) == 1  # the worker reopened the sample file
        show_for_screenshot(viewer)
        viewer.reset_view()
        qtbot.wait(300)
        canvas = viewer.screenshot(canvas_only=True, flash=False)
        window = viewer.screenshot(canvas_only=False, flash=False)
        assert window.shape[1] > canvas.shape[1]  # the dock is in the window shot
        field = widget.cluster.combo
        assert field.isVisible() and field.currentText() == "local:1"
        artifacts = Path(__file__).resolve().parents[1] / "_artifacts"
        artifacts.mkdir(exist_ok=True)
        Image.fromarray(window).save(artifacts / "explain_dock_cluster.png")
    finally:
        widget.cluster.close_cluster()


def test_a_stack_that_cannot_travel_is_one_line_before_any_cluster_starts(inputs, monkeypatch):
    """A pixel source that cannot be pickled (here tifffile's own zarr view, which holds an open file) is refused
    with one line before the cluster is started or joined."""
    import dask.array as da

    from napari_global_xai._qt._cluster import ClusterSession, ClusterTarget
    from napari_global_xai.data import AlignedStack
    from napari_global_xai.scale import ClusterError, parse_cluster

    pixels = da.from_zarr(tifffile.imread(inputs / "fundi.tif", aszarr=True))
    stack = AlignedStack(pixels=pixels, image_ids=[f"fundus {i}" for i in range(N)], frame="left")
    session = ClusterSession()
    started = []
    monkeypatch.setattr(session, "client", lambda spec, report=None: started.append(spec))
    with pytest.raises(ClusterError) as info:
        ClusterTarget(session, parse_cluster("local:2"), "cpu").executor(stack=stack)
    message = str(info.value)
    assert message.startswith("this stack cannot be sent to Dask workers (TypeError: cannot pickle")
    assert "\n" not in message
    assert started == []


@pytest.mark.parametrize("kind", ["PEPPR", "SAG"])
def test_analysis_docks_on_a_local_cluster_give_the_embedded_results(dock, qtbot, inputs, kind):
    """The same PEPPR curves (to 1e-12, far below float32's resolution: bit for bit in effect) and SAG graphs as
    embedded: the same chunks at one torch thread on both sides, as in the explain dock's test above."""
    viewer, widget = dock
    panel = _analysis_dock(kind, viewer, widget, qtbot, inputs)
    if kind == "SAG":
        panel.label.value = LABELS[1]
        panel.scope.value = "all positives"

    def run():
        with qtbot.waitSignal(panel.run_panel.stopped, timeout=HANG_GUARD_MS):
            assert panel.start() is not None, panel.run_panel.status.text()
        assert panel.run_panel.status.text().startswith("done"), panel.run_panel.status.text()
        return panel.result if kind == "PEPPR" else panel.run

    try:
        reference = run()
        panel.cluster.text = "local:2"
        result = run()
        assert panel.cluster.session.spec is not None  # it ran on the dock's cluster
        if kind == "PEPPR":
            assert result.maps == reference.maps and result.n_images == reference.n_images > 0
            for map_name in reference.maps:
                for attr in ("erase", "restore"):
                    a, b = getattr(result.curves[map_name], attr), getattr(reference.curves[map_name], attr)
                    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        else:
            assert [r.image_index for r in result.results] == [r.image_index for r in reference.results]
            assert len(reference.results) == N // 2  # the images positive for the label
            for a, b in zip(result.results, reference.results, strict=True):
                assert a.all_roots == b.all_roots and [n.patches for n in a.nodes] == [n.patches for n in b.nodes]
                np.testing.assert_allclose(a.root_confidences, b.root_confidences, rtol=0, atol=1e-12)
    finally:
        panel.cluster.close_cluster()
