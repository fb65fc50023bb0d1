"""The Explain dock driven end to end on the sample data in a real viewer (Xvfb)."""

import subprocess
import sys

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_global_xai._layers import IMAGE_MAPS_KEY, map_layer_name
from napari_global_xai._qt._layer_pickers import GLOBAL_MAP_KEY
from napari_global_xai._qt._session_folder import RESULTS_FOLDER_KEY
from napari_global_xai._qt.explain_widget import ExplainWidget

from _timeouts import HANG_GUARD_MS, HANG_GUARD_S
from _tolerance import float32_atol, mass_normalised_terms, pass_terms


@pytest.fixture
def dock(sample_dock, qtbot):
    viewer, widget = sample_dock(ExplainWidget)
    qtbot.waitUntil(lambda: not widget._devices_worker.is_running, timeout=HANG_GUARD_MS)
    return viewer, widget


def _run(widget, qtbot, timeout=HANG_GUARD_MS):
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


def test_a_run_is_shown_lazily_from_its_store_with_named_sliders_and_the_stack_under_the_maps(dock, qtbot):
    """Nothing proportional to the number of images stays in memory: every map layer reads the run's store (dask
    over Zarr, in the dock's session folder), the sliders are named, the mean anatomy lies under the maps and gives
    way to the stack when the image slider moves; closing the dock removes its session folder and those layers."""
    import dask.array as da
    import zarr

    viewer, widget = dock
    widget.method.value = "saliency"
    widget.targets.value = ["haemorrhage", "arcade_lesion"]
    _run(widget, qtbot)
    maps = viewer.layers["image-wise · saliency"]
    folder = maps.metadata[RESULTS_FOLDER_KEY]
    assert widget.session_folder.holds(folder)
    sample = ["uwf_sample", "planted regions", "planted lesions + marker"]
    for layer in viewer.layers:
        if layer.name not in sample:
            assert isinstance(layer.data, da.Array), layer.name
            assert widget.session_folder.holds(layer.metadata[RESULTS_FOLDER_KEY])
    assert not isinstance(widget.last_result.image_maps, np.ndarray)  # the result the dock keeps is lazy too
    stored = zarr.open_group(f"{folder}/image_maps.zarr", mode="r")["maps/0"]
    assert maps.data.shape == (2, 64, *stored.shape[2:])
    # sliders named: (label, image, y, x); the stack's own slider is the image axis
    assert tuple(viewer.dims.axis_labels) == ("label", "image", "y", "x")
    assert tuple(viewer.layers["uwf_sample"].axis_labels) == ("image", "y", "x")
    # order: stack, mean anatomy, image-wise, std, global maps (overall on top and selected)
    names = [layer.name for layer in viewer.layers]
    anatomy = "mean anatomy (uwf_sample)"
    assert names.index("planted lesions + marker") < names.index(anatomy) < names.index("overall · saliency")
    assert names[-1] == "overall · saliency" and viewer.layers.selection.active.name == "overall · saliency"
    assert viewer.layers[anatomy].visible and viewer.layers["uwf_sample"].visible
    widget.image_layer.reset_choices()
    assert [layer.name for layer in widget.image_layer.choices] == ["uwf_sample"]  # the RGB anatomy is no stack
    image_axis = viewer.dims.axis_labels.index("image")
    viewer.dims.set_current_step(image_axis, 5)
    assert not viewer.layers[anatomy].visible  # the stack at image 5 now shows under the maps
    assert viewer.layers["uwf_sample"].visible and viewer.layers["overall · saliency"].visible
    # closing the dock (napari's close button) removes the session folder and the layers reading it
    session = widget.session_folder.path
    viewer.window.remove_dock_widget(widget)
    assert not session.exists()
    assert [layer.name for layer in viewer.layers] == sample


