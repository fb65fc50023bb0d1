"""Models as researchers have them: minimal cards, inferred formats, user architectures, the `card` command."""

import json
import sys
import types

import numpy as np
import pytest
import torch

from napari_global_xai.cli import main
from napari_global_xai.models import ModelCard, ModelLoadError, load_model
from napari_global_xai.models.loading import infer_format

from .user_net import N_OUT, H, W, save_all_formats
from _tolerance import float32_atol, forward_terms

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def saved(tmp_path):
    return save_all_formats(tmp_path)


def _assert_same_scores(model, net, x):
    """The loaded model's scores equal the plain module's to float32 rounding: another format and channels-last
    weights round each forward reduction in another order (forward_terms of the scale of the scores,
    tests/_tolerance.py)."""
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(
            model.scores(x), expected, rtol=0, atol=float32_atol(expected.abs().max(), forward_terms(net))
        )


def _minimal_card(tmp_path, weights, **extra):
    path = tmp_path / f"{weights.stem}_{weights.suffix[1:]}.card.json"
    path.write_text(json.dumps({"weights": weights.name, "labels": [f"d{i}" for i in range(N_OUT)], **extra}))
    return path


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors", "torchscript", "export"])
def test_minimal_card_loads_every_format_with_name_format_and_channels_inferred(fmt, saved, tmp_path):
    _, net, files = saved
    assert infer_format(files[fmt]) == fmt
    extra = {"architecture": "oddnet.py:OddNet"} if fmt in ("state_dict", "safetensors") else {}
    notes = []
    model = load_model(_minimal_card(tmp_path, files[fmt], **extra), device="cpu", log=notes.append)
    card = model.card
    assert card.name == files[fmt].stem and card.format == fmt
    assert card.input_channels == [0, 1, 2] and card.mean == [0.0] * 3 and card.std == [1.0] * 3
    if extra:  # the CLI line naming the imported code
        assert notes == [f"importing architecture OddNet from {files['source'].resolve()}"]
    else:
        assert notes == []
    x = torch.randn(3, 3, H, W)
    with torch.no_grad():
        _assert_same_scores(model, net, x)  # was rtol=1e-5, atol=1e-6


def test_package_module_factory_and_kwargs(saved, tmp_path, monkeypatch):
    _, net, files = saved
    monkeypatch.syspath_prepend(str(tmp_path))
    card = _minimal_card(
        tmp_path, files["state_dict"], architecture="oddnet:OddNet", architecture_kwargs={"n_out": 7, "width": 6}
    )
    notes = []
    model = load_model(card, device="cpu", log=notes.append)
    assert notes[0].startswith("importing architecture OddNet from ") and notes[0].endswith("oddnet.py")
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        _assert_same_scores(model, net, x)  # was torch's default rtol=1.3e-6, atol=1e-5


def test_timm_architecture_through_an_injected_timm(saved, tmp_path, monkeypatch):
    """timm cannot be installed beside this torch; a stand-in module checks the call the card makes."""
    src, net, files = saved
    calls = []

    def create_model(name, pretrained, **kwargs):
        calls.append((name, pretrained, kwargs))
        return src.OddNet(n_out=kwargs["num_classes"])

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model, __version__="9.9"))
    card = _minimal_card(
        tmp_path,
        files["state_dict"],
        architecture="timm:resnet34",
        architecture_kwargs={"in_chans": 3, "num_classes": 7},
    )
    notes = []
    model = load_model(card, device="cpu", log=notes.append)
    assert calls == [("resnet34", False, {"in_chans": 3, "num_classes": 7})]
    assert notes == ["importing architecture resnet34 from timm 9.9"]
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        _assert_same_scores(model, net, x)  # was torch's default rtol=1.3e-6, atol=1e-5


