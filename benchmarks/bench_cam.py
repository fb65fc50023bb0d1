"""CAM family: time per map against one forward(+backward) floor, planted-truth mass, XNN training cost.

Run:  .venv/bin/python benchmarks/bench_cam.py [--images 8] [--threads 1] [--mass-images 64] [--xnn-images 1000]

Prints, on the demo model (384×512, red+green):
* per method, seconds per map through the engine (``ImageMapEngine``, automatic batching, one label per image),
  next to the floor replayed right before it with :func:`_timing.replay_passes`: one forward+backward per map for
  the gradient methods, one forward per map for EigenCAM, ``C + 1`` forwards per image for Score-CAM (C = channels
  of the CAM layer); ``ours / floor`` is the overhead;
* planted-truth mass: each label's global map (``run_explain``, subset = positives, mass normalisation) on the first
  ``--mass-images`` sample images, share of its mass inside the label's region;
* XNN: training time and peak memory of the explanation network for ``--xnn-images`` feature vectors (features of
  generated images are stood in by features drawn around the sample's, since training sees features only).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from _timing import best_of, replay_passes, timed

METHODS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam"]
DISEASES = ["haemorrhage", "peripheral_lesion", "disc_swelling", "arcade_lesion"]


def time_methods(model, stack, n_images):
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.saliency import ImageMapEngine
    from napari_global_xai.saliency.base import get_method

    images = stack.to_left_eye().get(np.arange(n_images))
    x = model.preprocess(images[:1])
    channels = model.module.get_submodule(model.card.cam_layer)
    store = {}

    def hook(_m, _i, out):
        store["c"] = out.shape[1]

    with torch.no_grad():
        h = channels.register_forward_hook(hook)
        model.module(x)
        h.remove()
    c = store["c"]
    pairs = np.zeros((n_images, len(model.labels)), bool)
    pairs[:, 0] = True
    rows = []
    for name in METHODS:
        engine = ImageMapEngine(model, ExplainConfig(method=name), [0])
        ours = best_of(lambda e=engine: e.compute(images, pairs), repeats=2) / n_images
        grad = get_method(name, model).needs_grad
        n_fwd = n_images * (c + 1) if name == "scorecam" else (0 if grad else n_images)
        n_bwd = n_images if grad else 0
        floor = replay_passes(model.module, x, n_fwd, n_bwd, 8, 8) / n_images
        rows.append((name, ours, floor, n_fwd // n_images, n_bwd // n_images))
        print(
            f"{name:<10} {ours * 1000:8.1f} ms/map   floor {floor * 1000:8.1f} ms  ({rows[-1][3]} fwd + "
            f"{rows[-1][4]} fwd+bwd per map)   ours/floor {ours / floor:5.2f}",
            flush=True,
        )
    return rows


def planted_mass(model, stack, n_images):
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.samples import load_ground_truth

    regions = load_ground_truth()["regions"]
    sub = stack.subset(np.arange(n_images))
    table = {}
    for name in METHODS:
        t = time.perf_counter()
        res = run_explain(sub, model, ExplainConfig(method=name, targets=DISEASES))
        gm = res.global_maps
        table[name] = {n: float(gm.get(n)[regions[n]].sum() / gm.get(n).sum()) for n in DISEASES}
        print(
            f"mass {name:<10} "
            + "  ".join(f"{n} {v:.2f}" for n, v in table[name].items())
            + f"   ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    return table


def xnn_cost(model, stack, n):
    from napari_global_xai.analysis_config import ConceptConfig
    from napari_global_xai.concepts import extract_features, train_explanation_net

    f, s, _, _ = extract_features(model, stack.to_left_eye())
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(f), n)
    feats = f[idx] * rng.normal(1, 0.05, size=(n, f.shape[1])).astype(np.float32)
    logits = s[idx] + rng.normal(0, 0.1, size=(n, s.shape[1])).astype(np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = timed(lambda: train_explanation_net(feats, logits, ConceptConfig(k=8)))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"XNN training, {n} images x {f.shape[1]} features, k=8, {ConceptConfig().steps} steps: {seconds:.2f} s, "
        f"peak RSS {after / 1024:.0f} MB (growth {max(0, after - before) / 1024:.0f} MB)",
        flush=True,
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mass-images", type=int, default=64)
    p.add_argument("--xnn-images", type=int, default=1000)
    p.add_argument("--skip", nargs="*", default=[], choices=["time", "mass", "xnn"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from napari_global_xai.models import load_model
    from napari_global_xai.samples import load_sample_stack

    model, stack = load_model(None, device="cpu"), load_sample_stack()
    print(f"torch threads {torch.get_num_threads()}, CAM layer {model.card.cam_layer}")
    if "time" not in args.skip:
        time_methods(model, stack, args.images)
    if "xnn" not in args.skip:
        xnn_cost(model, stack, args.xnn_images)
    if "mass" not in args.skip:
        planted_mass(model, stack, args.mass_images)


if __name__ == "__main__":
    main()