def test_a_run_into_an_output_folder_keeps_it_and_the_store_opens_again(dock, qtbot, tmp_path):
    viewer, widget = dock
    widget.method.value = "saliency"
    widget.targets.value = ["haemorrhage"]
    widget.out_dir.value = tmp_path / "results"
    _run(widget, qtbot)
    assert viewer.layers["overall · saliency"].metadata[RESULTS_FOLDER_KEY] == str(tmp_path / "results")
    assert (tmp_path / "results" / "image_maps.zarr" / "anatomy").is_dir()
    assert widget.session_folder.path is None  # nothing written to a temporary folder
    viewer.window.remove_dock_widget(widget)
    assert "overall · saliency" in viewer.layers  # the user's folder and its layers stay
    assert (tmp_path / "results" / "image_maps.zarr").is_dir()


def test_the_sample_opens_with_its_stack_selected(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-global-xai", "uwf_sample")
    qtbot.waitUntil(lambda: viewer.layers.selection.active is viewer.layers["uwf_sample"], timeout=HANG_GUARD_MS)
    assert tuple(viewer.dims.axis_labels) == ("image", "y", "x")
    names = [layer.name for layer in viewer.layers]
    assert names[0] == "uwf_sample"  # the planted truth layers stay above the stack, where they can be seen


def test_cancel_keeps_partial_results(dock, qtbot):
    viewer, widget = dock
    widget.method.value = "ig"
    widget.params.value = "n_steps=16"
    widget.batch.value = 1
    assert widget.start() is not None
    qtbot.waitUntil(
        lambda: widget.run_panel.bar.value() >= 2 and widget.run_panel.status.text().startswith("explain"),
        timeout=HANG_GUARD_MS,
    )
    with qtbot.waitSignals([widget.run_panel.stopped, widget.feeder.done], timeout=HANG_GUARD_MS):
        widget.run_panel.button.click()  # the Run button became Cancel
    result = widget.last_result
    assert result.cancelled and 0 < result.n_computed < int(result.include.sum())
    assert widget.run_panel.status.text().startswith("cancelled: kept")
    assert map_layer_name("image-wise", "ig", note="CANCELLED") in viewer.layers
    assert widget.run_panel.button.text() == "Explain"


def test_bad_model_and_bad_labels_show_errors_and_the_dock_stays_usable(dock, qtbot, tmp_path):
    viewer, widget = dock
    bad_card = tmp_path / "bad.card.json"
    bad_card.write_text('{"name": "x", "labels": ["a"], "weights": "missing.pt", "format": "torchscript"}')
    widget.model_card.value = bad_card
    with qtbot.waitSignal(widget.run_panel.failed, timeout=HANG_GUARD_MS) as blocker:
        widget.start()
    assert "does not exist" in str(blocker.args[0])
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=HANG_GUARD_MS)
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


