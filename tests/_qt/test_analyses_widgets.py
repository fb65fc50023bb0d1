"""The analyses docks on the sample stack: regions (editable labels layer, chart), compare (diverging difference,
significance labels layer), sanity (verdicts and figure)."""

import csv

import numpy as np
import pytest

from napari_global_xai._qt._method_inputs import parse_method_params
from napari_global_xai._qt._runner import add_layers
from napari_global_xai._qt.compare_widget import CompareWidget
from napari_global_xai._qt.regions_widget import RegionsWidget
from napari_global_xai._qt.sanity_widget import SanityWidget
from napari_global_xai.analyses.compare_normalise import prepare_maps
from napari_global_xai.analyses.regions import REGION_NAMES
from napari_global_xai.data.synthetic import GEOMETRY
from napari_global_xai.models import DEMO_CARD_PATH

from _timeouts import HANG_GUARD_MS
from _tolerance import float32_atol, pairwise_sum_terms

pytestmark = pytest.mark.skipif(not DEMO_CARD_PATH.exists(), reason="demo model not trained")


@pytest.fixture(scope="module")
def explained(one_torch_thread, tmp_path_factory):
    """The Explain dock's run on the sample: its results folder (the dock's layers are read from it)."""
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.models import load_model
    from napari_global_xai.samples import load_sample_stack

    stack = load_sample_stack()
    model = load_model(None, device="cpu")
    folder = tmp_path_factory.mktemp("explain")
    config = ExplainConfig(method="gradcam", targets=["haemorrhage", "arcade_lesion"], compute="all")
    return stack, run_explain(stack, model, config, out_dir=folder), folder


def _with_maps(sample_dock, dock_class, explained, **kwargs):
    from napari_global_xai._qt.explain_widget import dock_layer_data
    from napari_global_xai.explain.result import open_explain

    viewer, dock = sample_dock(dock_class, **kwargs)
    stack, result, folder = explained
    add_layers(viewer, dock_layer_data(open_explain(folder), result, stack, "uwf_sample"))
    dock.maps_layer.reset_choices()
    dock.maps_layer.value = viewer.layers["image-wise · gradcam"]
    return viewer, dock


def _run(dock, qtbot, feeder=True):
    """Run the dock and wait for its layers; a failed run fails the test at once with its status line."""
    with qtbot.waitSignal(dock.run_panel.stopped, timeout=HANG_GUARD_MS):
        assert dock.start() is not None
    status = dock.run_panel.status.text()
    assert not status.startswith("error"), status
    if feeder:
        qtbot.waitUntil(lambda: not dock.feeder.busy, timeout=HANG_GUARD_MS)


def test_regions_dock_finds_landmarks_and_uses_edited_regions(sample_dock, explained, qtbot):
    viewer, dock = _with_maps(sample_dock, RegionsWidget, explained)
    dock.n_boot.value = 100
    _run(dock, qtbot)
    regions = viewer.layers["anatomical regions"]
    points = viewer.layers["disc & fovea"].data
    assert np.hypot(*(points[0] - GEOMETRY.disc)) <= 10 and np.hypot(*(points[1] - GEOMETRY.fovea)) <= 10
    assert dock.shown.choices == ("haemorrhage", "arcade_lesion")
    dock.shown.value = "haemorrhage"
    before = dock.current_table()
    assert before.best() == "macula"
    assert dock.table.rowCount() == len(REGION_NAMES)
    assert len(dock.plot.figure.axes[0].patches) >= len(REGION_NAMES)  # bars drawn
    # the user edits the labels layer: the macula becomes part of the posterior pole; the next run uses the edit
    data = np.asarray(regions.data).copy()
    data[data == REGION_NAMES.index("macula") + 1] = REGION_NAMES.index("posterior_pole") + 1
    regions.data = data
    dock.regions.reset_choices()
    dock.regions.value = regions
    _run(dock, qtbot, feeder=False)
    dock.shown.value = "haemorrhage"
    after = dock.current_table()
    assert "macula" not in after.names
    merged = before.row("macula")["mass_share"] + before.row("posterior_pole")["mass_share"]
    assert after.row("posterior_pole")["mass_share"] == pytest.approx(merged)


