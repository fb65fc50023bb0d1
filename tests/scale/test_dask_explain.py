"""Explain on a Dask LocalCluster: bit-identical to the in-process run, survives a killed worker, CLI, bad specs.

Bit-identical only because the runs are arranged to do the same arithmetic: the chunks (``chunk_size``) fix the
batches the same way in this process and on a worker, and both run one torch thread (``one_torch_thread`` here,
``torch_threads=1`` there). The CLI test runs this process at 2 threads against 1-thread workers, as a user's machine
would: there the maps agree to float32 rounding only (docs/reproducibility.md), and the tolerance is derived.

The model and stack are the scale tests' own (``_ringbar``: a little network saved as TorchScript with its own card,
a multi-page TIFF that the workers reopen by reference, not as pickled pixels).
"""

import numpy as np
import pytest
import torch

from napari_global_xai.cli import main
from napari_global_xai.config import ExplainConfig
from napari_global_xai.control import RunControl
from napari_global_xai.explain.pipeline import run_explain
from napari_global_xai.explain.result import open_explain

from ._ringbar import CancelAfterFirstChunk, H, N, RingBarNet, W, WorkerKiller
from ._ringbar import load_inputs as _load
from _tolerance import float32_atol, mass_normalised_terms, pass_terms

distributed = pytest.importorskip("distributed")

from napari_global_xai.scale.executor import DaskExecutor  # noqa: E402

CONFIG = ExplainConfig(method="saliency", chunk_size=2)


