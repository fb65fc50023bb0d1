"""The user's world end to end: an archive export (a ``;`` CSV with ``LR`` = OD/OS, extra columns, model labels in
another order and case, one missing) and the user's own network class, saved as a state dict (with its source file),
TorchScript and ``torch.export``, through the CLI's explain, PEPPR and SAG. The maps of every format equal those of
the plain ``nn.Module`` (the state-dict card) wherever the method is defined on that format."""

import json
import warnings

import numpy as np
import pytest
from models.user_net import H, W, save_all_formats
from PIL import Image

from napari_global_xai.cli import main
from napari_global_xai.explain.result import open_explain

from _tolerance import float32_atol, mass_normalised_terms

#: The user's labels, in the network's output order; the CSV has them in another order, one in lower case, and no
#: column for "DR".
LABELS = ["MH", "RP", "AMD", "RVO", "RD", "Gla", "DR"]
N = 8
#: float32 roundings per map value that may differ between formats (tests/_tolerance.py): one forward and backward
#: pass of OddNet is 16 (4 conv/linear reductions × 2 passes × 2 ulp: pass_terms); IG averages 4 of them; a CAM adds
#: its weighted sum of the block layer's 12 channel maps, 4 ulp per channel
FORMAT_TERMS = {"gradcam": 16 + 4 * 12, "hirescam": 16 + 4 * 12, "ig": 16 * 4, "guided_backprop": 16}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_world")
    folder = root / "export"
    folder.mkdir()
    rng = np.random.default_rng(7)
    rows = ["Filename;LR;age;site;Gla;rd;RVO;AMD;rp;mh"]
    for i in range(N):
        image = (rng.random((48, 60, 3)) * 200 + 20).astype(np.uint8)  # not the model's 40×56: resized on read
        image[10:20, 8 + 4 * (i % 3) : 18 + 4 * (i % 3)] = 250  # something for the model to see
        name = f"scan_{i:03d}.png"
        Image.fromarray(image).save(folder / name)
        labels = rng.integers(0, 2, 6)
        labels[: N // 2 if i < 2 else 0] = 1  # every label has positives
        rows.append(
            f"{name};{'OD' if i % 2 else 'OS'};{60 + i};{'Dundee' if i % 3 else 'Glasgow'};"
            + ";".join(str(v) for v in labels)
        )
    csv_path = root / "export.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    _, _, files = save_all_formats(root)
    stats = {
        "labels": LABELS,
        "mean": [0.45, 0.45, 0.45],
        "std": [0.25, 0.25, 0.25],
        "input_size": [H, W],
        "cam_layer": "block",
    }
    cards = {
        "state_dict": {"weights": files["state_dict"].name, "architecture": "oddnet.py:OddNet", **stats},
        "torchscript": {"weights": files["torchscript"].name, **stats},
        "export": {"weights": files["export"].name, **stats},
    }
    paths = {}
    for fmt, card in cards.items():
        paths[fmt] = root / f"user_{fmt}.card.json"
        paths[fmt].write_text(json.dumps(card))
    return folder, csv_path, paths


def _cli(argv, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "method,params", [("gradcam", []), ("ig", ["--param", "n_steps=4"]), ("guided_backprop", []), ("hirescam", [])]
)
def test_every_format_gives_the_plain_modules_global_maps(world, tmp_path, capsys, method, params):
    folder, csv_path, cards = world
    maps, image_scale = {}, {}
    for fmt, card in cards.items():
        out = tmp_path / fmt
        code, stdout, err = _cli(
            [
                "explain",
                str(folder),
                "--labels",
                str(csv_path),
                "--model",
                str(card),
                "--method",
                method,
                *params,
                "--device",
                "cpu",
                "--quiet",
                "--out",
                str(out),
            ],
            capsys,
        )
        assert code == 0, err
        run = open_explain(out)
        gm = run.global_maps
        maps[fmt] = gm
        image_scale[fmt] = float(np.abs(np.asarray(run.image_maps)).max())
        assert gm.labels[:7] == LABELS
        provenance = json.loads((out / "explain_summary.json").read_text())
        assert "DR" in json.dumps(provenance)  # the label without a column is named (predicted positives)
    reference = maps["state_dict"]
    # other formats round in another order: the image maps agree to float32 rounding (FORMAT_TERMS and the mass
    # normalisation over H·W, relative to the largest image map value), the fixed-point means add at most 2**-40, each
    # float32 TIFF half an ulp of the largest global value (was rtol=1e-4, atol=1e-7)
    atol = (
        float32_atol(image_scale["state_dict"], mass_normalised_terms(FORMAT_TERMS[method], H * W))
        + 2.0**-40
        + float32_atol(np.nanmax(np.abs(reference.mean)), 1)
    )
    for fmt in ("torchscript", "export"):
        np.testing.assert_array_equal(maps[fmt].count, reference.count)
        for label in LABELS:
            np.testing.assert_allclose(
                maps[fmt].get(label), reference.get(label), rtol=0, atol=atol, err_msg=f"{method} on {fmt}, {label}"
            )


def test_peppr_and_sag_run_on_the_users_torchscript_model(world, tmp_path, capsys):
    folder, csv_path, cards = world
    card = str(cards["torchscript"])
    code, _, err = _cli(
        [
            "explain",
            str(folder),
            "--labels",
            str(csv_path),
            "--model",
            card,
            "--method",
            "gradcam",
            "--quiet",
            "--out",
            str(tmp_path / "maps"),
        ],
        capsys,
    )
    assert code == 0, err
    code, stdout, err = _cli(
        [
            "peppr",
            str(folder),
            "--labels",
            str(csv_path),
            "--model",
            card,
            "--global-maps",
            str(tmp_path / "maps"),
            "--fractions",
            "0",
            "0.25",
            "0.5",
            "1",
            "--random-seeds",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "peppr"),
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "peppr" / "peppr_summary.json").read_text())
    assert summary["labels"] == [name for name in LABELS if name != "DR"]  # DR has no ground truth: not scored
    assert summary["fractions"] == [0, 0.25, 0.5, 1] and summary["n_images"] == N
    code, stdout, err = _cli(
        [
            "sag",
            str(folder),
            "--labels",
            str(csv_path),
            "--model",
            card,
            "--label",
            "MH",
            "--images",
            "0",
            "--method",
            "gradcam",
            "--quiet",
            "--out",
            str(tmp_path / "sag"),
        ],
        capsys,
    )
    assert code == 0, err
    sag_summary = json.loads((tmp_path / "sag" / "sag_summary.json").read_text())
    assert sag_summary["images"] == ["scan_000"]


