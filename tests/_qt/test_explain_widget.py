"""The Explain dock driven end to end on the sample data in a real viewer (Xvfb)."""

import subprocess
import sys
import time

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_global_xai._qt.explain_widget import GLOBAL_MAP_KEY, IMAGE_MAPS_KEY, ExplainWidget
from napari_global_xai.models import DEMO_CARD_PATH

pytestmark = pytest.mark.skipif(not DEMO_CARD_PATH.exists(), reason="demo model not trained")


@pytest.fixture
def dock(sample_dock, qtbot):
    viewer, widget = sample_dock(ExplainWidget)
    qtbot.waitUntil(lambda: not widget._devices_worker.is_running, timeout=20000)
    return viewer, widget


def _run(widget, qtbot, timeout=120000):
    """Start a run and wait until its layers are all in the viewer."""
    with qtbot.waitSignals([widget.run_panel.stopped, widget.feeder.done], timeout=timeout):
        worker = widget.start()
        assert worker is not None, widget.run_panel.status.text()
    return worker


def test_gradcam_run_adds_global_and_image_wise_layers(dock, qtbot):
    viewer, widget = dock
    widget.method.value = "gradcam"
    assert widget.params.value == ""
    _run(widget, qtbot)
    overall = viewer.layers["overall · gradcam"]
    assert overall.data.shape == (384, 512) and overall.blending == "additive"
    assert overall.colormap.name == "inferno"
    meta = overall.metadata[GLOBAL_MAP_KEY]
    assert meta["method"] == "gradcam" and meta["stack_layer"] == "uwf_sample"
    assert meta["subset"] == "positive" and meta["normalisation"] == "mass"  # details live in the metadata
    assert "subset 'positive', mass-normalised" in overall.metadata["description"]
    haem = viewer.layers["haemorrhage · gradcam"]
    assert tuple(haem.contrast_limits) == tuple(overall.contrast_limits)  # shared scale: maps comparable
    maps = [layer for layer in viewer.layers if GLOBAL_MAP_KEY in layer.metadata]
    assert len(maps) == 6 and len({tuple(layer.contrast_limits) for layer in maps}) == 1  # 5 labels + overall
    pooled = np.concatenate([np.asarray(layer.data, np.float64).ravel() for layer in maps])
    assert overall.contrast_limits[1] == pytest.approx(np.percentile(pooled, 99.5), rel=1e-3)
    # the value scale: napari's colour bar, shown once (on the overall map, the visible one)
    assert overall.colorbar.visible and not haem.colorbar.visible
    image_maps = viewer.layers["image-wise · gradcam"]
    assert image_maps.data.shape == (5, 64, 384, 512)
    labels = viewer.layers["uwf_sample"].metadata["napari_global_xai"]["labels"]
    truth = np.array(labels["values"], bool)
    np.testing.assert_array_equal(image_maps.metadata[IMAGE_MAPS_KEY]["computed"], truth)
    assert "mean anatomy (uwf_sample)" in viewer.layers
    assert widget.run_panel.status.text().startswith("done: ")
    # the image-wise axis lines up with the stack slider: 64 steps on the first non-label axis
    assert viewer.dims.range[1].stop - viewer.dims.range[1].start == pytest.approx(63)


def test_cancel_keeps_partial_results(dock, qtbot):
    viewer, widget = dock
    widget.method.value = "ig"
    widget.params.value = "n_steps=64"
    widget.batch.value = 1
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.run_panel.bar.value() >= 2 and widget.run_panel.status.text().startswith(
        "explain"), timeout=60000)
    with qtbot.waitSignals([widget.run_panel.stopped, widget.feeder.done], timeout=60000):
        widget.run_panel.button.click()  # the Run button became Cancel
    result = widget.last_result
    assert result.cancelled and 0 < result.n_computed < int(result.include.sum())
    assert widget.run_panel.status.text().startswith("cancelled: kept")
    assert "image-wise · ig" in viewer.layers
    assert widget.run_panel.button.text() == "Explain"


def test_bad_model_and_bad_labels_show_errors_and_the_dock_stays_usable(dock, qtbot, tmp_path):
    viewer, widget = dock
    bad_card = tmp_path / "bad.card.json"
    bad_card.write_text('{"name": "x", "labels": ["a"], "weights": "missing.pt", "format": "torchscript"}')
    widget.model_card.value = bad_card
    with qtbot.waitSignal(widget.run_panel.failed, timeout=30000) as blocker:
        widget.start()
    assert "does not exist" in str(blocker.args[0])
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=5000)
    assert "does not exist" in widget.run_panel.status.text()
    bad_csv = tmp_path / "labels.csv"
    bad_csv.write_text("image,haemorrhage\nnot_an_image,1\n")
    widget.model_card.value = None
    widget.labels_csv.value = bad_csv
    assert widget.start() is None  # input error: shown at once, nothing launched
    assert "error" in widget.run_panel.status.text()
    widget.labels_csv.value = None
    widget.method.value = "saliency"
    _run(widget, qtbot)
    assert "overall · saliency" in viewer.layers


def test_main_thread_never_stalls_during_a_run(dock, qtbot):
    """A 10 ms timer keeps ticking while the run computes (< 100 ms gaps) and while results arrive.

    Result layers are added one per event-loop turn; each ``viewer.add_layer`` costs napari itself ~60 ms (2-D) to
    ~100 ms (the 4-D image-wise stack: vispy node, layer controls, dims) on an idle 2-core machine, which this plugin
    cannot shorten; that phase is held to 250 ms per gap (adding all eight layers in one slot would take ~600 ms).
    """
    viewer, widget = dock
    widget.method.value = "saliency"
    gaps, last, phase = {"compute": [], "layers": []}, [time.perf_counter()], ["compute"]

    def tick():
        now = time.perf_counter()
        gaps[phase[0]].append(now - last[0])
        last[0] = now

    widget.run_panel.succeeded.connect(lambda _result: phase.__setitem__(0, "layers"))
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    with qtbot.waitSignals([widget.run_panel.stopped, widget.feeder.done], timeout=120000):
        widget.start()
        last[0] = time.perf_counter()
    timer.stop()
    assert len(gaps["compute"]) > 10 and gaps["layers"]
    assert max(gaps["compute"]) < 0.1, f"main thread stalled {max(gaps['compute']) * 1000:.0f} ms while computing"
    assert max(gaps["layers"]) < 0.25, f"main thread stalled {max(gaps['layers']) * 1000:.0f} ms adding layers"


def test_plugin_import_is_fast_and_does_not_import_torch():
    code = ("import napari, magicgui, time; t = time.perf_counter(); import napari_global_xai, "
            "napari_global_xai._reader, napari_global_xai._sample_data, napari_global_xai._writer, "
            "napari_global_xai._qt.explain_widget; import sys; "
            "print(time.perf_counter() - t, 'torch' in sys.modules, 'captum' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False"]
    assert float(out[0]) < 0.5, f"plugin import took {float(out[0]):.2f} s"
