"""Bad input, cancel and crashes through the ``global-xai`` CLI: one stderr line, the right exit code, inputs
byte-identical, no hidden or partial files, earlier results kept.

Everything is built here: a 2-output-channel model class of this file (registered as a state_dict architecture, so
its forwards can be counted and made to fail or press Ctrl-C), a 20×36 RGB stack of 8 images with a labels CSV in
the project's plain format, and a model card.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai._method_names import BUILTIN_METHODS
from napari_global_xai.cli import main
from napari_global_xai.data.readers import write_stack_tiff
from napari_global_xai.models.architectures import register_architecture

H, W, N = 20, 36, 10
LABELS = ["drusen", "scar"]
BUILT: list[CountingNet] = []  # every model the CLI builds in this module, newest last


class CountingNet(nn.Module):
    """Reads 2 channels, two logits; counts forwards and, on request, fails or presses Ctrl-C on a gradient pass."""

    def __init__(self, fail_on=0, interrupt_on=0):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 5, 3, padding=1)
        self.conv2 = nn.Conv2d(5, 7, 3, stride=2, padding=1)
        self.head = nn.Linear(7, len(LABELS))
        self.fail_on, self.interrupt_on = fail_on, interrupt_on
        self.forwards = self.grad_forwards = 0
        BUILT.append(self)

    def forward(self, x):
        self.forwards += 1
        if torch.is_grad_enabled():  # explain passes; the probe and the predictions run without gradients
            self.grad_forwards += 1
            if self.grad_forwards == self.fail_on:
                raise RuntimeError(f"planted failure on gradient pass {self.fail_on}")
            if self.grad_forwards == self.interrupt_on:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does; the CLI's handler asks for a cancel
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))


register_architecture("robust-test-net")(CountingNet)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _hidden(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return [str(p) for p in folder.rglob("*") if p.name.startswith(".") or p.suffix in (".partial", ".tmp")]


@pytest.fixture
def inputs(tmp_path, one_torch_thread):
    """``in/`` with stack.tif (+ stack.csv beside it), card.json and weights; a helper to make more cards."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    ids = [f"P{i:03d}" for i in range(N)]
    write_stack_tiff(folder / "stack.tif", pixels, ids)
    rows = ["image,laterality,drusen,scar"] + [f"{ids[i]},{'LR'[i % 2]},{i % 2},{int(i % 3 == 0)}" for i in range(N)]
    (folder / "stack.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(3)
    torch.save(CountingNet().state_dict(), folder / "net.pt")
    BUILT.clear()

    def card(name="card.json", **kwargs):
        data = {
            "name": "counting",
            "labels": LABELS,
            "weights": "net.pt",
            "format": "state_dict",
            "architecture": "robust-test-net",
            "architecture_kwargs": kwargs,
            "input_channels": [2, 0],
            "mean": [0.5, 0.4],
            "std": [0.25, 0.2],
            "cam_layer": "conv2",
        }
        (folder / name).write_text(json.dumps(data))
        return str(folder / name)

    card()
    return folder, card


def _run(capsys, argv):
    code = main(argv + ["--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def _explain(folder, out, *extra):
    return ["explain", str(folder / "stack.tif"), "--model", str(folder / "card.json"), "--out", str(out), *extra]


def _forwards():
    return sum(m.forwards for m in BUILT)


# ------------------------------------------------------------------------------------ bad input, one line each

STACK_ERRORS = {
    # case: (extra argv, exit code, message after "global-xai explain: error: ", most model forwards allowed)
    "n_steps=0": (["--param", "n_steps=0"], 2, "ig: parameter n_steps=0 is not allowed; expected an integer ≥ 1", 0),
    "n_steps=-3": (["--param", "n_steps=-3"], 2, "ig: parameter n_steps=-3 is not allowed; expected an integer ≥ 1", 0),
    "n_steps=abc": (
        ["--param", "n_steps=abc"],
        2,
        "ig: parameter n_steps='abc' is not allowed; expected an integer ≥ 1",
        0,
    ),
    "n_steps=True": (
        ["--param", "n_steps=True"],
        2,
        "ig: parameter n_steps=True is not allowed; expected an integer ≥ 1",
        0,
    ),
    "stdevs=nan": (
        ["--method", "smoothgrad", "--param", "stdevs=nan"],
        2,
        "smoothgrad: parameter stdevs='nan' is not allowed; expected a number ≥ 0",
        0,
    ),
    "baseline": (
        ["--param", "baseline=impute"],
        2,
        "ig: parameter baseline='impute' is not allowed; expected one of 'zero', 'black', 'blur'",
        0,
    ),
    "unknown param": (
        ["--param", "foo=1"],
        2,
        "ig: unknown parameter(s) foo; known: baseline, blur_sigma, integration, internal_batch_size, n_steps",
        0,
    ),
    "param without =": (["--param", "n_steps"], 2, "--param expects NAME=VALUE, got 'n_steps'", 0),
    "unknown method": (
        ["--method", "gradcamm"],
        2,
        f"unknown saliency method 'gradcamm'; choose from {sorted(BUILTIN_METHODS)}",
        0,
    ),
    "unknown target": (
        ["--targets", "Drusen"],
        2,
        "unknown target label(s) ['Drusen']; the model's labels are ['drusen', 'scar']",
        0,
    ),
    "argparse choice": (
        ["--normalisation", "l1"],
        2,
        "argument --normalisation: invalid choice: 'l1' (choose from "
        "'mass', 'max', 'none') (see 'global-xai explain --help')",
        0,
    ),
}


@pytest.mark.parametrize("case", list(STACK_ERRORS))
def test_bad_option_is_one_line_before_any_model_pass(case, inputs, tmp_path, capsys):
    folder, _ = inputs
    extra, code, message, max_forwards = STACK_ERRORS[case]
    before = _digest(folder)
    out = tmp_path / "out"
    got, stdout, err = _run(capsys, _explain(folder, out, *extra))
    assert got == code
    assert err.splitlines() == [f"global-xai explain: error: {message}"]
    assert "Traceback" not in err + stdout
    assert _forwards() <= max_forwards
    assert _digest(folder) == before
    assert not out.exists()  # the folder the failed run created is removed again (it stayed empty)
    nested = tmp_path / "new" / "deeper" / "out"
    assert _run(capsys, _explain(folder, nested, *extra))[0] == code
    assert not (tmp_path / "new").exists()  # so are the parents it created


def _bad_inputs(folder: Path, tmp_path: Path, case: str):
    """Build one bad input; return (argv, exit code, message)."""
    stack, card = str(folder / "stack.tif"), str(folder / "card.json")
    out = tmp_path / "out"
    if case == "out is a file":
        (tmp_path / "taken").write_text("keep me")
        return (
            ["explain", stack, "--model", card, "--out", str(tmp_path / "taken")],
            1,
            f"output folder {tmp_path / 'taken'} is a file, not a folder; give a folder (new or existing)",
        )
    if case == "out under a file":
        (tmp_path / "taken").write_text("keep me")
        return (
            ["explain", stack, "--model", card, "--out", str(tmp_path / "taken" / "sub")],
            1,
            f"cannot write to output folder {tmp_path / 'taken' / 'sub'}: Not a directory",
        )
    if case == "labels CSV missing":
        return (
            ["explain", stack, "--model", card, "--labels", str(folder / "nope.csv"), "--out", str(out)],
            1,
            f"labels file not found: {folder / 'nope.csv'}",
        )
    if case == "card not JSON":
        (folder / "bad.json").write_text("{'name': 'single quotes'}")
        return (
            ["explain", stack, "--model", str(folder / "bad.json"), "--out", str(out)],
            1,
            f"cannot read model card {folder / 'bad.json'}: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        )
    if case == "global maps without metadata":
        return (
            ["peppr", stack, "--model", card, "--global-maps", stack, "--out", str(out)],
            1,
            f"{stack}: not a global-maps file (no label names in its metadata); give an explain results folder "
            "(or its image_maps.zarr, or a global_maps.tif of 'global-xai explain --format tiff / --export-tiff')",
        )
    if case == "global maps folder not an explain run":
        return (
            ["peppr", stack, "--model", card, "--global-maps", str(folder), "--out", str(out)],
            1,
            f"{folder} is not an explain output folder: explain_summary.json is missing (run 'global-xai explain "
            "... --out FOLDER' first)",
        )
    if case == "global maps not a TIFF":
        return (
            ["peppr", stack, "--model", card, "--global-maps", str(folder / "stack.csv"), "--out", str(out)],
            1,
            None,
        )
    if case == "corrupt image":
        from PIL import Image

        images = folder / "pngs"
        images.mkdir()
        rng = np.random.default_rng(1)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(images / f"im{i}.png")
        data = (images / "im2.png").read_bytes()
        (images / "im2.png").write_bytes(data[: len(data) // 2])  # header fine, pixels cut off
        return (
            ["explain", str(images), "--model", card, "--out", str(out)],
            1,
            f"{images / 'im2.png'}: cannot decode image 'im2' (OSError: image file is truncated)",
        )
    if case == "NaN pixels":
        pixels = np.random.default_rng(2).random((4, H, W, 3)).astype(np.float32)
        pixels[1, 3, 4, 0] = np.nan
        write_stack_tiff(folder / "nan.tif", pixels, [f"n{i}" for i in range(4)])
        return (
            ["explain", str(folder / "nan.tif"), "--model", card, "--out", str(out)],
            1,
            f"image 'n1' ({folder / 'nan.tif'}) contains NaN or Inf values",
        )
    if case == "fractions unsorted":
        return (
            [
                "peppr",
                stack,
                "--model",
                card,
                "--global-maps",
                stack,
                "--out",
                str(out),
                "--fractions",
                "0",
                "0.5",
                "0.1",
            ],
            2,
            "fractions must be strictly increasing (no repeats), got [0.0, 0.5, 0.1]",
        )
    if case == "fractions outside [0, 1]":
        return (
            ["peppr", stack, "--model", card, "--global-maps", stack, "--out", str(out), "--fractions", "0.1", "1.5"],
            2,
            "fractions must be numbers in [0, 1], got [0.1, 1.5]",
        )
    if case == "negative random seeds":
        return (
            ["peppr", stack, "--model", card, "--global-maps", stack, "--out", str(out), "--random-seeds", "-2"],
            2,
            "argument --random-seeds: invalid non-negative integer value: '-2' (see 'global-xai peppr --help')",
        )
    if case == "sag image index":
        return (
            ["sag", stack, "--model", card, "--label", "scar", "--images", "3", "10", "--out", str(out)],
            2,
            "image index(es) [10] outside the stack's 0..9",
        )
    if case == "sag label":
        return (
            ["sag", stack, "--model", card, "--label", "Scar", "--out", str(out)],
            2,
            "unknown label 'Scar'; the model's labels are ['drusen', 'scar']",
        )
    raise AssertionError(case)


INPUT_CASES = [
    "out is a file",
    "out under a file",
    "labels CSV missing",
    "card not JSON",
    "global maps without metadata",
    "global maps not a TIFF",
    "global maps folder not an explain run",
    "corrupt image",
    "NaN pixels",
    "fractions unsorted",
    "fractions outside [0, 1]",
    "negative random seeds",
    "sag image index",
    "sag label",
]


@pytest.mark.parametrize("case", INPUT_CASES)
def test_bad_input_is_one_line_and_changes_nothing(case, inputs, tmp_path, capsys):
    folder, _ = inputs
    argv, code, message = _bad_inputs(folder, tmp_path, case)
    before, outside = _digest(folder), _digest(tmp_path)
    got, stdout, err = _run(capsys, argv)
    assert got == code
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err + stdout
    if message is None:
        assert lines[0].startswith(f"global-xai {argv[0]}: error: {folder / 'stack.csv'}: not a readable TIFF")
    else:
        assert lines[0] == f"global-xai {argv[0]}: error: {message}"
    assert not any(m.grad_forwards for m in BUILT)  # nothing was explained
    assert _forwards() <= 1  # at most the one-image probe that checks the model fits the stack
    assert _digest(folder) == before and _digest(tmp_path) == outside  # inputs untouched, no output at all
    assert not (tmp_path / "out").exists() and not _hidden(tmp_path)


def test_unwritable_folder_found_before_the_model_runs(inputs, tmp_path, capsys):
    folder, _ = inputs
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        try:  # root ignores mode bits: then this machine cannot make an unwritable folder this way
            (locked / "probe").write_text("")
            (locked / "probe").unlink()
            pytest.skip("running as a user who can write into a read-only folder (root)")
        except PermissionError:
            pass
        got, _, err = _run(capsys, _explain(folder, locked / "run"))
        assert got == 1
        assert err.splitlines() == [
            f"global-xai explain: error: cannot write to output folder {locked / 'run'}: Permission denied"
        ]
        assert _forwards() == 0
    finally:
        locked.chmod(0o755)


def test_unwritable_folder_any_user(inputs, tmp_path, capsys, monkeypatch):
    """The same check where mode bits cannot refuse (root): the probe file cannot be created."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    folder, _ = inputs
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    for command in (
        _explain(folder, tmp_path / "run"),
        [
            "sag",
            str(folder / "stack.tif"),
            "--model",
            str(folder / "card.json"),
            "--label",
            "scar",
            "--out",
            str(tmp_path / "run"),
        ],
    ):
        got, _, err = _run(capsys, command)
        assert got == 1
        assert err.splitlines() == [
            f"global-xai {command[0]}: error: cannot write to output folder {tmp_path / 'run'}: Permission denied"
        ]
    assert _forwards() == 0 and not (tmp_path / "run").exists()


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(inputs, tmp_path, capsys):
    folder, card = inputs
    card("card.json", fail_on=1)
    got, _, err = _run(capsys, _explain(folder, tmp_path / "out", "--method", "saliency"))
    assert got == 1
    assert err.splitlines() == [
        "global-xai explain: error: unexpected RuntimeError: planted failure on gradient "
        "pass 1 (run with --debug for the traceback)"
    ]
    assert not (tmp_path / "out").exists()
    with pytest.raises(RuntimeError, match="planted failure"):
        main(_explain(folder, tmp_path / "out", "--method", "saliency", "--debug", "--quiet"))
    assert not _hidden(tmp_path)


# ------------------------------------------------------------------------------------ crash and cancel


def test_crash_mid_run_leaves_no_partial_and_keeps_the_earlier_result(inputs, tmp_path, capsys):
    """The model raises on its 3rd gradient pass: exit 1, one line, no hidden file, the earlier run's files intact."""
    folder, card = inputs
    out = tmp_path / "out"
    argv = _explain(folder, out, "--param", "n_steps=2", "--subset", "all", "--format", "tiff")
    assert _run(capsys, argv)[0] == 0
    earlier = _digest(out)
    assert "image_maps.tif" in earlier and "explain_summary.json" in earlier
    card("card.json", fail_on=3)
    before = _digest(folder)
    got, _, err = _run(capsys, argv)
    assert got == 1
    assert err.splitlines() == [
        "global-xai explain: error: unexpected RuntimeError: planted failure on gradient "
        "pass 3 (run with --debug for the traceback)"
    ]
    assert BUILT[-1].grad_forwards == 3  # it really failed mid-run, after two finished batches
    assert _hidden(out) == [] and _digest(out) == earlier and _digest(folder) == before


def test_cancelled_explain_exits_130_with_the_marked_partial_result(inputs, tmp_path, capsys):
    """Ctrl-C during the first batch: that batch finishes, nothing more; the partial maps are the real maps."""
    import tifffile

    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.data import read_stack
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.models import load_model

    folder, card = inputs
    card("cancel.json", interrupt_on=1)
    out = tmp_path / "out"
    before = _digest(folder)
    argv = [
        "explain",
        str(folder / "stack.tif"),
        "--model",
        str(folder / "cancel.json"),
        "--out",
        str(out),
        "--param",
        "n_steps=2",
        "--subset",
        "all",
        "--format",
        "tiff",
    ]
    got, stdout, err = _run(capsys, argv)
    assert got == 130
    assert "(CANCELLED)" in stdout
    summary = json.loads((out / "explain_summary.json").read_text())
    assert summary["status"] == "CANCELLED" and summary["cancelled"] is True
    assert summary["provenance"]["status"] == "CANCELLED"
    done, total = summary["maps_computed"], summary["provenance"]["n_maps_selected"]
    assert total == N * len(LABELS) and 0 < done < total
    assert err.splitlines()[-1] == (
        f"global-xai explain: cancelled: partial result ({done} of {total} maps) written, marked CANCELLED"
    )
    assert "Traceback" not in err and _hidden(out) == [] and _digest(folder) == before
    # the finished maps equal those of an uncancelled run; the others are absent (0) and flagged in predictions.csv
    full = run_explain(
        read_stack(folder / "stack.tif"),
        load_model(folder / "card.json", device="cpu"),
        ExplainConfig(method="ig", params={"n_steps": 2}, subset="all"),
    )
    partial = tifffile.imread(out / "image_maps.tif")
    flags = np.loadtxt(out / "predictions.csv", delimiter=",", skiprows=1, usecols=(5, 6), dtype=int)
    assert flags.sum() == done
    np.testing.assert_allclose(partial[flags.astype(bool)], full.image_maps[flags.astype(bool)], atol=1e-6)
    assert not partial[~flags.astype(bool)].any()


def _interrupt_at_first_progress_report(monkeypatch):
    from napari_global_xai.cli import _common

    report = _common._TerminalProgress.__call__

    def report_then_interrupt(self, done, total, stage):
        report(self, done, total, stage)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C right after the first finished step

    monkeypatch.setattr(_common._TerminalProgress, "__call__", report_then_interrupt)


@pytest.mark.parametrize("when", ["first gradient pass", "first finished group"])
def test_cancelled_sag_exits_130_with_the_finished_images_marked(when, inputs, tmp_path, capsys, monkeypatch):
    """SAG searches 8 images per group: a cancel in the first group writes nothing, after it the 8 finished images."""
    folder, card = inputs
    card("cancel.json", interrupt_on=1 if when == "first gradient pass" else 0)
    if when == "first finished group":
        _interrupt_at_first_progress_report(monkeypatch)
    out = tmp_path / "out"
    argv = [
        "sag",
        str(folder / "stack.tif"),
        "--model",
        str(folder / "cancel.json"),
        "--label",
        "drusen",
        "--method",
        "saliency",
        "--images",
        *map(str, range(N)),
        "--out",
        str(out),
    ]
    got, stdout, err = _run(capsys, argv)
    assert got == 130
    assert "Traceback" not in err and _hidden(tmp_path) == []
    if when == "first gradient pass":
        assert err.splitlines()[-1] == "global-xai sag: cancelled before any result was complete; nothing written"
        assert not out.exists()
        return
    summary = json.loads((out / "sag_summary.json").read_text())
    assert summary["status"] == "CANCELLED" and summary["cancelled"] is True
    assert summary["images"] == [f"P{i:03d}" for i in range(8)] and summary["n_requested"] == N
    assert sorted(p.name for p in out.glob("sag_P*.json")) == [f"sag_P{i:03d}.json" for i in range(8)]
    assert "cancelled after 8 of 10 images" in stdout
    assert (
        err.splitlines()[-1] == "global-xai sag: cancelled: partial result (8 of 10 images) written, marked CANCELLED"
    )


def test_cancelled_concepts_exits_130_with_the_partial_result_marked(inputs, tmp_path, capsys, monkeypatch):
    """Ctrl-C after the first chunk of features: training stops at once, the partial concepts are written, marked."""
    folder, _ = inputs
    _interrupt_at_first_progress_report(monkeypatch)
    out = tmp_path / "concepts"
    argv = ["concepts", str(folder / "stack.tif"), "--model", str(folder / "card.json"), "--k", "2", "--out", str(out)]
    got, _stdout, err = _run(capsys, argv)
    assert got == 130
    summary = json.loads((out / "concepts.json").read_text())
    assert summary["cancelled"] is True and summary["status"] == "CANCELLED"
    assert err.splitlines()[-1] == "global-xai concepts: cancelled: partial result written, marked CANCELLED"
    assert "Traceback" not in err and _hidden(tmp_path) == []


def test_cancelled_peppr_exits_130_and_writes_nothing(inputs, tmp_path, capsys, monkeypatch):
    """Ctrl-C at PEPPR's first progress report: curves need every fraction, so nothing is written."""
    folder, _ = inputs
    maps = tmp_path / "maps"
    assert _run(capsys, _explain(folder, maps, "--method", "saliency"))[0] == 0
    _interrupt_at_first_progress_report(monkeypatch)
    out = tmp_path / "peppr"
    got, _, err = _run(
        capsys,
        [
            "peppr",
            str(folder / "stack.tif"),
            "--model",
            str(folder / "card.json"),
            "--global-maps",
            str(maps),
            "--out",
            str(out),
            "--random-seeds",
            "1",
        ],
    )
    assert got == 130
    assert err.splitlines()[-1] == "global-xai peppr: cancelled before any result was complete; nothing written"
    assert "Traceback" not in err and not out.exists()


def test_peppr_fractions_are_used_with_endpoints_added(inputs, tmp_path, capsys):
    folder, _ = inputs
    maps = tmp_path / "maps"
    assert _run(capsys, _explain(folder, maps, "--method", "saliency"))[0] == 0
    out = tmp_path / "peppr"
    got, stdout, err = _run(
        capsys,
        [
            "peppr",
            str(folder / "stack.tif"),
            "--model",
            str(folder / "card.json"),
            "--global-maps",
            str(maps / "image_maps.zarr"),  # the store alone holds the global maps too
            "--out",
            str(out),
            "--random-seeds",
            "1",
            "--fractions",
            "0.05",
            "0.1",
            "0.5",
        ],
    )
    assert got == 0, err
    assert (
        "note: added fraction(s) 0, 1 (the curves are read against the intact image at both ends); fractions "
        "used: 0, 0.05, 0.1, 0.5, 1"
    ) in stdout
    summary = json.loads((out / "peppr_summary.json").read_text())
    assert summary["fractions"] == [0, 0.05, 0.1, 0.5, 1]


def test_complete_fractions_adds_only_missing_endpoints():
    from napari_global_xai.config import complete_fractions
    from napari_global_xai.errors import UsageError

    assert complete_fractions([0, 0.5, 1]) == ((0.0, 0.5, 1.0), [])
    assert complete_fractions([0.2]) == ((0.0, 0.2, 1.0), [0.0, 1.0])
    assert complete_fractions([0, 0.3]) == ((0.0, 0.3, 1.0), [1.0])
    for bad in ([], [0.5, 0.5], [-0.1, 0.5], [float("inf")]):
        with pytest.raises(UsageError):
            complete_fractions(bad)