def test_compare_dock_difference_and_mask(sample_dock, explained, qtbot, tmp_path):
    viewer, dock = _with_maps(sample_dock, CompareWidget, explained)
    stack, result, _folder = explained
    meta = tmp_path / "meta.csv"
    with open(meta, "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["file", "haem_status", "age"])
        for image_id, pos in zip(stack.image_ids, stack.labels.column("haemorrhage")):
            w.writerow([image_id, "yes" if pos else "no", 50])
    dock.csv.value = str(meta)
    assert list(dock.column.choices) == ["haem_status", "age"]
    dock.column.value = "haem_status"
    dock.label.value = "haemorrhage"
    dock.groups.value = "yes, no"
    dock.n_permutations.value = 500
    assert dock.normalisation.value == "raw"  # the default; these maps sum to 1 per image, so raw would be refused
    dock.normalisation.value = "shares"
    dock.smooth.value = "0"  # per-pixel maps: the difference below is the plain difference of the groups' means
    _run(dock, qtbot)
    diff = viewer.layers["difference haem_status=yes − haem_status=no"]
    lo, hi = diff.contrast_limits
    assert lo == pytest.approx(-hi) and diff.colormap.name == "difference (clear at 0)"  # transparent at 0, not bwr
    mask = viewer.layers["significant (FDR 0.05): 1 = haem_status=yes higher, 2 = haem_status=no higher"]
    assert mask.contour == 2  # outlines: the anatomy inside the significant regions stays visible
    assert (np.asarray(mask.data) == 1).sum() > 0
    pos = stack.labels.column("haemorrhage").astype(bool)
    maps = prepare_maps(np.asarray(result.image_maps[:, 0]), "shares")
    # two float32 means (numpy's pairwise sums over the images, then a division) and their difference, against the
    # dock's own arithmetic: float32 rounding of the largest map value (tests/_tolerance.py; was atol=1e-5, more than
    # a mass-normalised map's typical value)
    terms = 2 * (pairwise_sum_terms(len(maps)) + 1) + 1
    expected = maps[pos].mean(0) - maps[~pos].mean(0)
    np.testing.assert_allclose(diff.data, expected, rtol=0, atol=float32_atol(np.abs(maps).max(), terms))
    assert "significant at FDR" in dock.summary.text() and "compared: shares: each map divided" in dock.summary.text()
    assert "p-floor" in dock.summary.text()
    # bad input: one line in the status, no run
    dock.groups.value = "yes"
    assert dock.start() is None and dock.run_panel.status.text().startswith("error: groups")


def test_sanity_dock_verdicts_and_figure(sample_dock, qtbot, one_torch_thread):
    _viewer, dock = sample_dock(SanityWidget)
    dock.methods.value = ["gradcam"]
    dock.params.value = ""
    dock.n_images.value = 6
    dock.independent.value = False
    with qtbot.waitSignal(dock.run_panel.stopped, timeout=HANG_GUARD_MS):
        assert dock.start() is not None
    assert dock.verdicts.text().startswith("gradcam · image-wise: passes: randomised |ρ|")
    assert "gradcam · global:" in dock.verdicts.text()  # the global verdict beside the image-wise one
    axes = dock.plot.figure.axes
    assert len(axes) >= 3 and len(axes[0].lines) >= 1
    assert list(axes[0].lines[0].get_ydata()[:1]) == [1.0]  # the original maps compared with themselves
    assert parse_method_params("ig.n_steps=8, ig.baseline='blur'", ["ig"]) == {"ig": {"n_steps": 8, "baseline": "blur"}}
    with pytest.raises(ValueError, match="method.name=value"):
        parse_method_params("n_steps=8", ["ig"])
