"""PEPPR and SAG on a Dask LocalCluster: the same curves and graphs as in-process, a lost worker, cancel, the CLI.

PEPPR's chunk tasks return per-image scores; the client gathers them and computes each fraction's AUROC once over all
images, so the curves must equal the in-process ones. SAG's image groups are independent, so the graphs must be the
same too.

Equal bit for bit, not just to float32 rounding, because the runs are arranged to do the same arithmetic: the chunks
(``chunk_size``) fix the forward batches the same way in this process and on a worker, and both run one torch thread
(``one_torch_thread`` here; ``torch_threads=1``, or the LocalCluster's one thread per worker, which Dask's nanny passes
on as OMP_NUM_THREADS=1, there). Other batchings or thread counts give scores equal only to float32 rounding, which
can reorder two nearly tied images and move an AUROC by a whole step (docs/reproducibility.md).
"""

import numpy as np
import pytest

from napari_global_xai.cli import main
from napari_global_xai.config import PepprConfig, SagConfig
from napari_global_xai.control import RunControl
from napari_global_xai.data.conform import model_frame
from napari_global_xai.peppr.pipeline import peppr_truth, run_peppr, run_peppr_pipeline
from napari_global_xai.sag.pipeline import run_sag_pipeline

from ._ringbar import CancelAfterFirstChunk, H, N, W, WorkerKiller
from ._ringbar import load_inputs as _load

pytest.importorskip("distributed")

from napari_global_xai.scale.executor import DaskExecutor  # noqa: E402

yy, xx = np.mgrid[0:H, 0:W]
MAPS = {  # three global maps of different shapes, one per label plus an overall map
    "ring": np.exp(-((yy - 12.0) ** 2 + (xx - 20.0) ** 2) / 60.0),
    "bar": (np.abs(xx - 40) < 4).astype(float) + 0.01 * yy,
    "overall": np.hypot(yy - H / 2, xx - W / 2),
}
CONFIG = PepprConfig(random_seeds=2, chunk_size=3, batch_size=8, fractions=(0.0, 0.1, 0.3, 0.6, 1.0))


def _same_curves(a, b):
    """Bit for bit (was to atol=1e-12, below float32's resolution anyway): same chunks, same threads (docstring)."""
    assert a.maps == b.maps and a.labels == b.labels and a.metric == b.metric == "auroc"
    for name in a.maps:
        for attr in ("erase", "restore", "erase_scores", "restore_scores"):
            np.testing.assert_array_equal(getattr(a.curves[name], attr), getattr(b.curves[name], attr))
        np.testing.assert_array_equal(a.reverse[name].erase, b.reverse[name].erase)
    for ra, rb in zip(a.random, b.random, strict=True):
        np.testing.assert_array_equal(ra.erase, rb.erase)
        np.testing.assert_array_equal(ra.restore, rb.restore)


def test_peppr_on_a_cluster_equals_in_process(inputs, cluster, one_torch_thread):
    stack, model = _load(inputs)
    reference = run_peppr_pipeline(stack, model, MAPS, CONFIG)
    seen = []
    result = run_peppr_pipeline(
        stack,
        model,
        MAPS,
        CONFIG,
        executor=DaskExecutor(cluster, torch_threads=1),
        control=RunControl(progress=lambda done, total, stage: seen.append((done, total))),
    )
    _same_curves(result, reference)
    assert result.n_images == reference.n_images == N
    # the curves are not degenerate: the two labels' AUROCs move as pixels are erased
    assert np.ptp(reference.curves["ring"].erase) > 0.05
    # progress per finished chunk, in forwards, ending at the planned total
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == seen[-1][1]
    # the constant fully filled image is forwarded once per process: at most once more per extra worker
    assert reference.n_forwards <= result.n_forwards <= reference.n_forwards + 1


def test_peppr_survives_a_killed_worker(inputs, cluster, one_torch_thread):
    stack, model = _load(inputs)
    reference = run_peppr_pipeline(stack, model, MAPS, CONFIG)
    killer = WorkerKiller(cluster)
    result = run_peppr_pipeline(
        stack, model, MAPS, CONFIG, executor=DaskExecutor(cluster, torch_threads=1), control=RunControl(progress=killer)
    )
    assert killer.killed and killer.victim_gone()
    assert not result.cancelled
    _same_curves(result, reference)


