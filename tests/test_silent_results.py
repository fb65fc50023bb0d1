"""No silent wrong result: inputs and models that used to give exit 0 and a meaningless result (or a raw OS error,
a hidden file, an empty folder) are refused or reported in one line, each tried as a user would through the CLI.

Everything is built here: the user's network class (saved as TorchScript, in variants that return NaN for some or
all images, or a constant score for a label), a small ResNet-style network for the CAM notes, a 16×24 RGB stack of
6 images (bright and dark ones alternating) with a labels CSV, and the model cards.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from napari_global_xai.cli import main
from napari_global_xai.data.readers import write_stack_tiff

H, W, N = 16, 24, 6
LABELS = ["drusen", "scar"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class UserNet(nn.Module):
    """The user's network: conv, ReLU, strided conv, ReLU, global mean, linear head. ``mode`` plants a fault:
    1 NaN outputs for the bright images only, 2 NaN for every image that is not blank, 3 NaN always,
    4 a constant score for the second label, 5 constant scores for both labels."""

    def __init__(self, mode: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.head = nn.Linear(6, 2)
        self.mode = mode

    def forward(self, x):
        out = self.head(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))
        nan = torch.full_like(out, float("nan"))
        if self.mode == 1:
            out = torch.where(x[:, 0].mean(dim=(1, 2))[:, None] > 0, nan, out)
        elif self.mode == 2:
            out = torch.where(x.abs().sum(dim=(1, 2, 3))[:, None] > 0, nan, out)
        elif self.mode == 3:
            out = nan
        elif self.mode == 4:
            out = torch.stack([out[:, 0], 0 * out[:, 1] + 1.0], dim=1)
        elif self.mode == 5:
            out = 0 * out + 1.0
        return out


class ResNetTail(nn.Module):
    """A ResNet's shape in small: a stem, one residual block ending in a ReLU, global average pooling, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.c1, self.c2 = nn.Conv2d(8, 8, 3, 1, 1), nn.Conv2d(8, 8, 3, 1, 1)
        self.block = nn.ReLU()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        s = self.stem(x)
        return self.fc(self.block(self.c2(torch.relu(self.c1(s))) + s).mean(dim=(2, 3)))


