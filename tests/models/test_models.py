"""Model cards, safe loading in every supported format, device choice, fit checks, and the demo model's AUROC."""

import json

import numpy as np
import pytest
import torch

from napari_global_xai.data.synthetic import LABELS, generate_stack
from napari_global_xai.models import (
    DEMO_CARD_PATH,
    LoadedModel,
    ModelCard,
    ModelLoadError,
    load_model,
)
from napari_global_xai.models.architectures import DemoNet
from napari_global_xai.models.device import available_devices, resolve_device

from _tolerance import float32_atol, forward_terms


def _card(tmp_path, fmt, weights, **kw):
    card = ModelCard(
        name="m",
        labels=list(LABELS),
        weights=weights,
        format=fmt,
        architecture="demo_net" if fmt == "state_dict" else None,
        architecture_kwargs={"widths": [4, 8, 8, 8]} if fmt == "state_dict" else {},
        input_channels=[0, 1],
        input_size=[64, 96],
        mean=[0.3, 0.2],
        std=[0.2, 0.1],
        **kw,
    )
    path = tmp_path / f"{fmt}.card.json"
    card.to_json(path)
    return path


@pytest.fixture
def small_net():
    torch.manual_seed(0)
    return DemoNet(widths=(4, 8, 8, 8)).eval()


def _expected(net, x):
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("fmt", ["state_dict", "torchscript", "export", "pickle"])
def test_every_format_loads_and_gives_the_same_outputs(fmt, tmp_path, small_net):
    x = torch.randn(2, 2, 64, 96)
    weights = tmp_path / f"w_{fmt}.pt"
    if fmt == "state_dict":
        torch.save(small_net.state_dict(), weights)
    elif fmt == "torchscript":
        torch.jit.script(small_net).save(str(weights))
    elif fmt == "export":
        static = tmp_path / "static.pt2"
        torch.export.save(torch.export.export(small_net, (x,)), str(static))
        with pytest.raises(ModelLoadError, match="exported for batches of exactly 2 image.*dynamic"):
            load_model(_card(tmp_path, fmt, static.name), device="cpu")
        batch = torch.export.Dim("batch", min=1)
        torch.export.save(torch.export.export(small_net, (x,), dynamic_shapes=({0: batch},)), str(weights))
    else:
        torch.save(small_net, weights)
    card = _card(tmp_path, fmt, weights.name)
    if fmt == "pickle":
        with pytest.raises(ModelLoadError, match="runs arbitrary code.*trust"):
            load_model(card, device="cpu")
    model = load_model(card, device="cpu", trust_pickle=fmt == "pickle")
    expected = _expected(small_net, x)
    # another format and channels-last weights round the forward pass in another order: float32 rounding of its
    # reductions (tests/_tolerance.py; was rtol=1e-4, atol=1e-5)
    atol = float32_atol(expected.abs().max(), forward_terms(small_net))
    with torch.no_grad():
        torch.testing.assert_close(model.scores(x), expected, rtol=0, atol=atol)
    assert not any(p.requires_grad for p in model.module.parameters())


def test_preprocess_selects_channels_and_normalises(tmp_path, small_net):
    torch.save(small_net.state_dict(), tmp_path / "w.pt")
    model = load_model(_card(tmp_path, "state_dict", "w.pt"), device="cpu")
    raw = np.zeros((1, 64, 96, 3), np.uint8)
    raw[..., 0], raw[..., 1], raw[..., 2] = 51, 102, 255
    x = model.preprocess(raw)
    assert x.shape == (1, 2, 64, 96)
    np.testing.assert_allclose(x[0, 0].numpy(), (0.2 - 0.3) / 0.2, rtol=1e-5)
    np.testing.assert_allclose(x[0, 1].numpy(), (0.4 - 0.2) / 0.1, rtol=1e-5)


def test_clear_errors(tmp_path, small_net):
    torch.save(small_net.state_dict(), tmp_path / "w.pt")
    card_path = _card(tmp_path, "state_dict", "w.pt")
    model = load_model(card_path, device="cpu")
    with pytest.raises(ModelLoadError, match=r"expects images of H×W = \(64, 96\) but the stack is \(32, 96\)"):
        model.check_input((4, 32, 96, 3))
    with pytest.raises(ModelLoadError, match=r"reads channels \[0, 1\]; stack has 1"):
        model.check_input((4, 64, 96, 1))
    with pytest.raises(ModelLoadError, match="give the model's card"):
        load_model(tmp_path / "w.pt")
    data = json.loads(card_path.read_text())
    (tmp_path / "typo.json").write_text(json.dumps({**data, "labelz": ["a"]}))
    with pytest.raises(ModelLoadError, match="unknown keys.*labelz"):
        load_model(tmp_path / "typo.json")
    (tmp_path / "arch.json").write_text(json.dumps({**data, "architecture": "resnet_nope"}))
    with pytest.raises(ModelLoadError, match="unknown architecture 'resnet_nope'"):
        load_model(tmp_path / "arch.json")
    (tmp_path / "w_bad.pt").write_bytes(b"not a torch file")
    (tmp_path / "bad.json").write_text(json.dumps({**data, "weights": "w_bad.pt"}))
    with pytest.raises(ModelLoadError, match="cannot load state_dict model"):
        load_model(tmp_path / "bad.json")
    (tmp_path / "gone.json").write_text(json.dumps({**data, "weights": "missing.pt"}))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "gone.json")


def test_model_that_does_not_fit_fails_before_the_run(tmp_path):
    """A card claiming 5 labels for a 3-output model is caught by the probe forward pass."""
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    card = ModelCard(name="wrong", labels=list(LABELS), weights="x", format="torchscript", input_size=None)
    model = LoadedModel(net, card, torch.device("cpu"))
    with pytest.raises(ModelLoadError, match=r"returns shape \(1, 3\), but its card lists 5 labels"):
        model.check_input((2, 20, 20, 3))


def test_devices():
    assert available_devices()[0] == "auto" and available_devices()[-1] == "cpu"
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_demo_model_ships_with_the_package():
    """The demo card and weights are package data: every demo-model test below needs them, none skips without."""
    assert DEMO_CARD_PATH.is_file(), f"shipped demo model card missing: {DEMO_CARD_PATH} (packaging error?)"
    weights = DEMO_CARD_PATH.with_name(ModelCard.from_json(DEMO_CARD_PATH).weights)
    assert weights.is_file() and weights.stat().st_size > 100_000


def test_demo_card_describes_the_model():
    model = load_model(DEMO_CARD_PATH, device="cpu")
    card = model.card
    assert card.labels == list(LABELS) and card.input_size == [384, 512] and card.input_channels == [0, 1]
    assert card.cam_layer and card.format == "state_dict"
    assert sum(p.numel() for p in model.module.parameters()) <= 2_000_000
    assert DEMO_CARD_PATH.with_name(card.weights).stat().st_size <= 10 * 2**20


@pytest.mark.slow
def test_demo_model_reaches_auroc_095_on_fresh_heldout_images():
    from sklearn.metrics import roc_auc_score

    from napari_global_xai.saliency import predict_probabilities

    model = load_model(DEMO_CARD_PATH, device="cpu")
    s = generate_stack(160, seed=4242, split="eval")
    left = s.aligned("left").get(slice(None))
    prob = predict_probabilities(model, left)
    aurocs = {n: roc_auc_score(s.labels[:, k], prob[:, k]) for k, n in enumerate(LABELS)}
    assert min(aurocs.values()) >= 0.95, aurocs
