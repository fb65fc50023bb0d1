"""The explain pipeline: pair selection, batching invariance, post-processing, cancel, errors, outputs."""

import numpy as np
import pytest
import tifffile
import torch

from napari_global_xai.config import ExplainConfig
from napari_global_xai.control import RunControl
from napari_global_xai.explain.pipeline import run_explain
from napari_global_xai.explain.result import open_explain
from napari_global_xai.models import ModelLoadError
from napari_global_xai.saliency import normalise_maps, reduce_channels, select_pairs

from .conftest import PASS_TERMS, H, W, make_tiny_stack
from _tolerance import float32_atol, mass_normalised_terms


def batching_atol(maps, passes=1):
    """Tolerance between mass-normalised float32 maps computed in other batches: PASS_TERMS per pass plus the
    normalisation over H·W pixels, relative to the largest map value (tests/_tolerance.py)."""
    return float32_atol(np.abs(maps).max(), mass_normalised_terms(PASS_TERMS * passes, H * W))


def test_select_pairs_rules():
    truth = np.array([[1, 0], [1, 1], [0, 0]])
    prob = np.array([[0.9, 0.6], [0.2, 0.7], [0.1, 0.4]])
    assert select_pairs("positive", truth, prob).tolist() == [[1, 0], [1, 1], [0, 0]]
    assert select_pairs("predicted", None, prob).tolist() == [[1, 1], [0, 1], [0, 0]]
    assert select_pairs("true_positive", truth, prob).tolist() == [[1, 0], [0, 1], [0, 0]]
    assert select_pairs("all", None, prob).all()
    with pytest.raises(ValueError, match="needs ground-truth labels"):
        select_pairs("positive", None, prob)
    # a label without ground truth (known False) falls back, alone, to its predicted positives
    known = np.array([True, False])
    assert select_pairs("positive", truth, prob, known=known).tolist() == [[1, 1], [1, 1], [0, 0]]
    assert select_pairs("true_positive", truth, prob, known=known).tolist() == [[1, 1], [0, 1], [0, 0]]
    assert select_pairs("predicted", truth, prob, known=known).tolist() == [[1, 1], [0, 1], [0, 0]]


def test_postprocessing_definitions():
    attr = torch.tensor([[[[1.0, -2.0]], [[-3.0, 0.5]]]])  # (1, 2, 1, 2)
    np.testing.assert_allclose(reduce_channels(attr, "abs_sum").numpy(), [[[4.0, 2.5]]])
    np.testing.assert_allclose(reduce_channels(attr, "sum").numpy(), [[[-2.0, -1.5]]])
    np.testing.assert_allclose(reduce_channels(attr, "pos_sum").numpy(), [[[1.0, 0.5]]])
    m = torch.tensor([[[1.0, 3.0]], [[0.0, 0.0]]])
    np.testing.assert_allclose(normalise_maps(m, "mass").numpy(), [[[0.25, 0.75]], [[0, 0]]])
    np.testing.assert_allclose(normalise_maps(m, "max").numpy()[0], [[1 / 3, 1.0]])


@pytest.mark.parametrize("method,params", [("ig", {"n_steps": 8}), ("gradcam", {}), ("saliency", {})])
def test_batching_and_chunking_do_not_change_maps(method, params, tiny_model, tiny_stack):
    auto = run_explain(tiny_stack, tiny_model, ExplainConfig(method=method, params=params))
    one = run_explain(
        tiny_stack, tiny_model, ExplainConfig(method=method, params=params, maps_per_call=1, chunk_size=1)
    )
    np.testing.assert_array_equal(auto.computed, one.computed)
    # other batches (8 maps per call against 1): equal to float32 rounding, derived (was rtol=1e-5, atol=1e-8); the
    # fixed-point global means differ by at most the image maps' difference plus the quantum 2**-40 (was atol=1e-9)
    atol = batching_atol(one.image_maps, passes=params.get("n_steps", 1))
    np.testing.assert_allclose(auto.image_maps, one.image_maps, rtol=0, atol=atol)
    np.testing.assert_allclose(auto.global_maps.mean, one.global_maps.mean, rtol=0, atol=atol + 2.0**-40)


