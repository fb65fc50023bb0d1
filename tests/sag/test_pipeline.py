"""The SAG pipeline on a model built here: the frame is decided once from the card, a cancel keeps finished images,
settings come from one validated SagConfig."""

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch

from napari_global_xai.config import SagConfig
from napari_global_xai.control import Cancelled, RunControl
from napari_global_xai.sag.result import SagRunResult

from ._spot import H, W, confidence_atol
from ._spot import spot_model as _model


def _stored_right_eyes(n: int, seed: int = 1) -> np.ndarray:
    """Right eyes as stored: a bright spot on the right (the left-eye frame puts it on the left)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(60, 120, (n, H, W, 3)).astype(np.uint8)
    for k in range(n):
        r = 8 + 9 * k % 20
        images[k, r : r + 12, W - 18 - 2 * k : W - 4 - 2 * k] = 240
    return images


def _stack(images, laterality):
    from napari_global_xai.data import AlignedStack

    return AlignedStack(images, [f"eye{k}" for k in range(len(images))], laterality=laterality)


CONFIG = SagConfig(method="saliency", fill="zero", grid=(4, 4), max_root_size=4, images_together=1)


def _same(a, b):
    """Same search, same confidences: the same pixels in the same batches, so the same arithmetic (measured: bit for
    bit); the check is of the frame, not of bits, so it allows float32 rounding (_spot.confidence_atol for the zero
    fill and normalised uint8 pixels, |x| <= 2; was abs=1e-6)."""
    atol = confidence_atol(_model(), torch.tensor([2.0]), 2)
    assert a.full_confidence == pytest.approx(b.full_confidence, abs=atol)
    assert a.all_roots == b.all_roots and a.roots == b.roots
    assert [n.patches for n in a.nodes] == [n.patches for n in b.nodes]
    np.testing.assert_allclose([n.confidence for n in a.nodes], [n.confidence for n in b.nodes], rtol=0, atol=atol)


def test_right_eye_through_the_pipeline_equals_sag_on_the_mirrored_image(tmp_path):
    """Frame decided once, from the card: the pipeline's result for a stored right eye is SAG of the mirrored image
    (and, for a card that does not harmonise, SAG of the image as stored)."""
    from napari_global_xai.sag import run_sag_pipeline, sag_for_image

    images = _stored_right_eyes(1)
    model = _model()
    run = run_sag_pipeline(_stack(images, ["R"]), model, "spot", CONFIG, indices=[0], out_dir=tmp_path)
    (piped,) = run.results
    mirrored = sag_for_image(model, images[0][:, ::-1], 0, config=CONFIG)
    as_stored = sag_for_image(model, images[0], 0, config=CONFIG)
    _same(piped, mirrored)
    assert mirrored.full_confidence > as_stored.full_confidence + 0.05  # the frame matters for this model
    assert run.stack.frame == "left" and np.array_equal(run.stack.get(0)[0], images[0][:, ::-1])
    assert not run.cancelled and run.n_requested == 1 and run.image_ids == ["eye0"]
    saved = json.loads((tmp_path / "sag_eye0.json").read_text())
    assert saved["roots"] == [sorted(r) for r in piped.roots]
    opened = SagRunResult.open(tmp_path)  # the folder reads back through its result module
    assert opened.label == "spot" and opened.image_ids == ["eye0"] and opened.summary["n_images"] == 1
    assert opened.results[0].roots == piped.roots and opened.results[0].all_roots == piped.all_roots
    assert [n.patches for n in opened.results[0].nodes] == [n.patches for n in piped.nodes]

    unharmonised = _model(harmonise=False)
    (kept,) = run_sag_pipeline(_stack(images, ["R"]), unharmonised, "spot", CONFIG, indices=[0]).results
    _same(kept, sag_for_image(unharmonised, images[0], 0, config=CONFIG))


def test_cancel_returns_the_finished_images_marked_cancelled(tmp_path):
    from napari_global_xai.sag import run_sag_pipeline

    images = _stored_right_eyes(3)
    model = _model()
    full = run_sag_pipeline(_stack(images, ["R", "L", "R"]), model, "spot", CONFIG, indices=[0, 1, 2])
    reports = []
    stop = threading.Event()

    def progress(done, total, stage):
        reports.append((done, total, stage))
        stop.set()  # cancel once the first image group is done

    out = tmp_path / "sag"
    run = run_sag_pipeline(
        _stack(images, ["R", "L", "R"]),
        model,
        "spot",
        CONFIG,
        indices=[0, 1, 2],
        out_dir=out,
        control=RunControl(progress, stop),
    )
    assert run.cancelled and run.n_requested == 3 and [r.image_index for r in run.results] == [0]
    assert reports == [(1, 3, "sag")]
    _same(run.results[0], full.results[0])  # what finished is the uncancelled run's result
    summary = json.loads((out / "sag_summary.json").read_text())
    assert summary["status"] == "CANCELLED" and summary["cancelled"] and summary["n_requested"] == 3
    assert summary["images"] == ["eye0"] and summary["n_images"] == 1
    assert sorted(p.name for p in out.glob("sag_eye*.json")) == ["sag_eye0.json"]
    with pytest.raises(TypeError):  # no longer unpacks as the (results, summary) pair: one result type
        results, summary = run

    with pytest.raises(Cancelled) as info:  # nothing finished: raised, carrying the empty partial result
        run_sag_pipeline(
            _stack(images, ["R", "L", "R"]),
            model,
            "spot",
            CONFIG,
            indices=[0, 1],
            out_dir=tmp_path / "none",
            control=RunControl(cancel=lambda: True),
        )
    partial = info.value.partial
    assert partial.cancelled and partial.results == [] and partial.n_requested == 2
    assert not list((tmp_path / "none").glob("sag_*"))


def test_settings_come_from_one_validated_config():
    from napari_global_xai.config import BLUR_SIGMA_FRACTION
    from napari_global_xai.sag import sag_for_image

    config = dataclasses.replace(CONFIG, fill="blur", max_root_size=0)
    assert config.fill == "blur" and config.max_root_size is None and config.grid == (4, 4)
    with pytest.raises(ValueError, match="SagConfig.fill: unknown value 'grey'"):
        SagConfig(fill="grey")
    with pytest.raises(TypeError, match="beam"):  # settings are no keywords of the functions
        sag_for_image(_model(), _stored_right_eyes(1)[0], 0, beam=3)
    with pytest.raises(ValueError, match="figure_formats"):
        SagConfig(figure_formats=("jpg",))
    # the config drives a run; the result records the blur width actually used
    result = sag_for_image(
        _model(),
        _stored_right_eyes(1)[0][:, ::-1],
        0,
        SagConfig(method="saliency", fill="blur", grid=(4, 4), max_root_size=2, max_roots=1),
    )
    assert result.params["fill"] == "blur" and result.params["max_root_size"] == 2
    assert result.params["fill_sigma"] == pytest.approx(BLUR_SIGMA_FRACTION * H)