def test_clear_lines_for_unusable_state_dicts(saved, tmp_path):
    _, net, files = saved
    with pytest.raises(ModelLoadError, match="holds only weights.*'architecture'"):
        load_model(_minimal_card(tmp_path, files["state_dict"]), device="cpu")
    with pytest.raises(ModelLoadError) as info:
        load_model(
            _minimal_card(
                tmp_path, files["state_dict"], architecture="oddnet.py:OddNet", architecture_kwargs={"n_out": 8}
            ),
            device="cpu",
        )
    msg = str(info.value)
    assert "\n" not in msg and "do not fit architecture 'oddnet.py:OddNet'" in msg
    assert (
        "2 with another shape (head.weight: file (7, 12) vs model (8, 12), head.bias: file (7,) vs model (8,))" in msg
    )
    state = dict(net.state_dict())
    state["extra.weight"] = torch.zeros(1)
    del state["block.0.bias"]
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "ckpt.pth")  # a training checkpoint
    with pytest.raises(ModelLoadError, match=r"1 missing \(block.0.bias\); 1 unexpected \(extra.weight\)"):
        load_model(_minimal_card(tmp_path, tmp_path / "ckpt.pth", architecture="oddnet.py:OddNet"), device="cpu")
    with pytest.raises(ModelLoadError, match="no class or function 'Nope'"):
        load_model(_minimal_card(tmp_path, files["state_dict"], architecture="oddnet.py:Nope"), device="cpu")
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(ModelLoadError, match="full pickled module.*--trust-pickle"):
        load_model(_minimal_card(tmp_path, tmp_path / "whole.pt"), device="cpu")
    with pytest.raises(ModelLoadError, match="needs 'labels'"):
        ModelCard(weights="w.pt")


def test_timm_architecture_without_timm_is_one_line(saved, tmp_path, monkeypatch):
    _, _, files = saved
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(ModelLoadError, match=r"'timm:resnet34' needs timm, which is not importable here.*\[timm\]"):
        load_model(_minimal_card(tmp_path, files["state_dict"], architecture="timm:resnet34"), device="cpu")


def _labels_csv(tmp_path):
    names = [f"Disease{i}" for i in range(N_OUT)]
    rng = np.random.default_rng(0)
    rows = ["image;age;LR;" + ";".join(names)]
    for i in range(5):
        rows.append(f"im{i}.png;{40 + i};{'OD' if i % 2 else 'OS'};" + ";".join(map(str, rng.integers(0, 2, N_OUT))))
    path = tmp_path / "archive.csv"
    path.write_text("\n".join(rows) + "\n")
    return path, names


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors", "torchscript", "export"])
def test_card_command_probes_channels_outputs_and_cam_layers(fmt, saved, tmp_path, capsys):
    _, net, files = saved
    csv, names = _labels_csv(tmp_path)
    out = tmp_path / "cards" / f"{fmt}.json"
    out.parent.mkdir()
    argv = ["card", str(files[fmt]), "--labels", str(csv), "--out", str(out)]
    if fmt in ("state_dict", "safetensors"):
        argv += ["--architecture", f"{files['source']}:OddNet"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "mean/std" in printed.out and "input_channels" in printed.out
    data = json.loads(out.read_text())
    assert data["labels"] == names and data["weights"] == f"../{files[fmt].name}"
    assert data["input_channels"] == [0, 1, 2]
    # spatial layers, deepest first: the block container ends with its ReLU (block.1), after block.0 and down
    assert data["cam_layer"] == "block"
    assert data["provenance"]["probe"]["cam_layer_candidates"][:3] == ["block", "block.1", "block.0"]
    assert data["provenance"]["probe"]["n_outputs"] == N_OUT
    if fmt == "export":  # H, W fixed by the export
        assert data["input_size"] == [H, W]
    else:  # global pooling: any size
        assert data["input_size"] is None
    model = load_model(out, device="cpu")
    x = torch.randn(2, 3, H, W)
    with torch.no_grad():
        _assert_same_scores(model, net, x)  # was rtol=1e-5, atol=1e-6


def test_card_command_without_labels_and_without_architecture(saved, tmp_path, capsys):
    _, _, files = saved
    out = tmp_path / "ts.json"
    assert main(["card", str(files["torchscript"]), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["labels"] == [f"label_{i}" for i in range(N_OUT)]
    assert "labels: 7 placeholders" in capsys.readouterr().out
    assert main(["card", str(files["state_dict"]), "--out", str(tmp_path / "sd.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("global-xai card: error:") and "holds only weights" in err and "\n" not in err
    assert not (tmp_path / "sd.json").exists()
