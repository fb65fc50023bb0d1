"""The resumable Zarr results store of ``global-xai explain``: kill -9 and resume, refusal, overwrite, precision.

Everything is built here: a 2-label CNN class written to a file beside its card (``file.py:Class``), whose gradient
passes can be held at a gate (so the test kills the CLI at a known point, never after a guessed time), a 24×28 RGB
stack of 9 images and a labels CSV.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_global_xai
from napari_global_xai.aggregate import GlobalMapAccumulator
from napari_global_xai.cli import main
from napari_global_xai.control import RunControl
from napari_global_xai.data.readers import write_stack_tiff

H, W, N, CHUNK = 24, 28, 9, 2  # 5 chunks: 2, 2, 2, 2, 1 images
LABELS = ["lesion", "scar"]
N_CHUNKS = 5

NET_SOURCE = textwrap.dedent('''
    import os, pathlib, time
    import torch
    from torch import nn


    class GateNet(nn.Module):
        """Two logits. With GATE_RECORDS=<folder> set, a gradient pass waits once two chunk records lie in <folder>
        (writing <folder>/../held) until the file GATE_OPEN exists: the process is then mid-chunk, forever."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(2, 6, 3, padding=1)
            self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            gate = os.environ.get("GATE_RECORDS")
            if gate and torch.is_grad_enabled():
                records = pathlib.Path(gate)
                if len(list(records.glob("chunk-*.npz"))) >= 2:
                    (records.parent.parent / "held").write_text("held")
                    while not pathlib.Path(os.environ["GATE_OPEN"]).exists():
                        time.sleep(0.05)
            return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))
