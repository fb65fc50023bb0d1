"""The SAG dock on the sample data: roots as shapes on the right image, graph drawn, stack summary layer + table."""

import numpy as np
import pytest

from napari_global_xai._qt._layer_pickers import stack_from_layer
from napari_global_xai._qt.sag_widget import SagWidget
from napari_global_xai.samples import load_ground_truth

from _timeouts import HANG_GUARD_MS
from _tolerance import float32_atol, forward_terms


def test_sag_dock_current_image_and_summary(sample_dock, qtbot):
    viewer, dock = sample_dock(SagWidget)
    dock.label.value = "arcade_lesion"
    assert dock.method.value == "igos"  # the official default
    dock.method.value = "gradcam"  # cheaper ranking for the test
    viewer.dims.set_current_step(0, 20)  # sample image 20 has lesions in both arcades
    with qtbot.waitSignals([dock.run_panel.stopped, dock.feeder.done], timeout=HANG_GUARD_MS):
        assert dock.start() is not None
    assert [r.image_index for r in dock.results] == [20]
    roots = viewer.layers["SAG roots · arcade_lesion"]
    assert all(int(s[0, 0]) == 20 for s in roots.data)  # drawn on image 20's slice
    regions = load_ground_truth()["regions"]
    centres = [s[:, 1:].mean(axis=0).astype(int) for s in roots.data]
    in_sup = [regions["superior_arcade"][max(r - 20, 0) : r + 20, max(c - 20, 0) : c + 20].any() for r, c in centres]
    in_inf = [regions["inferior_arcade"][max(r - 20, 0) : r + 20, max(c - 20, 0) : c + 20].any() for r, c in centres]
    assert any(in_sup) and any(in_inf)
    heat = viewer.layers["SAG patch frequency · arcade_lesion"].data
    assert heat.shape == (384, 512) and heat.max() == pytest.approx(1.0)
    assert dock.table.rowCount() >= 2 and dock.table.item(0, 1).text() == "1"
    assert dock.plot.figure.axes and dock.plot.figure.axes[0].images  # the graph is drawn
    title = dock.plot.figure.get_suptitle()
    assert "'arcade_lesion'" in title and "label 2" not in title  # the label by its name, not its index
    assert "done: 1 image(s)" in dock.run_panel.status.text()
    # the graph is drawn natively (no temporary PNG) and its nodes are clickable: a click outlines the node's
    # patches on image 20, exactly the grid cells of patch_masks
    from matplotlib.backend_bases import MouseEvent

    from napari_global_xai.sag import patch_masks

    result = dock.results[0]
    assert sorted(dock.node_axes.values())[: len(result.roots)] == list(range(len(result.roots)))
    child_ax, child = max(dock.node_axes.items(), key=lambda item: item[1])  # the last node drawn
    x, y = child_ax.transAxes.transform((0.5, 0.5))
    dock.plot.canvas.callbacks.process(
        "button_press_event", MouseEvent("button_press_event", dock.plot.canvas, x, y, button=1)
    )
    shown = viewer.layers["SAG node · arcade_lesion"]
    patches = sorted(result.nodes[child].patches)
    assert shown.metadata["napari_global_xai_sag_node"]["patches"] == patches and len(shown.data) == len(patches)
    masks = patch_masks((384, 512), result.grid)
    for rect, p in zip(shown.data, patches):
        rows, cols = np.nonzero(masks[p])
        assert int(rect[0, 0]) == 20
        assert (rect[:, 1].min(), rect[:, 1].max()) == (rows.min(), rows.max() + 1)
        assert (rect[:, 2].min(), rect[:, 2].max()) == (cols.min(), cols.max() + 1)
    assert viewer.dims.current_step[0] == 20
    assert dock.run_panel.status.text().startswith(f"node {child}: {len(patches)} patch(es)")
    assert np.isfinite(heat).all()


def test_sag_dock_refuses_a_clearly_negative_image_in_one_line(sample_dock, qtbot):
    """The current image is negative for the label: one line before any search, no layers, the dock usable."""
    viewer, dock = sample_dock(SagWidget)
    dock.label.value = "disc_swelling"
    truth = stack_from_layer(viewer.layers["uwf_sample"]).labels
    negative = int(np.nonzero(truth.column("disc_swelling") == 0)[0][0])
    viewer.dims.set_current_step(0, negative)
    with qtbot.waitSignal(dock.run_panel.stopped, timeout=HANG_GUARD_MS):
        assert dock.start() is not None
    status = dock.run_panel.status.text()
    assert status.startswith("error: SAG: the chosen image is negative for 'disc_swelling'"), status
    assert "\n" not in status and "p = 0.0" in status
    assert dock.results == [] and not any(layer.name.startswith("SAG") for layer in viewer.layers)
    assert dock.run_panel.button.text() == "Run SAG"