def test_peppr_cancel_on_a_cluster_keeps_the_finished_images(inputs, cluster, one_torch_thread):
    stack, model = _load(inputs)
    user = CancelAfterFirstChunk()
    executor = DaskExecutor(cluster, window=2)
    result = run_peppr_pipeline(
        stack, model, MAPS, CONFIG, executor=executor, control=RunControl(progress=user.progress, cancel=user.cancel)
    )
    assert result.cancelled and 0 < result.n_images < N and result.n_requested == N
    # the partial curves are those of the finished images, exactly as an in-process run on just those images
    frame_stack = model_frame(stack, model.card)  # the frame the pipeline read the images in
    names, truth = peppr_truth(frame_stack, model)
    alone = run_peppr(model, frame_stack, MAPS, truth, names, CONFIG, eval_indices=result.eval_indices)
    _same_curves(result, alone)


SAG = SagConfig(method="gradcam", grid=(4, 4), max_root_size=3, images_together=2, beam_width=2, n_successors=4)


def test_sag_on_a_cluster_equals_in_process(inputs, cluster, one_torch_thread, tmp_path):
    stack, model = _load(inputs)
    images = [0, 1, 2, 3, 5]
    reference = run_sag_pipeline(stack, model, "ring", SAG, indices=images)
    seen = []
    result = run_sag_pipeline(
        stack,
        model,
        "ring",
        SAG,
        indices=images,
        executor=DaskExecutor(cluster, torch_threads=1),
        control=RunControl(progress=lambda done, total, stage: seen.append(done)),
        out_dir=tmp_path,
    )
    assert [r.image_index for r in result.results] == images  # in the order asked, whatever finished first
    for a, b in zip(result.results, reference.results, strict=True):
        assert a.all_roots == b.all_roots and a.n_forwards == b.n_forwards
        np.testing.assert_array_equal(a.root_confidences, b.root_confidences)  # same batches and threads: exact
        assert [n.patches for n in a.nodes] == [n.patches for n in b.nodes]
    assert sum(len(r.all_roots) for r in reference.results) > 0
    assert seen[-1] == len(images) and seen == sorted(seen)
    assert (tmp_path / "sag_summary.json").is_file()


def test_cli_peppr_and_sag_on_a_local_cluster(inputs, tmp_path, one_torch_thread):
    common = ["--model", str(inputs / "ringbar.json"), "--device", "cpu", "--quiet"]
    stack = str(inputs / "stack.tif")
    assert main(["explain", stack, *common, "--method", "saliency", "--out", str(tmp_path / "maps")]) == 0
    maps = str(tmp_path / "maps")  # the explain results folder
    peppr = ["peppr", stack, *common, "--global-maps", maps, "--random-seeds", "2"]
    assert main([*peppr, "--out", str(tmp_path / "here")]) == 0
    assert main([*peppr, "--out", str(tmp_path / "there"), "--cluster", "local:2"]) == 0
    here = (tmp_path / "here" / "peppr_curves.csv").read_text()
    assert here == (tmp_path / "there" / "peppr_curves.csv").read_text() and here.count("\n") > 10
    sag = ["sag", stack, *common, "--label", "ring", "--images", "0", "1", "--method", "gradcam"]
    assert main([*sag, "--out", str(tmp_path / "sag_here")]) == 0
    assert main([*sag, "--out", str(tmp_path / "sag_there"), "--cluster", "local:2"]) == 0
    for name in ("sag_stack_0000.json", "sag_stack_0001.json"):
        a = (tmp_path / "sag_here" / name).read_text()
        b = (tmp_path / "sag_there" / name).read_text()
        assert _without_times(a) == _without_times(b)


def _without_times(text: str) -> dict:
    import json

    data = json.loads(text)
    for key in ("seconds", "saliency_seconds"):
        data.pop(key, None)
    return data