def test_subset_positive_computes_only_positive_pairs_and_maps_are_mass_normalised(tiny_model, tiny_stack):
    res = run_explain(tiny_stack, tiny_model, ExplainConfig(method="saliency"))
    truth = tiny_stack.labels.values.astype(bool)
    assert res.subset == "positive"
    np.testing.assert_array_equal(res.computed, truth)
    np.testing.assert_array_equal(res.global_maps.count, truth.sum(0))
    sums = res.image_maps.sum(axis=(2, 3))
    np.testing.assert_allclose(sums[truth], 1.0, rtol=1e-5)
    assert (sums[~truth] == 0).all()


def test_maps_are_in_the_left_eye_frame(tiny_model):
    """A right eye's map equals the map of its mirrored image given as a left eye."""
    stack = make_tiny_stack(4)
    res = run_explain(stack, tiny_model, ExplainConfig(method="saliency", subset="all"))
    mirrored = make_tiny_stack(4)
    mirrored.pixels[1] = stack.pixels[1][:, ::-1]
    mirrored.laterality[1] = "L"
    res2 = run_explain(mirrored, tiny_model, ExplainConfig(method="saliency", subset="all"))
    assert stack.laterality[1] == "R"
    # the model sees the same pixels in the same batches either way (measured: bit for bit), but from other buffers;
    # the check is of the frame, not of bits, so it allows float32 rounding like other batchings (was rtol=1e-5,
    # atol=1e-9)
    np.testing.assert_allclose(res.image_maps[1], res2.image_maps[1], rtol=0, atol=batching_atol(res2.image_maps))
    back = stack.to_stored_frame(np.asarray(res.image_maps))
    np.testing.assert_array_equal(back[1], res.image_maps[1][..., ::-1])  # a pure flip: exact


def test_cancel_keeps_finished_maps(tiny_model, tiny_stack):
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 4  # a few batches in

    res = run_explain(
        tiny_stack,
        tiny_model,
        ExplainConfig(method="saliency", maps_per_call=1, chunk_size=2),
        control=RunControl(cancel=cancel),
    )
    assert res.cancelled
    assert 0 < res.n_computed < tiny_stack.labels.values.sum()
    assert res.global_maps.count.sum() == res.n_computed
    done_sums = res.image_maps.sum(axis=(2, 3))[res.computed]
    np.testing.assert_allclose(done_sums, 1.0, rtol=1e-5)


def test_errors_before_any_long_work(tiny_model, tiny_stack):
    with pytest.raises(ValueError, match="unknown target label"):
        run_explain(tiny_stack, tiny_model, ExplainConfig(targets=["nope"]))
    with pytest.raises(ValueError, match="needs ground-truth labels"):
        run_explain(make_tiny_stack(with_labels=False), tiny_model, ExplainConfig(subset="positive"))
    big = make_tiny_stack()
    big.pixels = np.zeros((6, 40, 48, 3), np.uint8)
    # since issue #10 another size is resized to the card's input_size (lazily, with a notice), not refused
    from napari_global_xai.data import InputNotice

    with pytest.warns(InputNotice, match=r"^6 image\(s\) resized from 40×48 to the model's input size 32×48$"):
        resized = run_explain(big, tiny_model, ExplainConfig(method="saliency"))
    assert resized.image_maps.shape == (6, 3, 32, 48)
    with pytest.raises(ModelLoadError, match=r"expects images of H×W = \(32, 48\)"):
        tiny_model.check_input(big.shape)