def test_sag_pipeline_warns_in_one_line_on_negative_images(monkeypatch):
    """The core runs on (the CLI prints a ``note:`` line) but names the negative images, their p and the label."""
    import warnings

    import napari_global_xai.sag.pipeline as pipeline
    from napari_global_xai.data.labels import InputNotice
    from napari_global_xai.models import load_model
    from napari_global_xai.samples import load_sample_stack

    stack, model = load_sample_stack(), load_model(None)

    class Searched(Exception):
        pass

    def search(*_a, **_k):
        raise Searched  # the warning comes before any search

    monkeypatch.setattr(pipeline, "run_sag", search)
    negative = int(np.nonzero(stack.labels.column("disc_swelling") == 0)[0][0])
    with warnings.catch_warnings(record=True) as caught, pytest.raises(Searched):
        warnings.simplefilter("always")
        pipeline.run_sag_pipeline(stack, model, "disc_swelling", indices=[negative])
    notes = [str(w.message) for w in caught if issubclass(w.category, InputNotice)]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert notes[0].startswith("SAG: the chosen image is negative for 'disc_swelling' (p(full) < 0.5): ")
    assert repr(stack.image_ids[negative]) in notes[0]


@pytest.mark.slow
def test_sag_dock_all_positives_cancel_keeps_finished_images(sample_dock, qtbot, monkeypatch):
    """Scope "all positives": cancelling after the first group keeps its graphs; the panel follows the slider."""
    # groups of 2 images (8 on CPU by default): the run is cancelled after its first group, so this searches 2-4
    # of the 16 positives instead of 8-16, and still has groups left to cancel
    monkeypatch.setattr("napari_global_xai.batching.CPU_IMAGES_PER_PASS", 2)
    viewer, dock = sample_dock(SagWidget)
    dock.label.value = "arcade_lesion"
    dock.scope.value = "all positives"
    dock.method.value = "gradcam"
    positives = np.nonzero(stack_from_layer(viewer.layers["uwf_sample"]).labels.column("arcade_lesion"))[0]
    with qtbot.waitSignals([dock.run_panel.stopped, dock.feeder.done], timeout=HANG_GUARD_MS):
        assert dock.start() is not None
        qtbot.waitUntil(lambda: dock.run_panel.status.text().startswith("sag:"), timeout=HANG_GUARD_MS)
        dock.run_panel.cancel()  # after the first group of images
    done = [r.image_index for r in dock.results]
    assert 0 < len(done) < len(positives) and set(done) <= set(positives.tolist())
    assert dock.summary["cancelled"] and dock.summary["n_requested"] == len(positives)
    assert dock.run_panel.status.text().startswith(f"cancelled: {len(done)} of {len(positives)} image(s) done")
    roots = viewer.layers["SAG roots · arcade_lesion"]
    assert {int(s[0, 0]) for s in roots.data} == set(done)  # every finished image has its roots on its slice
    assert sum(dock.summary["root_sets"][i]["count"] for i in range(dock.table.rowCount())) <= sum(
        len(r.roots) for r in dock.results
    )
    viewer.dims.set_current_step(0, done[-1])
    assert dock.shown_index == done[-1]  # the graph panel follows the stack slider
    viewer.dims.set_current_step(0, done[0])
    assert dock.shown_index == done[0]


def test_sag_dock_uses_the_chosen_model_card(sample_dock, qtbot, tmp_path):
    """A user's model card replaces the demo model: its labels fill the label list, and SAG explains its output."""
    import torch

    from napari_global_xai.models import ModelCard
    from napari_global_xai.models.architectures import DemoNet

    torch.manual_seed(3)
    net = DemoNet(n_labels=2, widths=(4, 8, 8, 8)).eval()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    card = ModelCard(
        name="user net",
        labels=["lesion_a", "lesion_b"],
        weights="net.pt",
        format="state_dict",
        architecture="demo_net",
        architecture_kwargs={"n_labels": 2, "widths": [4, 8, 8, 8]},
        input_channels=[0, 1],
        input_size=[384, 512],
        mean=[0.3, 0.2],
        std=[0.2, 0.1],
    )
    card.to_json(tmp_path / "net.card.json")

    viewer, dock = sample_dock(SagWidget)
    dock.model_card.value = tmp_path / "net.card.json"
    assert list(dock.label.choices) == ["lesion_a", "lesion_b"]
    dock.label.value = "lesion_b"
    dock.method.value = "gradcam"
    viewer.dims.set_current_step(0, 3)
    with qtbot.waitSignals([dock.run_panel.stopped, dock.feeder.done], timeout=HANG_GUARD_MS):
        assert dock.start() is not None
    (result,) = dock.results
    assert result.image_index == 3 and result.label == 1
    # the full-image confidence is this network's, checked with an independent forward pass
    image = stack_from_layer(viewer.layers["uwf_sample"]).to_left_eye().get(3)[..., :2].astype(np.float32)
    x = (torch.from_numpy(image).permute(0, 3, 1, 2) / 255 - torch.tensor([0.3, 0.2]).view(1, 2, 1, 1)) / torch.tensor(
        [0.2, 0.1]
    ).view(1, 2, 1, 1)
    with torch.no_grad():
        expected = torch.sigmoid(net(x))[0, 1].item()
    # an independent forward against the dock's: float32 rounding of the net's forward pass (forward_terms) at the
    # scale of its logits, through a sigmoid of slope <= 1/4 (tests/_tolerance.py; was rel=1e-4, abs=1e-6)
    with torch.no_grad():
        logit_scale = float(net(x).abs().max())
    assert result.full_confidence == pytest.approx(expected, abs=float32_atol(logit_scale / 4, forward_terms(net)))


