"""The PEPPR figure takes another image's filmstrip without being rebuilt (the image slider's stall fix): the swapped
figure renders exactly as the figure drawn anew for that image, and a strip of another shape is refused."""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from napari_global_xai._qt.peppr_figure import swap_filmstrip
from napari_global_xai.peppr.drawing import draw_peppr_figure
from napari_global_xai.peppr.view import Filmstrip, PepprView

FRACTIONS = np.array([0, 0.1, 0.5, 1.0])


def _view():
    curves = {("m", "erase", "macro"): 0.9 - 0.3 * FRACTIONS, ("m", "restore", "macro"): 0.5 + 0.4 * FRACTIONS}
    row = {"map": "m", "label": "macro", "A_erase": 0.7, "A_restore": 0.8, "gap": 0.1, "random_gap": 0.0, "p_star": 0.5}
    return PepprView(FRACTIONS, "auroc", "zero", 10, [row], curves)


def _strip(index, seed, side=(12, 16)):
    rng = np.random.default_rng(seed)
    titles = ["map · erase", "map · restore", "random · erase", "random · restore"]
    rows = [(t, rng.integers(0, 256, (len(FRACTIONS), *side, 3), dtype=np.uint8)) for t in titles]
    return Filmstrip(FRACTIONS, rows, image_index=index, map_name="m")


def _render(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def _figure():
    fig = Figure(figsize=(10, 8.5), dpi=60)
    FigureCanvasAgg(fig)
    return fig


def test_a_swapped_filmstrip_renders_as_the_figure_drawn_for_that_image():
    view, first, second = _view(), _strip(3, 0), _strip(17, 1)
    swapped = _figure()
    handles = draw_peppr_figure(swapped, view, first, fraction=0.1)
    before = _render(swapped)
    axes = list(swapped.axes)
    assert swap_filmstrip(handles, first, second)
    assert list(swapped.axes) == axes  # nothing rebuilt
    fresh = _figure()
    draw_peppr_figure(fresh, view, second, fraction=0.1)
    after, expected = _render(swapped), _render(fresh)
    assert np.abs(after.astype(int) - before).max() > 0  # the thumbnails and the title changed
    np.testing.assert_array_equal(after, expected)


def test_a_strip_of_another_shape_is_refused_and_nothing_changes():
    view, first = _view(), _strip(3, 0)
    fig = _figure()
    handles = draw_peppr_figure(fig, view, first, fraction=0.1)
    before = _render(fig)
    other_map = Filmstrip(FRACTIONS, _strip(4, 1).rows, image_index=4, map_name="other")
    fewer = Filmstrip(FRACTIONS[:3], [(t, a[:3]) for t, a in _strip(4, 1).rows], image_index=4, map_name="m")
    for strip in (_strip(4, 1, side=(10, 16)), other_map, fewer):
        assert not swap_filmstrip(handles, first, strip)
    assert not swap_filmstrip(None, first, _strip(4, 1)) and not swap_filmstrip(handles, None, _strip(4, 1))
    np.testing.assert_array_equal(_render(fig), before)