def test_outputs_written_and_read_back(tiny_model, tiny_stack, tmp_path):
    res = run_explain(tiny_stack, tiny_model, ExplainConfig(method="gradcam"), out_dir=tmp_path, out_format="tiff")
    for name in (
        "image_maps.tif",
        "global_maps.tif",
        "global_std.tif",
        "predictions.csv",
        "explain_summary.json",
        "global_maps.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    run = open_explain(tmp_path)
    gm = run.global_maps
    assert run.out_format == "tiff" and gm.labels == res.target_labels and run.image_ids == tiny_stack.image_ids
    # the TIFFs hold the same numbers, the float64 means cast to float32 (the only rounding): exact, not just close
    np.testing.assert_array_equal(gm.mean, res.global_maps.mean.astype(np.float32))
    np.testing.assert_array_equal(gm.std, res.global_maps.std.astype(np.float32))
    np.testing.assert_array_equal(run.computed, res.computed)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "image_maps.tif"), np.asarray(res.image_maps))
    assert not list(tmp_path.glob(".*partial")) and not list(tmp_path.glob("*.tmp"))
    lines = (tmp_path / "predictions.csv").read_text().splitlines()
    assert lines[0].startswith("image,p_left_blob") and lines[1].startswith("img0,")


def test_out_of_memory_halves_the_batch_and_loses_nothing(tiny_model, tiny_stack, monkeypatch):
    """A simulated CUDA OOM for big batches: the engine retries smaller, finished maps are kept, result unchanged.

    Saliency shares an image's forward pass between its labels (``shares_path``), so a call carries whole images:
    the 4 images with positive labels (9 maps) go 4, then 2 per call.
    """
    from napari_global_xai.saliency import captum_methods

    reference = run_explain(tiny_stack, tiny_model, ExplainConfig(method="saliency", maps_per_call=1))
    original = captum_methods._SharedGradient.attribute_labels
    sizes = []

    def flaky(self, x, targets):
        sizes.append(len(x))
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, x, targets)

    monkeypatch.setattr(captum_methods._SharedGradient, "attribute_labels", flaky)
    res = run_explain(tiny_stack, tiny_model, ExplainConfig(method="saliency", maps_per_call=8, chunk_size=16))
    assert sizes[:2] == [4, 2] and max(sizes[1:]) <= 2  # halved until it fit, never grew again
    np.testing.assert_array_equal(res.computed, reference.computed)
    # batches of 2 against 1: equal to float32 rounding, derived (was rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(res.image_maps, reference.image_maps, rtol=0, atol=batching_atol(reference.image_maps))


def test_other_model_shapes_one_channel_softmax(tmp_path):
    """A 1-channel softmax classifier on a grayscale stack works for explain and PEPPR, like the demo model."""
    from napari_global_xai.config import PepprConfig
    from napari_global_xai.peppr.pipeline import run_peppr_pipeline

    from .conftest import TinyNet, tiny_card

    torch.manual_seed(1)
    card = tiny_card(activation="softmax", labels=["healthy", "blob"])
    card.input_channels, card.mean, card.std = [0], [0.3], [0.2]
    from napari_global_xai.models import LoadedModel

    model = LoadedModel(TinyNet(n_labels=2, channels=1), card, torch.device("cpu"))
    rgb = make_tiny_stack(6)
    from napari_global_xai.data import AlignedStack, LabelsTable

    grey = rgb.pixels[..., :1].copy()
    truth = rgb.labels.values[:, [0, 0]].copy()
    truth[:, 0] = 1 - truth[:, 1]
    labels = LabelsTable(rgb.image_ids, ["healthy", "blob"], truth, rgb.laterality, None)
    stack = AlignedStack(grey, rgb.image_ids, rgb.laterality, labels)
    for method in ("ig", "gradcam", "occlusion"):
        res = run_explain(
            stack,
            model,
            ExplainConfig(
                method=method,
                params={"n_steps": 4}
                if method == "ig"
                else ({"window": 8, "stride": 8} if method == "occlusion" else {}),
            ),
        )
        assert res.image_maps.shape == (6, 2, 32, 48) and res.n_computed == int(truth.sum())
        np.testing.assert_allclose(res.probabilities.sum(1), 1.0, rtol=1e-5)  # softmax
    peppr = run_peppr_pipeline(stack, model, res.global_maps, PepprConfig(fractions=[0, 0.5, 1], random_seeds=1))
    assert peppr.labels == ["healthy", "blob"] and peppr.n_images == 6
