"""Integrated Gradients throughput against the forward+backward floor and a plain per-image Captum loop.

Run:  .venv/bin/python benchmarks/bench_explain.py [--images 8] [--steps 32] [--device auto]

Prints, measured in this one run on the demo model (384×512, red+green):
* the floor: one forward+backward per image at the best batch size (of 1, 4, 8, 16), times n_steps. The best batch
  is found from single-pass timings; the floor itself is then measured by replaying ``images × n_steps`` plain
  forward+backward passes at that batch right before each run of ours (sustained throughput, same machine state);
  the optimistic single-pass figure is printed too;
* this project's engine (``ImageMapEngine`` with IG, automatic batching), images/s and floor/ours (minimum of
  ``--repeats`` interleaved runs each);
* a plain per-image loop of ``captum.attr.IntegratedGradients(model).attribute(x, n_steps=...)`` (Captum's default
  batching), images/s and ours/loop speed-up;
* peak memory (process RSS; on CUDA the peak allocated memory).
"""

from __future__ import annotations

import argparse
import resource

import numpy as np
import torch
from _timing import best_of, replay_passes, timed


def _images(n):
    from napari_global_xai.data.synthetic import generate_stack

    s = generate_stack(n, seed=99, split="eval")
    return s.aligned("left").get(slice(None))


def floor_per_image(model, x, target=0):
    """Seconds per image of one forward+backward to the input, at the best batch size."""
    results = {}
    for b in (1, 4, 8, 16):
        if b > len(x):
            break
        xb = x[:b]

        def run(xb=xb):
            xi = xb.clone().requires_grad_(True)
            torch.autograd.grad(model.module(xi)[:, target].sum(), xi)

        results[b] = best_of(run) / b
    best = min(results, key=results.get)
    return results[best], best, results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved floor replays and runs of ours (min kept)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.models import load_demo_model
    from napari_global_xai.saliency import ImageMapEngine

    model = load_demo_model(device=args.device)
    raw = _images(args.images)
    x = model.preprocess(raw)
    target = 0
    per_image, best_b, table = floor_per_image(model, x, target)
    floor = per_image * args.steps
    print(
        f"device {model.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"{args.images} images 384x512, IG n_steps={args.steps}"
    )
    print("forward+backward per image by batch: " + ", ".join(f"b{b} {t * 1000:.1f} ms" for b, t in table.items()))
    print(f"single-pass floor: {per_image * 1000:.1f} ms x {args.steps} steps = {floor:.3f} s per map (batch {best_b})")

    engine = ImageMapEngine(model, ExplainConfig(method="ig", params={"n_steps": args.steps}), [target])
    pairs = np.ones((len(raw), 1), bool)
    engine.compute(raw[:1], pairs[:1])  # warm-up
    ours = replay = float("inf")
    for _ in range(max(1, args.repeats)):
        replay = min(replay, replay_passes(model.module, x, 0, len(raw) * args.steps, best_b, best_b, target))
        ours = min(ours, timed(lambda: engine.compute(raw, pairs)))
    ours, replay = ours / len(raw), replay / len(raw)
    print(f"floor replayed: {len(raw) * args.steps} forward+backward passes at batch {best_b}: {replay:.3f} s per map")
    print(
        f"ours (engine, {engine.maps_per_call} maps/call, internal batch "
        f"{engine.method.params['internal_batch_size']}): {ours:.3f} s per map, {1 / ours:.2f} maps/s, "
        f"floor/ours = {replay / ours:.2f} (single-pass floor/ours = {floor / ours:.2f})"
    )

    import captum.attr as ca

    ig = ca.IntegratedGradients(model.module)

    def plain_loop():
        for i in range(len(x)):
            ig.attribute(x[i : i + 1], baselines=torch.zeros_like(x[i : i + 1]), target=target, n_steps=args.steps)

    loop = best_of(plain_loop, repeats=1) / len(raw)
    print(
        f"plain per-image Captum loop (default batching): {loop:.3f} s per map, {1 / loop:.2f} maps/s; "
        f"ours is {loop / ours:.2f}x faster"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    msg = f"peak RSS {rss:.0f} MB"
    if model.device.type == "cuda":
        msg += f", peak CUDA allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
    print(msg)


if __name__ == "__main__":
    main()
