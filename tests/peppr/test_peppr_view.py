"""The Qt-free figure core: filmstrip thumbnails against the engine's masks, the figure's links, the SAG drawing."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from napari_global_xai.peppr.drawing import draw_peppr_figure, set_highlight, table_cells
from napari_global_xai.peppr.view import PepprView, compute_filmstrip, nearest_index, thumbnail
from napari_global_xai.perturb.rankings import pixel_ranking, random_ranking, removed_mask


def test_thumbnail_is_an_area_mean():
    img = np.arange(6 * 8 * 3, dtype=np.float32).reshape(6, 8, 3)
    small = thumbnail(img, 4)
    assert small.shape == (3, 4, 3)
    assert small[1, 2, 0] == pytest.approx(img[2:4, 4:6, 0].mean())
    assert thumbnail(img, 8) is img  # small enough: untouched


def test_filmstrip_uses_the_engine_masks_and_orders():
    """Without a model the fill is raw 0: every filled pixel of each strip is exactly removed_mask's."""
    rng = np.random.default_rng(1)
    h, w = 12, 20
    image = rng.integers(10, 250, (h, w, 3)).astype(np.uint8)
    gmap = rng.random((h, w))
    fractions = [0, 0.1, 0.5, 1]
    strip = compute_filmstrip(None, image, gmap, fractions, "zero", max_side=64, random_seed=3, image_index=5)
    assert [t for t, _ in strip.rows] == ["map · erase", "map · restore", "random · erase", "random · restore"]
    assert strip.image_index == 5
    for (title, thumbs), ranking in zip(strip.rows, [pixel_ranking(gmap)] * 2 + [random_ranking((h, w), 3)] * 2):
        mode = title.split(" · ")[1]
        assert thumbs.shape == (4, h, w, 3) and thumbs.dtype == np.uint8
        for k, p in enumerate(fractions):
            removed = removed_mask(ranking, (h, w), mode, p)
            np.testing.assert_array_equal(thumbs[k][removed], 0)
            np.testing.assert_array_equal(thumbs[k][~removed], image[~removed])


def _view(n_maps=2):
    f = np.array([0, 0.1, 0.5, 1.0])
    curves, rows = {}, []
    for i in range(n_maps):
        name = f"m{i}"
        curves[(name, "erase", "macro")] = 0.9 - (0.3 + 0.1 * i) * f
        curves[(name, "restore", "macro")] = 0.5 + 0.4 * f
        rows.append(
            {
                "map": name,
                "label": "macro",
                "A_erase": 0.7,
                "A_restore": 0.7 + i,
                "gap": 0.1 * i,
                "random_gap": float("nan"),
                "p_star": 0.5,
            }
        )
    random = {
        ("erase", "macro"): np.array([0.9 - 0.4 * f, 0.88 - 0.4 * f]),
        ("restore", "macro"): np.array([0.5 + 0.4 * f] * 2),
    }
    return PepprView(f, "auroc", "zero", 10, rows, curves, random)


def test_figure_draws_every_map_a_table_and_a_linked_filmstrip():
    view = _view()
    image = np.full((16, 24, 3), 100, np.uint8)
    strip = compute_filmstrip(None, image, np.random.default_rng(0).random((16, 24)), view.fractions, max_side=12)
    fig = Figure(figsize=(8, 7))
    FigureCanvasAgg(fig)
    handles = draw_peppr_figure(fig, view, strip, fraction=0.45)
    ys = {tuple(np.round(line.get_ydata(), 6)) for line in handles.curves_ax.get_lines()}
    for key, curve in view.curves.items():
        assert tuple(np.round(curve, 6)) in ys, key
    assert handles.curves_ax.get_legend() is None  # the legend is outside the curves' axes
    assert list(handles.marker.get_xdata()) == [0.45, 0.45]
    header, rows = table_cells(view)
    assert header == ["map", "label", "A_erase", "A_restore", "gap", "random gap", "p*"]
    assert rows[1] == ["m1", "macro", "0.700", "1.700", "+0.100", "n/a", "0.50"]
    # one image of 4 strips x 4 fractions: each thumbnail's pixels at its tile, a tile per data point, the column
    # nearest the fraction framed, and only it
    mosaic = handles.strip_image.get_array()
    h, w, step_y, step_x = handles.tile
    for r, (_title, thumbs) in enumerate(strip.rows):
        for c in range(4):
            np.testing.assert_array_equal(
                mosaic[r * step_y : r * step_y + h, c * step_x : c * step_x + w, :3], thumbs[c]
            )
            assert handles.tile_at(c * step_x + w / 2, r * step_y + h / 2) == (r, c)
    assert mosaic[:, w:step_x, 3].max() == 0 and mosaic[h:step_y, :, 3].max() == 0  # transparent gutters
    assert nearest_index(view.fractions, 0.45) == 2
    assert [frame.get_visible() for frame in handles.frames] == [False, False, True, False]
    set_highlight(handles, 0)
    assert [frame.get_visible() for frame in handles.frames] == [True, False, False, False]
    labels = [t.get_text() for t in handles.strip_ax.get_xticklabels()]
    assert labels == [f"{f:g}" for f in strip.fractions]
    assert [t.get_text() for t in handles.strip_ax.get_yticklabels()] == [title for title, _ in strip.rows]
    fig.canvas.draw()


def test_sag_figure_maps_axes_to_nodes():
    from napari_global_xai.sag import SagNode, SagResult, draw_sag_figure

    nodes = [
        SagNode(frozenset({0, 5}), 0.8, 0.9, [2, 3]),
        SagNode(frozenset({7}), 0.7, 0.8, []),
        SagNode(frozenset({0}), 0.5, 0.55, []),
        SagNode(frozenset({5}), 0.4, 0.45, []),
    ]
    result = SagResult(
        image_index=4,
        label=0,
        grid=(2, 4),
        full_confidence=0.9,
        roots=[nodes[0].patches, nodes[1].patches],
        nodes=nodes,
        n_forwards=9,
    )
    fig = Figure(figsize=(6, 5))
    FigureCanvasAgg(fig)
    axes = draw_sag_figure(fig, result, np.full((20, 40, 3), 0.5))
    assert sorted(axes.values()) == [0, 1, 2, 3]
    for ax, index in axes.items():
        outlined = len([p for p in ax.patches])
        assert outlined == len(nodes[index].patches)
        assert ax.get_title().endswith(f"{100 * nodes[index].relative:.0f} %")
    # roots sit in the top row, their children below
    top = {i for ax, i in axes.items() if ax.get_subplotspec().rowspan.start == 0}
    assert top == {0, 1}
