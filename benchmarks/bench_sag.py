"""SAG time per image against its forward-pass floor.

Run::

    python benchmarks/bench_sag.py                 # 4 arcade_lesion positives, Grad-CAM heuristic, blur fill
    python benchmarks/bench_sag.py --n 6 --method igos --fill zero

For each image: wall time of the search + graph (:func:`napari_global_xai.sag.sag_for_image`, heuristic map
excluded and reported separately), the image forwards it needed (``n_forwards``) and its batched model calls, and
the floor ``n_forwards × t_forward``, where ``t_forward`` is the per-image cost of a plain forward at the best batch
size among 1 / 4 / 8 / 16 (best of two). ``ratio = time / floor`` (1.0 = no overhead beyond forwards). Then the same
images searched together (:func:`napari_global_xai.sag.run_sag`, all images in lockstep sharing model calls) against
that one-by-one loop: total search time, model calls, and the speed-up. Takes about a minute on 2 CPU cores with the
defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_of  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4, help="arcade_lesion-positive images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--fill", default="blur")
    ap.add_argument("--max-root-size", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from napari_global_xai.config import SagConfig
    from napari_global_xai.data.synthetic import generate_stack
    from napari_global_xai.models.loading import load_model
    from napari_global_xai.sag import sag_for_image

    model = load_model(None, device="auto")
    label = model.labels.index("arcade_lesion")
    st = generate_stack(max(8, 4 * args.n), seed=args.seed, split="eval")
    idx = np.nonzero(st.labels[:, label])[0][: args.n]
    left = st.aligned("left")  # the frame of the demo card (right eyes mirrored on read)
    x1 = model.preprocess(st.images[:1])

    def fwd(b):
        xb = x1.expand(b, -1, -1, -1).contiguous(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode():
                model.scores(xb, probability=True)

        return run

    per_image = {b: best_of(fwd(b), repeats=2) / b for b in (1, 4, 8, 16)}
    best_b = min(per_image, key=per_image.get)
    t_fwd = per_image[best_b]
    print(
        f"device {model.device}, threads {args.threads}; forward per image: "
        + ", ".join(f"b{b} {1e3 * t:.2f} ms" for b, t in per_image.items())
        + f" -> best b{best_b}"
    )
    print(f"{'image':>5} {'sal s':>6} {'SAG s':>7} {'forwards':>8} {'calls':>5} {'floor s':>7} {'ratio':>5}  roots")
    rows = []
    config = SagConfig(method=args.method, fill=args.fill, max_root_size=args.max_root_size)
    for i in idx:
        img = left.get(int(i))[0]
        t = time.perf_counter()
        r = sag_for_image(model, img, label, config, image_index=int(i))
        total = time.perf_counter() - t
        floor = r.n_forwards * t_fwd
        rows.append((r.seconds, floor, r.n_forwards))
        print(
            f"{i:5d} {r.saliency_seconds:6.2f} {r.seconds:7.2f} {r.n_forwards:8d} {r.n_batches:5d} {floor:7.2f} "
            f"{r.seconds / floor:5.2f}  {[sorted(s) for s in r.roots]}  (total {total:.2f} s)"
        )
    s = np.array(rows)
    print(
        f"mean: SAG {s[:, 0].mean():.2f} s/image, {s[:, 2].mean():.0f} forwards, floor {s[:, 1].mean():.2f} s, "
        f"ratio {s[:, 0].sum() / s[:, 1].sum():.2f}"
    )

    # the same images in lockstep (heuristic maps given, so only the search + graph are compared)
    from napari_global_xai.sag import grid_for, run_sag
    from napari_global_xai.sag.pipeline import _saliency_maps

    imgs = left.get(np.asarray(idx))
    x = model.preprocess(imgs)
    maps = _saliency_maps(model, x, label, args.method, None, grid_for(x.shape[-2:]), args.fill)
    one = SagConfig(fill=args.fill, max_root_size=args.max_root_size, images_together=1)
    every = dataclasses.replace(one, images_together=len(imgs))
    t = time.perf_counter()
    alone = [run_sag(model, imgs, label, [k], one, saliency_maps=maps)[0] for k in range(len(imgs))]
    t_alone = time.perf_counter() - t
    t = time.perf_counter()
    together = run_sag(model, imgs, label, range(len(imgs)), every, saliency_maps=maps)
    t_together = time.perf_counter() - t
    forwards = sum(r.n_forwards for r in together)
    print(
        f"{len(imgs)} images one by one: {t_alone:.2f} s, {sum(r.n_batches for r in alone)} model calls; "
        f"together: {t_together:.2f} s, {max(r.n_batches for r in together)} model calls, "
        f"{forwards} forwards (floor {forwards * t_fwd:.2f} s, ratio {t_together / (forwards * t_fwd):.2f}); "
        f"speed-up {t_alone / t_together:.2f}x"
    )


if __name__ == "__main__":
    main()