@pytest.fixture
def world(tmp_path):
    """``in/`` with stack.tif + stack.csv (image i is bright when i is even), and ``card(**changes)`` writing a
    card for ``UserNet(mode)`` saved as TorchScript."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    pixels = np.stack(
        [rng.integers(150, 256, (H, W, 3)) if i % 2 == 0 else rng.integers(0, 100, (H, W, 3)) for i in range(N)]
    )
    ids = [f"E{i:02d}" for i in range(N)]
    write_stack_tiff(folder / "stack.tif", pixels.astype(np.uint8), ids)
    rows = ["image,drusen,scar"] + [f"{ids[i]},{int(i < 4)},{int(i % 3 == 0)}" for i in range(N)]
    (folder / "stack.csv").write_text("\n".join(rows) + "\n")

    def card(mode=0, name="card.json", **changes):
        torch.manual_seed(0)
        torch.jit.script(UserNet(mode)).save(str(folder / f"net{mode}.pt"))
        data = {"labels": LABELS, "weights": f"net{mode}.pt", "mean": [0.5] * 3, "std": [0.2] * 3, **changes}
        (folder / name).write_text(json.dumps(data))
        return str(folder / name)

    return folder, card


def _cli(capsys, argv, quiet=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the CLI prints its own warnings as one line each
        code = main([*argv, "--quiet"] if quiet else argv)
    out, err = capsys.readouterr()
    return code, out, err


def _explain(folder, card, out, *extra):
    return ["explain", str(folder / "stack.tif"), "--model", card, "--out", str(out), "--method", "saliency", *extra]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------------------------------- model and probabilities


def test_card_with_a_zero_std_is_refused_in_one_line_before_any_work(world, tmp_path, capsys):
    folder, card = world
    path = card(std=[0, 0, 0])
    code, out, err = _cli(capsys, _explain(folder, path, tmp_path / "out"))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"global-xai explain: error: model card {path}: model card std must be finite numbers > 0 (inputs are "
        "divided by it), got [0, 0, 0]; a zero std would make every input and probability NaN or infinite: set the "
        "per-channel std used in training"
    ]
    assert not (tmp_path / "out").exists()
    from napari_global_xai.models.card import ModelCard, ModelLoadError

    for bad in ({"std": [0.2, float("nan"), 0.2]}, {"mean": [0.5, float("inf"), 0.5]}, {"pixel_scale": 0}):
        with pytest.raises(ModelLoadError):
            ModelCard(labels=LABELS, weights="w.pt", **{"mean": [0.5] * 3, "std": [0.2] * 3, **bad})


def test_a_model_that_returns_nan_for_a_blank_input_is_refused_before_any_work(world, tmp_path, capsys):
    folder, card = world
    code, _, err = _cli(capsys, _explain(folder, card(mode=3), tmp_path / "out"))
    assert code == 1
    assert err.splitlines() == [
        "global-xai explain: error: model 'net3' returns NaN or infinite outputs for a blank (all-zero) input, so "
        "every probability and map would be meaningless; check the model file and its card"
    ]
    assert not (tmp_path / "out").exists()


def test_nan_probabilities_of_some_images_are_reported_and_of_every_image_fail(world, tmp_path, capsys):
    folder, card = world
    code, _, err = _cli(capsys, _explain(folder, card(mode=1), tmp_path / "some"))
    assert code == 0
    assert err.splitlines() == [
        "global-xai explain: warning: the model's probabilities are NaN or infinite for 3 of 6 images (E00, E02, "
        "E04): their predictions and maps are meaningless (they never count as predicted positive); check the model "
        "and its card's mean, std and pixel_scale"
    ]
    summary = json.loads((tmp_path / "some" / "explain_summary.json").read_text())["provenance"]
    assert summary["result_warnings"] == [err.splitlines()[0].removeprefix("global-xai explain: warning: ")]
    assert summary["result_meaningless"] is None

    code, _, err = _cli(capsys, _explain(folder, card(mode=2), tmp_path / "all"))
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 3 and lines[0].startswith("global-xai explain: warning: the model's probabilities are NaN")
    assert lines[1].startswith("global-xai explain: warning: no map for labels drusen (all 4 maps all-zero)")
    assert lines[2] == "global-xai explain: error: " + lines[0].removeprefix("global-xai explain: warning: ")
    assert "6 of 6 images (E00, E01, E02, …)" in lines[2]


# ------------------------------------------------------------------------------------------- labels without maps


def test_a_label_without_a_positive_image_is_reported_in_one_line(world, tmp_path, capsys):
    folder, card = world
    path = card()
    rows = (folder / "stack.csv").read_text().splitlines()
    (folder / "none.csv").write_text("\n".join([rows[0]] + [r[: r.rindex(",")] + ",0" for r in rows[1:]]) + "\n")
    argv = _explain(folder, path, tmp_path / "out", "--labels", str(folder / "none.csv"))
    code, out, err = _cli(capsys, argv)
    assert code == 0 and "scar                     0 maps" in out
    assert err.splitlines() == [
        "global-xai explain: warning: no map for label scar (no image in subset 'positive'): its global map is "
        "empty (NaN)"
    ]


def test_no_positive_image_for_any_label_is_refused_before_any_work(world, tmp_path, capsys):
    folder, card = world
    path = card()
    (folder / "zero.csv").write_text("image,drusen,scar\n" + "".join(f"E{i:02d},0,0\n" for i in range(N)))
    code, _, err = _cli(capsys, _explain(folder, path, tmp_path / "out", "--labels", str(folder / "zero.csv")))
    assert code == 1
    assert err.splitlines() == [
        "global-xai explain: error: no image is positive for any target label (drusen, scar) in the labels table, "
        "so subset 'positive' selects no image and every global map would be empty; check the labels CSV, or use "
        "--subset all / predicted (subset='all' / 'predicted')"
    ]
    assert not (tmp_path / "out").exists()
    # every image's map still has a use (e.g. a cohort of false positives): computed, the empty global maps said
    argv = _explain(folder, path, tmp_path / "all", "--labels", str(folder / "zero.csv"), "--compute", "all")
    code, _, err = _cli(capsys, argv)
    assert code == 0 and err.splitlines() == [
        "global-xai explain: warning: no map for labels drusen (no image in subset 'positive'), scar (no image in "
        "subset 'positive'): their global maps are empty (NaN)"
    ]


def test_all_zero_maps_of_a_label_are_reported_and_of_every_label_fail(world, tmp_path, capsys):
    folder, card = world
    code, out, err = _cli(capsys, _explain(folder, card(mode=4), tmp_path / "one", "--subset", "all"))
    assert code == 0 and "6 all-zero maps left out" in out
    assert err.splitlines() == [
        "global-xai explain: warning: no map for label scar (all 6 maps all-zero): its global map is empty (NaN)"
    ]
    code, _, err = _cli(capsys, _explain(folder, card(mode=5), tmp_path / "both", "--subset", "all"))
    assert code == 1
    assert err.splitlines()[-1] == (
        "global-xai explain: error: no label has a map, so every global map is empty (NaN): drusen (all 6 maps "
        "all-zero), scar (all 6 maps all-zero)"
    )


# ------------------------------------------------------------------------------------------- inputs and outputs


def test_a_tiff_with_more_dimensions_than_a_stack_is_refused(world, tmp_path, capsys):
    folder, card = world
    path = card()
    six = np.random.default_rng(0).integers(0, 256, (2, 2, 3, H, W, 3), dtype=np.uint8)
    tifffile.imwrite(folder / "six.tif", six, photometric="rgb")
    code, _, err = _cli(capsys, ["explain", str(folder / "six.tif"), "--model", path, "--out", str(tmp_path / "o")])
    assert code == 1
    assert err.splitlines() == [
        f"global-xai explain: error: {folder / 'six.tif'}: a 6-D image (shape (2, 2, 3, {H}, {W}, 3), axes "
        "'QQQYXS') has more dimensions than a stack of images (n, H, W[, C]); save it as one image per page (n pages "
        "of H×W or H×W×C), e.g. reshape it to (n, H, W, C) before writing"
    ]
    assert not (tmp_path / "o").exists()
    from napari_global_xai.data import read_stack

    tifffile.imwrite(folder / "nchw.tif", six[0, 0, :, :, :, 0][:, None].repeat(2, axis=1))  # (n, C, H, W): a stack
    assert read_stack(folder / "nchw.tif").shape[0] in (3, 6)


def test_output_folder_equal_to_or_inside_an_input_folder_is_refused(world, tmp_path, capsys):
    from PIL import Image

    folder, card = world
    path = card()
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((H, W, 3), 40 * i, np.uint8)).save(images / f"im{i}.png")
    before = _files(images)
    for out, where in ((images, "is"), (images / "results" / "run1", "lies inside")):
        code, _, err = _cli(capsys, ["explain", str(images), "--model", path, "--out", str(out)])
        assert code == 1
        assert err.splitlines() == [
            f"global-xai explain: error: output folder {out} {where} the input folder {images}: the results would "
            "mix with the images and the next run on that folder would meet its own output files; give --out "
            "outside it"
        ]
        assert _files(images) == before


def test_card_never_replaces_an_existing_file_without_overwrite(world, tmp_path, capsys):
    folder, _ = world
    torch.jit.script(UserNet()).save(str(folder / "user.pt"))
    hand_filled = tmp_path / "user.card.json"
    hand_filled.write_text('{"labels": ["drusen", "scar"], "weights": "in/user.pt", "std": [0.21, 0.2, 0.2]}\n')
    before = hand_filled.read_bytes()
    code, out, err = _cli(capsys, ["card", str(folder / "user.pt"), "--out", str(hand_filled)], quiet=False)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"global-xai card: error: card {hand_filled} exists and is never replaced unless asked (it may be filled in "
        "by hand); give another --out, or --overwrite to replace it"
    ]
    assert hand_filled.read_bytes() == before
    code, out, _ = _cli(
        capsys, ["card", str(folder / "user.pt"), "--out", str(hand_filled), "--overwrite"], quiet=False
    )
    assert code == 0 and json.loads(hand_filled.read_text())["labels"] == ["label_0", "label_1"]
    (folder / "notes.pt").write_text("not a model")
    code, _, err = _cli(capsys, ["card", str(folder / "notes.pt"), "--out", str(tmp_path / "new" / "c.json")], False)
    assert code == 1 and err.startswith("global-xai card: error:") and not (tmp_path / "new").exists()


def test_a_failed_write_names_the_file_and_leaves_nothing_hidden(tmp_path, monkeypatch):
    from napari_global_xai.errors import OutputFolderError
    from napari_global_xai.io_utils import atomic_path, atomic_write_text

    def too_large(self, data):
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    target = tmp_path / "out" / "summary.json"
    monkeypatch.setattr(Path, "write_bytes", too_large)
    with pytest.raises(OutputFolderError) as caught:
        atomic_write_text(target, "{}")
    assert str(caught.value) == (
        f"cannot write {target}: File too large (over the file-size limit, ulimit -f, or the file system's largest "
        "file)"
    )
    assert _files(tmp_path / "out") == []
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "out" / "x.tif"):  # a read failing inside: its own
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "input.tif")
    assert _files(tmp_path / "out") == []


def _limited(argv, limit: int, cwd: Path):
    """``global-xai ARGV`` in a child process whose files may not grow beyond ``limit`` bytes (``ulimit -f``); the
    child writes no bytecode and no caches outside ``cwd``, so nothing shared is cut short by the limit."""

    def limit_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": str(cwd / "mpl"),
        "XDG_CACHE_HOME": str(cwd / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    code = "import sys; from napari_global_xai.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv, "--quiet"],
        preexec_fn=limit_files,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="no file-size limit on this system")
def test_under_a_file_size_limit_every_export_names_its_file_and_leaves_no_partial(world, tmp_path):
    folder, card = world
    path = card()
    reason = "File too large (over the file-size limit, ulimit -f, or the file system's largest file)"
    for fmt, limit, file in (("tiff", 2000, "image_maps.tif"), ("zarr", 2000, "image_maps.zarr")):
        out = tmp_path / f"out_{fmt}"
        done = _limited(_explain(folder, path, out, "--subset", "all", "--format", fmt), limit, tmp_path)
        assert done.returncode == 1, done.stderr
        line = done.stderr.strip()
        assert "\n" not in line and "Errno" not in line
        assert line.startswith(f"global-xai explain: error: cannot write {out / file}") and line.endswith(reason)
        assert not [p for p in _files(tmp_path) if Path(p).name.startswith(".") or p.endswith((".partial", ".tmp"))]


# ------------------------------------------------------------------------------------------- empty folders


def test_demo_with_an_unknown_method_leaves_no_folder(tmp_path, capsys):
    for out in (tmp_path / "new" / "demo", tmp_path):  # a new folder, and one that exists (nothing made inside)
        code, _, err = _cli(capsys, ["demo", "--method", "lime", "--out", str(out)])
        assert code == 2 and err.startswith("global-xai demo: error: unknown saliency method 'lime'")
        assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- CAM notes


def _stack_and_model(folder, net, cam_layer):
    from napari_global_xai.data import read_stack
    from napari_global_xai.models import load_model

    torch.manual_seed(1)
    torch.jit.script(net).save(str(folder / "cam.pt"))
    card = {"labels": LABELS, "weights": "cam.pt", "mean": [0.5] * 3, "std": [0.2] * 3, "cam_layer": cam_layer}
    (folder / "cam.json").write_text(json.dumps(card))
    return read_stack(folder / "stack.tif", labels=folder / "stack.csv"), load_model(folder / "cam.json", device="cpu")


@pytest.mark.parametrize("method", ["hirescam", "xgradcam"])
def test_cam_methods_equal_to_gradcam_on_a_resnets_last_block_say_so(method, world):
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.saliency import SaliencyWarning

    folder, _ = world
    torch.manual_seed(2)
    stack, model = _stack_and_model(folder, ResNetTail(), "block")
    with pytest.warns(SaliencyWarning) as caught:
        maps = run_explain(stack, model, ExplainConfig(method=method, subset="all")).global_maps.mean
    assert [str(w.message) for w in caught if issubclass(w.category, SaliencyWarning)] == [
        f"{method} equals gradcam on this model: the gradient at layer 'block' is the same at every position (global "
        "average pooling into a linear head), so the maps are Grad-CAM's exactly; an earlier layer (layer=NAME) gives "
        "a different map"
    ]
    gradcam = run_explain(stack, model, ExplainConfig(method="gradcam", subset="all")).global_maps.mean
    np.testing.assert_allclose(maps, gradcam, rtol=1e-4, atol=1e-6)
    # not said where it does not hold: a ReLU between the layer and the pooling (the user's net)
    stack, model = _stack_and_model(folder, UserNet(), "conv2")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run_explain(stack, model, ExplainConfig(method=method, subset="all"))
    assert not [w for w in seen if "equals gradcam" in str(w.message)]


def _stub_torchvision():
    """pytorch-grad-cam imports torchvision helpers that none of the CAM classes used here calls (see
    tests/saliency/test_cam_family.py); a stand-in whose helpers raise lets it import beside this torch build."""
    import types

    if "torchvision" in sys.modules:
        return

    def unavailable(*_a, **_k):
        raise RuntimeError("torchvision is stubbed in this test")

    tv, transforms = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    functional, ops = types.ModuleType("torchvision.transforms.functional"), types.ModuleType("torchvision.ops")
    transforms.Compose = transforms.Normalize = transforms.ToTensor = unavailable
    functional.resize = ops.box_iou = unavailable
    tv.transforms, transforms.functional, tv.ops = transforms, functional, ops
    sys.modules.update(
        {
            "torchvision": tv,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
            "torchvision.ops": ops,
        }
    )


def test_scorecam_with_mask_align_corners_equals_pytorch_grad_cam_unchanged(world):
    pytest.importorskip("cv2")
    pytest.importorskip("ttach")
    _stub_torchvision()
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from napari_global_xai.saliency import get_method

    folder, _ = world
    stack, model = _stack_and_model(folder, ResNetTail(), "block")
    plain = ResNetTail()
    plain.load_state_dict(model.module.state_dict())
    plain.eval()
    x = model.preprocess(stack.get([0, 1, 2]))
    targets = torch.tensor([0, 1, 0])
    size = (x.shape[-1], x.shape[-2])
    reference = pgc.ScoreCAM(plain, target_layers=[plain.block])(
        input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets]
    )
    ours = {
        aligned: scale_cam_image(
            scale_cam_image(
                get_method("scorecam", model, mask_align_corners=aligned).cam(x, targets)[:, 0].numpy(), size
            )
        )
        for aligned in (True, False)
    }
    np.testing.assert_allclose(ours[True], reference, rtol=0, atol=1e-5)
    assert np.abs(ours[False] - reference).max() > 1e-3  # the house default differs, as documented