''')


@pytest.fixture
def inputs(tmp_path, one_torch_thread):
    """``in/`` with stack.tif, stack.csv, gate_net.py, net.pt and card.json."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    ids = [f"Q{i:02d}" for i in range(N)]
    write_stack_tiff(folder / "stack.tif", pixels, ids)
    rows = ["image,laterality,lesion,scar"] + [
        f"{ids[i]},{'LR'[i % 2]},{int(i % 3 != 1)},{int(i % 2 == 0)}" for i in range(N)
    ]
    (folder / "stack.csv").write_text("\n".join(rows) + "\n")
    (folder / "gate_net.py").write_text(NET_SOURCE)
    namespace = {}
    exec(compile(NET_SOURCE, str(folder / "gate_net.py"), "exec"), namespace)  # noqa: S102 - the test's own code
    torch.manual_seed(5)
    torch.save(namespace["GateNet"]().state_dict(), folder / "net.pt")
    card = {
        "name": "gate",
        "labels": LABELS,
        "weights": "net.pt",
        "format": "state_dict",
        "architecture": "gate_net.py:GateNet",
        "input_channels": [1, 2],
        "mean": [0.5, 0.4],
        "std": [0.2, 0.3],
        "cam_layer": "conv2",
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def _argv(folder, out, *extra):
    return [
        "explain",
        str(folder / "stack.tif"),
        "--model",
        str(folder / "card.json"),
        "--out",
        str(out),
        "--method",
        "saliency",
        "--subset",
        "all",
        "--device",
        "cpu",
        "--chunk-size",
        str(CHUNK),
        "--quiet",
        *extra,
    ]


def _summary(out) -> dict:
    return json.loads((Path(out) / "explain_summary.json").read_text())


def _rebuilt_global(out):
    """Label-wise mean and std (float64) rebuilt from the store's completion records, merged in chunk order."""
    from napari_global_xai.explain.result import open_explain
    from napari_global_xai.store.fingerprint import settings_hash
    from napari_global_xai.store.records import read_records

    contents = open_explain(out)
    records = read_records(contents.store, LABELS, settings_hash(contents.attrs["settings"]), N_CHUNKS)
    acc = GlobalMapAccumulator(LABELS, (H, W))
    for c in sorted(records):
        acc.merge(records[c].accumulator)
    return acc.result(), contents


def _env():
    env = dict(os.environ)
    src = str(Path(napari_global_xai.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _cli(argv, env, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "napari_global_xai.cli", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _without_import_note(err: str) -> list[str]:
    """stderr lines but the note naming the user's architecture file (printed whenever the card is loaded)."""
    return [line for line in err.splitlines() if not line.startswith("importing architecture")]


def _float16_store_tolerance(store) -> dict:
    """Global means (from the float32 maps) against a mean of the float16-stored maps (was rtol=2e-3, atol=1e-9).

    A stored value is float16(map × map_scale): half a float16 ulp, 2**-11, relative (plus float32's own rounding
    of the scaled and the decoded value, eps32), or half the subnormal spacing, 2**-25 / map_scale, absolute. The
    maps are non-negative (abs_sum), so a mean of such values keeps the relative bound; the fixed-point mean adds at
    most 2**-40.
    """
    scale = float(store.attrs["map_scale"])
    return {"rtol": 2.0**-11 + float(np.finfo(np.float32).eps), "atol": 2.0**-25 / scale + 2.0**-40}


def _hidden(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.name.startswith(".") or p.suffix in (".partial", ".tmp")]


@pytest.mark.slow
def test_kill_9_mid_run_then_the_same_command_finishes_only_the_missing_chunks(inputs, tmp_path):
    folder = inputs
    out, reference = tmp_path / "out", tmp_path / "reference"
    env = _env()
    done = _cli(_argv(folder, reference), env)
    stdout, stderr = done.communicate(timeout=900)  # a hang guard only
    assert done.returncode == 0, stderr
    assert _summary(reference)["provenance"]["n_chunks_computed"] == N_CHUNKS

    gated = dict(env, GATE_RECORDS=str(out / "image_maps.zarr" / "records"), GATE_OPEN=str(tmp_path / "never"))
    proc = _cli(_argv(folder, out), gated)
    try:
        while not (out / "held").exists():  # two chunks recorded, the third one held mid-chunk
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    (out / "held").unlink()
    records = sorted(p.name for p in (out / "image_maps.zarr" / "records").glob("chunk-*.npz"))
    assert records == ["chunk-000000.npz", "chunk-000001.npz"]
    from napari_global_xai.explain.result import open_explain

    killed = open_explain(out)  # readable after the kill, marked as not finished
    assert killed.status == "running" and killed.global_planes is None
    assert np.asarray(killed.image_maps[:4]).any() and not np.asarray(killed.image_maps[4:]).any()

    again = _cli(_argv(folder, out), env)
    stdout, stderr = again.communicate(timeout=900)
    assert again.returncode == 0, stderr
    assert (
        f"global-xai: note: resuming {out / 'image_maps.zarr'}: 2 of {N_CHUNKS} chunks finished earlier are "
        f"reused, {N_CHUNKS - 2} to compute"
    ) in stderr.splitlines()
    prov = _summary(out)["provenance"]
    assert (prov["n_chunks_reused"], prov["n_chunks_computed"]) == (2, N_CHUNKS - 2)
    assert prov["status"] == "complete" and prov["n_maps_computed"] == N * len(LABELS)

    resumed, store = _rebuilt_global(out)
    uninterrupted, ref_store = _rebuilt_global(reference)
    # bit for bit, by construction: both CLI runs cut the same chunks (hence batches) at one thread (_env), and the
    # global sums are int64 fixed point, so neither the resume nor the merge order can change a bit
    assert np.array_equal(resumed.mean, uninterrupted.mean, equal_nan=True)  # float64, bit for bit
    assert np.array_equal(resumed.std, uninterrupted.std, equal_nan=True)
    assert np.array_equal(resumed.count, uninterrupted.count) and resumed.count.tolist() == [N, N]
    assert np.array_equal(np.asarray(store.global_planes), np.asarray(ref_store.global_planes))
    assert np.array_equal(np.asarray(store.image_maps), np.asarray(ref_store.image_maps))
    # the global maps equal an independent mean of the stored float32 maps (computed without the accumulator)
    maps32 = np.asarray(store.image_maps).astype(np.float64)
    assert store.status == "complete"
    np.testing.assert_allclose(resumed.mean, maps32.mean(axis=0), **_float16_store_tolerance(store))
    assert _hidden(out) == []


def test_damaged_records_are_recomputed_and_the_rerun_equals_the_first_run(inputs, tmp_path, capsys):
    """A record whose compressed sums are damaged and one cut short are ignored: the same command recomputes only
    those two chunks, and the global maps equal the first run's to the bit."""
    from napari_global_xai.store.records import record_path

    out = tmp_path / "out"
    assert main(_argv(inputs, out)) == 0
    first, contents = _rebuilt_global(out)
    damaged = dict(np.load(record_path(contents.store, 0)))
    damaged["acc_sum"] = damaged["acc_sum"] ^ np.uint8(0x5A)  # a valid file, its Blosc stream broken
    with open(record_path(contents.store, 0), "wb") as handle:
        np.savez(handle, **damaged)
    cut = record_path(contents.store, 1)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    capsys.readouterr()
    assert main(_argv(inputs, out)) == 0
    prov = _summary(out)["provenance"]
    assert (prov["n_chunks_reused"], prov["n_chunks_computed"]) == (N_CHUNKS - 2, 2)
    again, _ = _rebuilt_global(out)
    np.testing.assert_array_equal(again.mean, first.mean)
    np.testing.assert_array_equal(again.std, first.std)


def test_other_settings_are_refused_and_overwrite_replaces(inputs, tmp_path, capsys):
    folder = inputs
    out = tmp_path / "out"
    assert main(_argv(folder, out)) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code = main(_argv(folder, out, "--map-dtype", "float32", "--reduction", "sum"))
    err = capsys.readouterr().err
    assert code == 1
    assert _without_import_note(err) == [
        f"global-xai explain: error: {out / 'image_maps.zarr'} holds results of other settings (map_dtype: "
        "'float16' -> 'float32'; reduction: 'abs_sum' -> 'sum'); give another output folder, or --overwrite "
        "(overwrite=True) to replace it"
    ]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched
    (folder / "gate_net.py").write_text(NET_SOURCE)  # same code: still the same settings
    torch.save({k: v + 0.01 for k, v in torch.load(folder / "net.pt").items()}, folder / "net.pt")
    assert main(_argv(folder, out)) == 1
    assert "(model_weights: changed)" in capsys.readouterr().err

    assert main(_argv(folder, out, "--map-dtype", "float32", "--overwrite")) == 0
    prov = _summary(out)["provenance"]
    assert (prov["n_chunks_reused"], prov["n_chunks_computed"], prov["map_dtype"]) == (0, N_CHUNKS, "float32")
    from napari_global_xai.explain.result import open_explain

    assert open_explain(out).attrs["settings"]["map_dtype"] == "float32"


def test_cancel_marks_the_store_and_the_resume_equals_an_uninterrupted_run(inputs, tmp_path):
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.data import read_stack
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.explain.result import open_explain
    from napari_global_xai.models import load_model

    folder = inputs
    stack, model = read_stack(folder / "stack.tif"), load_model(folder / "card.json", device="cpu")
    config = ExplainConfig(method="saliency", subset="positive", chunk_size=CHUNK)
    seen = []

    def progress(done, total, stage):
        seen.append(done)

    full = run_explain(stack, model, config, out_dir=tmp_path / "full")
    part = run_explain(
        stack,
        model,
        config,
        out_dir=tmp_path / "part",
        control=RunControl(progress=progress, cancel=lambda: max(seen) >= 3 * CHUNK),
    )  # cancel after 3 chunks were written (progress counts images; within a chunk it stays below the chunk's end)
    assert part.cancelled and open_explain(tmp_path / "part").status == "CANCELLED"
    assert part.provenance["n_chunks_computed"] == 3 and part.computed[6:].sum() == 0
    with pytest.warns(UserWarning, match=f"3 of {N_CHUNKS} chunks finished earlier are reused, 2 to compute"):
        resumed = run_explain(stack, model, config, out_dir=tmp_path / "part")
    assert not resumed.cancelled and resumed.provenance["n_chunks_computed"] == 2
    # bit for bit, by construction: the same chunks (hence batches), one thread (the inputs fixture), int64
    # fixed-point global sums (another chunking or thread count would agree only to float32 rounding)
    for key in ("mean", "std", "count", "overall"):
        assert np.array_equal(getattr(resumed.global_maps, key), getattr(full.global_maps, key), equal_nan=True)
    for key in ("computed", "include", "zero", "stalled", "probabilities"):
        assert np.array_equal(getattr(resumed, key), getattr(full, key))
    # positive subset: each label's global map is the mean over the images whose CSV column is 1
    truth = np.array([[i % 3 != 1, i % 2 == 0] for i in range(N)])
    maps = np.asarray(full.image_maps, np.float64)
    for j in range(len(LABELS)):
        assert full.global_maps.count[j] == truth[:, j].sum()
        np.testing.assert_allclose(
            full.global_maps.mean[j],
            maps[truth[:, j], j].mean(0),
            **_float16_store_tolerance(open_explain(tmp_path / "full")),
        )


def test_float16_and_float32_maps_agree_within_float16_precision(inputs, tmp_path, capsys):
    from napari_global_xai.explain.result import open_explain

    folder = inputs
    assert main(_argv(folder, tmp_path / "f16")) == 0
    assert main(_argv(folder, tmp_path / "f32", "--map-dtype", "float32", "--export-tiff")) == 0
    assert main(_argv(folder, tmp_path / "tif", "--format", "tiff")) == 0
    capsys.readouterr()
    f16, f32 = open_explain(tmp_path / "f16"), open_explain(tmp_path / "f32")
    import tifffile

    tif = tifffile.imread(tmp_path / "tif" / "image_maps.tif")
    a16, a32 = np.asarray(f16.image_maps), np.asarray(f32.image_maps)
    assert a16.dtype == a32.dtype == np.float32 and a16.shape == (N, len(LABELS), H, W)
    np.testing.assert_array_equal(a32, tif)  # float32 store = today's TIFF, exactly (same chunks, same threads)
    scale = f16.attrs["map_scale"]
    assert scale == 512  # mass normalisation: stored × the power of two nearest H·W (672), so float16 keeps 11 bits
    # float16: half an ulp (2^-11 relative) of the scaled value; the smallest values are float16 subnormals
    np.testing.assert_allclose(a16, a32, rtol=2.0**-11, atol=2.0**-25 / scale)
    assert np.abs(a16 - a32).max() > 0  # it really is float16
    # the global maps come from the float32 maps in both runs: identical
    assert np.array_equal(np.asarray(f16.global_planes), np.asarray(f32.global_planes))
    # written once: the store holds the global maps; TIFFs only when asked (--export-tiff) or with --format tiff
    assert not any((tmp_path / "f16" / name).exists() for name in ("global_maps.tif", "global_std.tif"))
    exported = open_explain(tmp_path / "f32" / "global_maps.tif")
    assert exported.out_format == "global maps" and exported.targets == LABELS
    np.testing.assert_array_equal(exported.global_planes, np.asarray(f32.global_planes))
    # the one reader gives the same run from the TIFF folder as from the store
    tif_run = open_explain(tmp_path / "tif")
    assert (tif_run.out_format, f32.out_format) == ("tiff", "zarr")
    assert tif_run.image_ids == f32.image_ids and tif_run.model_labels == f32.model_labels
    assert (tif_run.frame, tif_run.method, tif_run.subset) == (f32.frame, f32.method, f32.subset)
    np.testing.assert_array_equal(tif_run.image_maps, a32)
    np.testing.assert_array_equal(tif_run.global_planes, np.asarray(f32.global_planes))
    # the store's records keep the second moments in float32, so its std may differ in the last float32 bits
    np.testing.assert_allclose(tif_run.std_planes, np.asarray(f32.std_planes), rtol=1e-6, atol=0)
    for key in ("computed", "include"):
        assert np.array_equal(getattr(tif_run, key), getattr(f32, key))
    np.testing.assert_allclose(tif_run.probabilities, f32.probabilities, atol=1e-6)  # the CSV keeps 6 decimals
    assert tif_run.global_maps.count.tolist() == f32.global_maps.count.tolist()
    size = {
        k: sum(p.stat().st_size for p in (tmp_path / k / "image_maps.zarr" / "maps").rglob("*") if p.is_file())
        for k in ("f16", "f32")
    }
    assert size["f16"] < size["f32"] < (tmp_path / "tif" / "image_maps.tif").stat().st_size


def test_store_is_valid_ome_zarr_with_label_names(inputs, tmp_path, capsys):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    folder = inputs
    assert main(_argv(folder, tmp_path / "out")) == 0
    root = tmp_path / "out" / "image_maps.zarr"
    for name, shape, channels in (
        ("global", (3, H, W), LABELS + ["overall"]),
        ("std", (2, H, W), LABELS),
        ("maps", (N, 2, H, W), LABELS),
    ):
        node = next(iter(Reader(parse_url(str(root / name)))()))
        assert node.data[0].shape == shape
        assert node.metadata["channel_names"] == channels
        assert [a["name"] for a in node.metadata["axes"]] == (["image"] if name == "maps" else []) + ["c", "y", "x"]
    # the report of the folder shows the explain run once and does not list the store's own JSON files
    from napari_global_xai.report import build_sections

    sections = build_sections(tmp_path / "out")
    assert [s.title for s in sections] == ["Global maps · saliency"]
    assert "Image-wise maps: image_maps.zarr (resumable Zarr store; open it in napari)." in sections[0].text


def test_progress_moves_within_a_chunk_and_never_backwards(inputs):
    """In-process runs report image progress while a chunk computes (not only when it is written): one chunk of
    the whole stack still reports intermediate values, non-decreasing, ending at N."""
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.data import read_stack
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.models import load_model

    stack, model = read_stack(inputs / "stack.tif"), load_model(inputs / "card.json", device="cpu")
    seen = []
    config = ExplainConfig(method="saliency", subset="all", compute="all", chunk_size=N, maps_per_call=1)
    run_explain(
        stack, model, config, control=RunControl(progress=lambda done, total, stage: seen.append((done, total, stage)))
    )
    done = [d for d, _, _ in seen]
    assert all(t == N and s == "explain" for _, t, s in seen)
    assert done == sorted(done) and done[-1] == N
    assert any(0 < d < N for d in done)  # moved before the only chunk finished


def test_a_store_of_another_layout_is_refused_in_one_line_and_left_as_it_was(inputs, tmp_path, capsys):
    """A store written by another version (its layout version differs) is refused by the one reader, the CLI and
    the napari reader in one line naming the layout and the way out, and nothing in it is changed."""
    import zarr

    from napari_global_xai._reader import napari_get_reader
    from napari_global_xai.errors import InputError
    from napari_global_xai.explain.result import open_explain
    from napari_global_xai.store.options import ATTRS_KEY, STORE_LAYOUT

    assert main(_argv(inputs, tmp_path / "out")) == 0
    root = tmp_path / "out" / "image_maps.zarr"
    group = zarr.open_group(str(root), mode="r+")
    attrs = dict(group.attrs[ATTRS_KEY])
    attrs["layout_version"] = STORE_LAYOUT - 1
    group.attrs[ATTRS_KEY] = attrs
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(InputError, match=f"layout {STORE_LAYOUT - 1}, this version reads layout {STORE_LAYOUT}"):
        open_explain(tmp_path / "out")
    assert main(["cohort", str(tmp_path / "out"), "--out", str(tmp_path / "cohort")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and "Traceback" not in err[0]
    reader = napari_get_reader(str(root))  # napari shows the reader's error as its one-line notification
    with pytest.raises(InputError, match="--overwrite"):
        reader(str(root))
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "cohort").exists()