def test_screenshot_of_roots_and_graph(sample_dock, qtbot, show_for_screenshot):
    """In a real window: the roots are drawn as yellow rectangles over image 20's slice and the graph is in the dock."""
    from pathlib import Path

    from PIL import Image

    viewer, dock = sample_dock(SagWidget)  # shown for the screenshot only: a shown window repaints on every report
    dock.label.value = "arcade_lesion"
    dock.method.value = "gradcam"
    viewer.dims.set_current_step(0, 20)
    with qtbot.waitSignals([dock.run_panel.stopped, dock.feeder.done], timeout=HANG_GUARD_MS):
        assert dock.start() is not None
    viewer.layers["SAG patch frequency · arcade_lesion"].visible = False
    roots = viewer.layers["SAG roots · arcade_lesion"]
    show_for_screenshot(viewer)
    viewer.reset_view()
    qtbot.wait(300)
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    window = viewer.screenshot(canvas_only=False, flash=False)
    artifacts = Path(__file__).resolve().parents[1] / "_artifacts"
    artifacts.mkdir(exist_ok=True)
    Image.fromarray(window).save(artifacts / "sag_dock.png")
    assert window.shape[1] > canvas.shape[1]  # the dock is in the window shot

    # every root rectangle's top edge is yellow on the canvas (map data coordinates to pixels with the camera)
    h, w = canvas.shape[:2]
    zoom, (cy, cx) = viewer.camera.zoom, viewer.camera.center[-2:]

    def yellow_on_edge(rect):
        (r0, c0), (_, c1) = rect[0, 1:], rect[1, 1:]
        row = int(round((r0 - cy) * zoom + h / 2))
        cols = np.round((np.linspace(c0, c1, 9)[2:-2] - cx) * zoom + w / 2).astype(int)
        px = canvas[row - 1 : row + 2][:, cols, :3].astype(int).reshape(-1, 3)
        return ((px[:, 0] > 180) & (px[:, 1] > 180) & (px[:, 2] < 100)).any()

    assert len(roots.data) >= 2 and all(yellow_on_edge(rect) for rect in roots.data)
    # the graph panel holds a drawn figure (an image with the root patches), not an empty axes
    graph = dock.plot.figure.axes[0].images[0].get_array()
    assert graph.shape[0] > 100 and np.asarray(graph).std() > 0.05


def test_rectangles_follow_the_layer_frame_for_right_eyes():
    """A run in the stored frame (a model that does not harmonise) shown on a left-eye layer: a right eye's patch
    rectangles are mirrored to where the patch is on screen; a left eye's and a same-frame run's are not."""
    from types import SimpleNamespace

    from napari_global_xai._qt.sag_widget import mirrored_on_layer, patch_rectangles, root_rectangles
    from napari_global_xai.data import AlignedStack
    from napari_global_xai.sag import patch_masks

    h, w, grid = 30, 44, (3, 4)
    pixels = np.zeros((2, h, w, 3), np.uint8)
    stored = AlignedStack(pixels, ["a", "b"], laterality=["R", "L"])
    left = stored.to_left_eye()
    masks = patch_masks((h, w), grid)
    patch = 5  # row 1, col 1 of the 3 x 4 grid
    for image, expect_mirror in ((0, True), (1, False)):
        mirror = mirrored_on_layer(stored, left, image)
        assert mirror is expect_mirror
        (rect,) = patch_rectangles([patch], grid, image, (h, w), mirror)
        on_screen = masks[patch][:, ::-1] if expect_mirror else masks[patch]  # the layer mirrors right eyes
        rows, cols = np.nonzero(on_screen)
        assert (rect[:, 1].min(), rect[:, 1].max()) == (rows.min(), rows.max() + 1)
        assert (rect[:, 2].min(), rect[:, 2].max()) == (cols.min(), cols.max() + 1)
    assert not mirrored_on_layer(left, left, 0)  # same frame: drawn as computed
    result = SimpleNamespace(roots=[frozenset({patch})], grid=grid, image_index=0)
    (shape,), texts = root_rectangles([result], (h, w), lambda i: mirrored_on_layer(stored, left, i))
    (plain,) = patch_rectangles([patch], grid, 0, (h, w))
    assert texts == ["root 1"]
    assert (shape[:, 2].min(), shape[:, 2].max()) == (w - plain[:, 2].max(), w - plain[:, 2].min())