def test_gradcam_on_torchscript_stays_defined_after_the_jit_warms_up(tmp_path):
    """TorchScript's profiling executor fuses the forward into one differentiable subgraph after a few calls; the
    layer tap must keep the CAM layer on the autograd path of the output on every call (regression: the third
    batch of a run failed with "differentiated Tensor ... not used in the graph")."""
    import torch

    from napari_global_xai.models.card import LoadedModel, ModelCard
    from napari_global_xai.saliency import get_method

    _, net, files = save_all_formats(tmp_path)
    card = ModelCard(
        labels=LABELS, weights="unused.pt", input_channels=[0, 1, 2], mean=[0.5] * 3, std=[0.25] * 3, cam_layer="block"
    )
    plain = get_method("gradcam", LoadedModel(net, card, torch.device("cpu")))
    scripted = get_method("gradcam", LoadedModel(torch.jit.load(str(files["torchscript"])), card, torch.device("cpu")))
    x = torch.randn(3, 3, H, W, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 3, 6])
    expected = plain.attribute(x, targets)
    # TorchScript against the module: float32 rounding of Grad-CAM (FORMAT_TERMS; was rtol=1e-4, atol=1e-6, ten
    # times this map's largest value, so it could not have failed)
    atol = float32_atol(expected.abs().max(), FORMAT_TERMS["gradcam"])
    for _ in range(5):
        torch.testing.assert_close(scripted.attribute(x, targets), expected, rtol=0, atol=atol)