def test_main_thread_keeps_turning_while_the_run_computes_and_layers_arrive_one_per_turn(dock, qtbot, monkeypatch):
    """The viewer never freezes: the pipeline runs in a worker thread while the main event loop keeps turning, and
    results are added one layer per event-loop turn.

    Behaviour, not timing (CI shares its cores): the worker runs the real pipeline, then *waits inside the worker*
    until the main thread's timer has ticked three times. That wait can only end if the main loop turns while the
    worker is busy; a pipeline run in the main thread would never see the ticks (hang guard fails the test).
    How long napari itself takes to add one layer is measured in ``benchmarks/bench_ui_stall.py``.
    """
    import threading

    import napari_global_xai._qt._runner as runner
    import napari_global_xai.explain.pipeline as run

    viewer, widget = dock
    widget.method.value = "saliency"
    ticks, in_worker, seen = [0], threading.Event(), threading.Event()
    threads = []
    real_run_explain, real_add_layers = run.run_explain, runner.add_layers

    def run_explain_in_worker(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        result = real_run_explain(*args, **kwargs)
        ticks[0] = 0
        in_worker.set()
        assert seen.wait(HANG_GUARD_S), "the main event loop did not turn while the worker was busy"
        return result

    def tick():
        if in_worker.is_set():
            ticks[0] += 1
            if ticks[0] >= 3:
                seen.set()

    per_call = []

    def add_layers_counted(viewer_, layer_data):
        per_call.append(len(layer_data))
        return real_add_layers(viewer_, layer_data)

    monkeypatch.setattr(run, "run_explain", run_explain_in_worker)
    monkeypatch.setattr(runner, "add_layers", add_layers_counted)
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    with qtbot.waitSignals([widget.run_panel.stopped, widget.feeder.done], timeout=HANG_GUARD_MS):
        widget.start()
    timer.stop()
    assert threads == [False], "run_explain ran in the main thread"
    assert seen.is_set()
    assert per_call and set(per_call) == {1}, f"layers added per event-loop turn: {per_call}"
    assert "overall · saliency" in viewer.layers


def test_plugin_import_does_not_import_torch_or_captum():
    """What keeps napari's start fast: the contributions and docks import torch and captum only when work starts."""
    code = (
        "import napari_global_xai, napari_global_xai._reader, napari_global_xai._sample_data, "
        "napari_global_xai._writer, napari_global_xai._qt.explain_widget; import sys; "
        "print('torch' in sys.modules, 'captum' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_the_dock_reads_the_frame_from_the_card_like_the_cli(tmp_path):
    """A card that does not harmonise laterality: the dock's job (given the layer's left-eye stack) computes the same
    maps as the library on the stored stack, and only the layer shows them mirrored into the viewer's frame."""
    import json

    from napari_global_xai._qt.explain_widget import explain_job
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.models import load_model
    from napari_global_xai.samples import DEMO_CARD_PATH, load_sample_stack

    card = json.loads(DEMO_CARD_PATH.read_text())
    card.update(weights=str(DEMO_CARD_PATH.with_name(card["weights"])), harmonise_laterality=False)
    (tmp_path / "stored.json").write_text(json.dumps(card))
    full = load_sample_stack()
    pick = [int(np.nonzero(full.laterality == side)[0][0]) for side in ("L", "R")]
    stack = full.subset(pick)
    config = ExplainConfig(method="gradcam", subset="all", compute="all")
    dock_result, layers = explain_job(
        stack.to_left_eye(), str(tmp_path / "stored.json"), "cpu", False, config, "s", out_dir=tmp_path / "dock"
    )
    lib_result = run_explain(stack, load_model(tmp_path / "stored.json", device="cpu"), config, out_dir=tmp_path / "l")
    assert dock_result.provenance["frame"] == lib_result.provenance["frame"] == "stored"
    # the same pixels in the same batches (measured: bit for bit), but the check is of the frame, not of bits: it
    # allows float32 rounding of a Grad-CAM pass through the demo net (pass_terms, 4 per channel of its 96-channel
    # CAM layer) and the mass normalisation (tests/_tolerance.py; was rtol=1e-5, atol=1e-7, ~2 % of a mean value)
    # both runs wrote their stores (float16 maps, stored x H*W: rounding to 11 significant bits, rtol 2**-11)
    maps = np.asarray(lib_result.image_maps)
    net = load_model(tmp_path / "stored.json", device="cpu").module
    terms = mass_normalised_terms(pass_terms(net) + 4 * 96, maps.shape[-2] * maps.shape[-1])
    atol = float32_atol(np.abs(maps).max(), terms)
    np.testing.assert_allclose(np.asarray(dock_result.image_maps), maps, rtol=2**-10, atol=atol)
    from napari_global_xai._layers import MAP_SCALE_KEY

    shown, kwargs = next((data, kw) for data, kw, _ in layers if kw["name"] == "image-wise · gradcam")
    factor = kwargs["metadata"][MAP_SCALE_KEY]["factor"]
    # the layer holds the stored maps x the display factor (one float32 rounding), the right eye's mirrored (copies
    # and flips, exact)
    dock_maps = np.asarray(dock_result.image_maps)
    np.testing.assert_allclose(np.asarray(shown[:, 0]), dock_maps[0] * factor, rtol=2**-23, atol=0)  # left: as computed
    np.testing.assert_allclose(np.asarray(shown[:, 1]), dock_maps[1][..., ::-1] * factor, rtol=2**-23, atol=0)