def _assert_same(a, b):
    """Bit for bit: only for runs with the same chunks (hence batches) and the same torch thread count (docstring)."""
    np.testing.assert_array_equal(np.asarray(a.image_maps), np.asarray(b.image_maps))
    for name in ("computed", "include", "zero", "stalled", "probabilities"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("mean", "std", "count", "overall"):
        np.testing.assert_array_equal(getattr(a.global_maps, name), getattr(b.global_maps, name))


def test_local_cluster_gives_bit_identical_maps(inputs, cluster, one_torch_thread):
    stack, model = _load(inputs)
    assert isinstance(stack.pixels, np.memmap)  # the workers must reopen the file, not receive pixels
    reference = run_explain(stack, model, CONFIG)
    seen = []
    result = run_explain(
        stack,
        model,
        CONFIG,
        executor=DaskExecutor(cluster, torch_threads=1),
        control=RunControl(progress=lambda done, total, stage: seen.append(done)),
    )
    _assert_same(result, reference)
    assert reference.n_computed > 0 and np.isfinite(reference.global_maps.mean).any()
    assert seen[-1] == N and seen == sorted(seen)
    # each worker loaded the model once, however many chunks it ran
    loads = cluster.run(
        lambda: sum(k[0] == "model" for k in __import__("napari_global_xai.scale.specs", fromlist=["_CACHE"])._CACHE)
    )
    assert set(loads.values()) <= {0, 1} and sum(loads.values()) >= 1


def test_killed_worker_mid_run_gives_the_same_results(inputs, cluster, one_torch_thread):
    stack, model = _load(inputs)
    reference = run_explain(stack, model, CONFIG)
    killer = WorkerKiller(cluster)
    result = run_explain(
        stack, model, CONFIG, executor=DaskExecutor(cluster, torch_threads=1), control=RunControl(progress=killer)
    )
    assert killer.killed and killer.victim_gone()  # the worker really died (its nanny starts another)
    assert not result.cancelled
    _assert_same(result, reference)


def test_cancel_keeps_finished_chunks(inputs, cluster, one_torch_thread):
    stack, model = _load(inputs)
    user = CancelAfterFirstChunk()
    executor = DaskExecutor(cluster, torch_threads=1, window=2)
    result = run_explain(
        stack, model, CONFIG, executor=executor, control=RunControl(progress=user.progress, cancel=user.cancel)
    )
    reference = run_explain(stack, model, CONFIG)
    assert result.cancelled and result.provenance["status"] == "CANCELLED"
    assert 0 < result.computed.sum() < reference.computed.sum()
    finished = np.nonzero(result.computed.any(axis=1))[0]  # the chunks that came back are kept, exact
    np.testing.assert_array_equal(np.asarray(result.image_maps)[finished], np.asarray(reference.image_maps)[finished])


def test_cancel_while_a_long_chunk_runs_stops_without_waiting_for_it(cluster):
    """A cancel during chunks that would take as long as the hang guard stops the stream at once (the client polls
    cancel while it waits), with nothing yielded."""
    import threading

    from distributed import Event

    from napari_global_xai.control import Cancelled
    from napari_global_xai.scale.submit import stream_tasks

    gate = Event("long-chunk-gate", client=cluster)
    user_cancelled = threading.Event()

    def long_chunk(item):  # ends only when the test opens the gate (or after the hang guard)
        from distributed import Event

        Event("long-chunk-gate").wait(600)
        return item

    stream = stream_tasks(
        cluster, lambda item: cluster.submit(long_chunk, item, pure=False), range(3), cancel=user_cancelled.is_set
    )
    threading.Timer(0.3, user_cancelled.set).start()
    try:
        with pytest.raises(Cancelled):
            next(stream)  # returns only through the cancel: no chunk can finish while the gate is shut
        assert not gate.is_set()
    finally:
        gate.set()  # frees the workers for the next tests


def test_cli_cluster_local_end_to_end(inputs, tmp_path, capsys):
    args = [
        "explain",
        str(inputs / "stack.tif"),
        "--model",
        str(inputs / "ringbar.json"),
        "--method",
        "saliency",
        "--device",
        "cpu",
        "--quiet",
    ]
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # this process as on a user's 2 cores; each worker runs 1 thread (threads_per_worker=1)
    try:
        assert main([*args, "--out", str(tmp_path / "here")]) == 0
    finally:
        torch.set_num_threads(before)
    assert main([*args, "--out", str(tmp_path / "cluster"), "--cluster", "local:2"]) == 0
    here = np.asarray(open_explain(tmp_path / "here").global_planes)
    there = np.asarray(open_explain(tmp_path / "cluster").global_planes)
    # 2 threads against 1 may round the convolutions in another order: float32 rounding of one saliency pass through
    # RingBarNet and the mass normalisation over H·W, relative to the largest image map value; the fixed-point mean
    # adds at most 2**-40 and each stored float32 global map half an ulp of the largest global value
    # (tests/_tolerance.py)
    image_scale = float(np.asarray(open_explain(tmp_path / "here").image_maps).max())
    atol = (
        float32_atol(image_scale, mass_normalised_terms(pass_terms(RingBarNet()), H * W))
        + 2.0**-40
        + float32_atol(np.abs(here).max(), 1)
    )
    np.testing.assert_allclose(there, here, rtol=0, atol=atol)
    assert np.abs(here).max() > 1000 * atol  # the tolerance is far below the maps themselves


@pytest.mark.parametrize(
    "extra,code,needle",
    [
        (["--cluster", "locale:2"], 2, "unknown cluster spec 'locale:2'"),
        (["--cluster", "local:0"], 2, "needs N >= 1"),
        (["--scheduler", "somehost:8786"], 2, "not of the form tcp://HOST:PORT"),
        (["--cluster", "local", "--scheduler", "tcp://h:1"], 2, "either --cluster or --scheduler"),
        (["--scheduler", "tcp://127.0.0.1:9"], 1, "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    ],
)
def test_bad_cluster_spec_is_one_line(inputs, tmp_path, capsys, monkeypatch, extra, code, needle):
    monkeypatch.setattr("napari_global_xai.scale.cluster.CONNECT_TIMEOUT_S", 2.0)
    out = tmp_path / "never"
    argv = [
        "explain",
        str(inputs / "stack.tif"),
        "--model",
        str(inputs / "ringbar.json"),
        "--method",
        "saliency",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
