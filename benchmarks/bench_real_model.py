"""A model of the published UWF shape (ResNet34 body, red+green, 384×512, 8 sigmoid outputs): IG, Grad-CAM and PEPPR
against their floors, each measured in this one run.

Run:  .venv/bin/python benchmarks/bench_real_model.py [--images 2] [--steps 32] [--device auto] [--threads 1]

Prints, on :class:`_models.ResNet34Like` with random weights (speed does not depend on them) and generated images:

* forward and forward+backward seconds per image by batch size (the best batch is used for every floor below);
* **IG-32**: this project's engine (``ImageMapEngine``, automatic batching) against (a) the floor, ``images × steps``
  forward+backward passes to the input replayed at the best batch right before each run, and (b) a tuned Captum
  call: one ``IntegratedGradients.attribute`` on all images with ``internal_batch_size`` = the best batch;
* **Grad-CAM** against one forward+backward per image (replayed at the best batch);
* **PEPPR** (``run_peppr``, one map, reverse and ``--seeds`` random orders, ``--fractions``) against the forward
  floor: its own ``n_forwards`` plain forwards of the unmodified images at the best forward batch.

Each figure is the minimum over ``--repeats`` interleaved (floor, ours) pairs after an untimed warm-up; images/s
and ratios are printed, plus the load average before and after (a shared machine's contention shows there).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource

import numpy as np
import torch
from _models import real_size_model
from _timing import best_of, replay_passes, timed


def _images(n):
    from napari_global_xai.data.synthetic import generate_stack

    s = generate_stack(n, seed=99, split="eval")
    return s.aligned("left").get(slice(None))


def per_image_by_batch(module, x, sizes, backward: bool, target: int = 0) -> dict[int, float]:
    """Seconds per image of one forward (or forward+backward to the input) at each batch size (best of 2)."""
    out = {}
    for b in sizes:
        xb = x[:1].expand(b, *x.shape[1:]).contiguous(memory_format=torch.channels_last)

        def run(xb=xb):
            if backward:
                xi = xb.clone().requires_grad_(True)
                torch.autograd.grad(module(xi)[:, target].sum(), xi)
            else:
                with torch.no_grad():
                    module(xb)

        out[b] = best_of(run, repeats=2) / b
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved (floor, ours) pairs; the minimum is kept")
    p.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=None,
        help="batch sizes swept for the floors (default 1 2 4 on CPU, 1 4 16 32 on CUDA)",
    )
    p.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0, 0.05, 0.1, 0.2, 0.5, 1],
        help="PEPPR fractions (default a quick 6-point grid)",
    )
    p.add_argument("--seeds", type=int, default=1, help="PEPPR random-order seeds")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import captum.attr as ca

    from napari_global_xai.config import ExplainConfig, PepprConfig
    from napari_global_xai.peppr import run_peppr
    from napari_global_xai.saliency import ImageMapEngine

    model = real_size_model(args.device)
    dev, module = model.device, model.module
    raw = _images(args.images)
    x = model.preprocess(raw)
    n, target = len(raw), 0
    pairs = np.ones((n, 1), bool)
    load0 = os.getloadavg()
    print(
        f"{model.card.name}: {sum(q.numel() for q in module.parameters()) / 1e6:.1f} M parameters, input "
        f"{tuple(x.shape[1:])}; device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); {n} images"
    )
    if dev.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(dev)}")
    print(f"load average at start: {load0[0]:.1f} (1 min), {load0[1]:.1f} (5 min)")

    sizes = args.batches or ([1, 4, 16, 32] if dev.type == "cuda" else [1, 2, 4])
    fb = per_image_by_batch(module, x, sizes, backward=True, target=target)
    fw = per_image_by_batch(module, x, sizes, backward=False)
    best_fb, best_fw = min(fb, key=fb.get), min(fw, key=fw.get)
    print(
        "forward+backward per image by batch: "
        + ", ".join(f"b{b} {t * 1e3:.0f} ms" for b, t in fb.items())
        + f" -> best batch {best_fb}"
    )
    print(
        "forward per image by batch: "
        + ", ".join(f"b{b} {t * 1e3:.0f} ms" for b, t in fw.items())
        + f" -> best batch {best_fw}"
    )

    def compare(name, floor_fn, ours_fn, warm_up):
        warm_up()
        floor = ours = float("inf")
        for _ in range(max(1, args.repeats)):
            floor = min(floor, floor_fn())
            ours = min(ours, ours_fn())
        print(
            f"{name}: ours {ours / n:.3f} s per map ({n / ours:.2f} images/s); floor {floor / n:.3f} s per map "
            f"-> floor/ours = {floor / ours:.2f}"
        )
        return ours

    # IG-32 --------------------------------------------------------------------------------------------------
    ig = ImageMapEngine(model, ExplainConfig(method="ig", params={"n_steps": args.steps}), [target])
    ig_warm = ImageMapEngine(model, ExplainConfig(method="ig", params={"n_steps": 2}), [target])
    ours_ig = compare(
        f"IG-{args.steps} (engine: {ig.maps_per_call} maps/call, internal batch "
        f"{ig.method.params['internal_batch_size']}; floor = {n * args.steps} forward+backward passes "
        f"at batch {best_fb})",
        lambda: replay_passes(module, x, 0, n * args.steps, best_fb, best_fb, target),
        lambda: timed(lambda: ig.compute(raw, pairs), dev),
        lambda: ig_warm.compute(raw[:1], pairs[:1]),
    )
    captum_ig = ca.IntegratedGradients(module)

    def tuned_captum():
        xi = x.clone().requires_grad_(True)
        captum_ig.attribute(
            xi,
            baselines=torch.zeros_like(xi),
            target=target,
            n_steps=args.steps,
            method="gausslegendre",
            internal_batch_size=best_fb,
        )

    t_captum = min(timed(tuned_captum, dev) for _ in range(max(1, args.repeats)))
    print(
        f"  tuned Captum call (all {n} images, internal_batch_size={best_fb}): {t_captum / n:.3f} s per map "
        f"({n / t_captum:.2f} images/s) -> ours is {t_captum / ours_ig:.2f}x its speed"
    )

    # Grad-CAM -----------------------------------------------------------------------------------------------
    gc = ImageMapEngine(model, ExplainConfig(method="gradcam"), [target])
    compare(
        f"Grad-CAM (layer4; floor = {n} forward+backward passes to the input at batch {best_fb})",
        lambda: replay_passes(module, x, 0, n, best_fb, best_fb, target),
        lambda: timed(lambda: gc.compute(raw, pairs), dev),
        lambda: gc.compute(raw[:1], pairs[:1]),
    )

    # PEPPR --------------------------------------------------------------------------------------------------
    h, w = raw.shape[1:3]
    yy, xx = np.mgrid[0:h, 0:w]
    gmap = np.exp(-((yy - 0.4 * h) ** 2 + (xx - 0.6 * w) ** 2) / (2 * (0.15 * h) ** 2))
    runs = {}

    def peppr_run():
        def go():
            runs["last"] = run_peppr(
                model,
                raw,
                {"overall": gmap},
                None,
                config=PepprConfig(fractions=args.fractions, random_seeds=args.seeds, include_reverse=True),
            )

        return timed(go, dev)

    warm_up = PepprConfig(fractions=(0, 0.5, 1), random_seeds=1)
    run_peppr(model, raw[:1], {"overall": gmap}, None, config=warm_up)
    t_peppr = peppr_run()
    res = runs["last"]
    t_floor = replay_passes(module, x, res.n_forwards, 0, best_fw, best_fw)
    for _ in range(max(1, args.repeats) - 1):
        t_peppr = min(t_peppr, peppr_run())
        t_floor = min(t_floor, replay_passes(module, x, res.n_forwards, 0, best_fw, best_fw))
    naive = res.n_forwards + res.n_skipped
    print(
        f"PEPPR ({len(args.fractions)} fractions, map + reverse + {args.seeds} random order(s); {res.n_forwards} "
        f"image forwards, {res.n_skipped} of {naive} skipped): ours {t_peppr:.1f} s "
        f"({t_peppr / res.n_forwards * 1e3:.0f} ms/forward, {n / t_peppr:.3f} images/s); floor "
        f"{res.n_forwards} forwards at batch {best_fw} {t_floor:.1f} s -> floor/ours = {t_floor / t_peppr:.2f}"
    )

    load1 = os.getloadavg()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    msg = f"peak RSS {rss:.0f} MB"
    if dev.type == "cuda":
        msg += f", peak CUDA allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
    print(msg + f"; load average at end: {load1[0]:.1f} (1 min), {load1[1]:.1f} (5 min)")


if __name__ == "__main__":
    main()
