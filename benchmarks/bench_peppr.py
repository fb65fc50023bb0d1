"""PEPPR speed against the forward-only floor and a per-image per-fraction loop.

Run::

    python benchmarks/bench_peppr.py            # demo model (random-weight DemoNet if its card is missing)
    python benchmarks/bench_peppr.py --n 32 --maps labels --seeds 5 --loop-images 4

What is compared (one process, same images, default fractions):

* PEPPR: :func:`napari_global_xai.peppr.run_peppr` with the planted-truth region map(s) as global map(s), the
  reverse order and ``--seeds`` random orders; its image forwards ``n_forwards`` and the forwards it skipped; run at
  the default batch (:func:`~napari_global_xai.batching.images_per_pass`) and, when that differs, again at the
  floor's best batch size (the engine's own overhead at equal batch);
* (a) the forward-only floor: ``n_forwards`` image forwards of the unmodified images at the best batch size among
  1 / 4 / 8 / 16 (chosen from a short sweep, best of two repetitions each), timed in full twice, between and after
  the PEPPR runs, and averaged; the target is PEPPR ≥ 0.9 × floor throughput;
* (b) a per-image per-fraction loop, as per-image metric libraries do it: one forward (batch 1) per image, curve,
  mode and fraction (the naive count), masks and fills rebuilt each time; timed on ``--loop-images`` images and
  scaled linearly to the full stack.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from napari_global_xai.batching import images_per_pass
from napari_global_xai.config import DEFAULT_FRACTIONS, PepprConfig
from napari_global_xai.data.synthetic import DISEASE_LABELS, LABELS, generate_stack, region_masks
from napari_global_xai.models import DEMO_CARD_PATH, load_model
from napari_global_xai.models.architectures import DemoNet
from napari_global_xai.models.card import LoadedModel, ModelCard
from napari_global_xai.peppr import run_peppr
from napari_global_xai.perturb.rankings import pixel_ranking, random_ranking


def get_model():
    """The demo model, or a random-weight DemoNet with a plausible card when the demo card is missing."""
    if DEMO_CARD_PATH.exists():
        return load_model(DEMO_CARD_PATH, device="cpu"), "demo model"
    torch.manual_seed(0)
    card = ModelCard(
        name="random DemoNet",
        labels=list(LABELS),
        weights="none",
        architecture="demo_net",
        mean=[0.35, 0.2],
        std=[0.25, 0.15],
    )
    module = DemoNet(n_labels=len(LABELS)).to(memory_format=torch.channels_last)
    return LoadedModel(module, card, torch.device("cpu")), "random-weight DemoNet (demo card missing)"


def left_eye(stack) -> np.ndarray:
    return stack.aligned("left").get(slice(None))


def floor_per_image(model, images: np.ndarray, sizes=(1, 4, 8, 16), forwards: int = 32) -> dict[int, float]:
    """Seconds per image forward of unmodified images, per batch size (best of two repetitions)."""
    x = model.preprocess(np.resize(images, (16, *images.shape[1:])))  # at least 16 images, tiled
    out = {}
    with torch.inference_mode():
        for b in sizes:
            batch = x[:b].contiguous(memory_format=torch.channels_last)
            model.scores(batch, probability=True)
            reps = max(1, forwards // b)
            best = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                for _ in range(reps):
                    model.scores(batch, probability=True)
                best = min(best, (time.perf_counter() - t) / (reps * b))
            out[b] = best
    return out


def floor_run(model, images: np.ndarray, count: int, batch: int) -> float:
    """Seconds for ``count`` forwards of the unmodified images in batches of ``batch`` (cycling through them)."""
    x = model.preprocess(np.resize(images, (max(batch, len(images)), *images.shape[1:])))
    done = 0
    t = time.perf_counter()
    with torch.inference_mode():
        while done < count:
            start = done % (len(x) - batch + 1)
            b = min(batch, count - done)
            model.scores(x[start : start + b].contiguous(memory_format=torch.channels_last), probability=True)
            done += b
    return time.perf_counter() - t


def per_image_loop(model, images: np.ndarray, rankings: list[np.ndarray], fractions) -> tuple[float, int]:
    """One forward per (image, ranking, mode, fraction), batch 1, zero fill; returns (seconds, forwards)."""
    h, w = images.shape[1:3]
    count = 0
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(len(images)):
            x = model.preprocess(images[i : i + 1])
            for order in rankings:
                order_t = torch.as_tensor(np.ascontiguousarray(order))
                for mode in ("erase", "restore"):
                    for p in fractions:
                        k = int(np.floor(p * h * w + 0.5))
                        keep = torch.ones(h * w)
                        keep[order_t[:k]] = 0
                        if mode == "restore":
                            keep = 1 - keep
                        xk = x * keep.view(1, 1, h, w)  # + fill * (1 - keep), fill = 0
                        model.scores(xk.contiguous(memory_format=torch.channels_last), probability=True)
                        count += 1
    return time.perf_counter() - t, count


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="images (default 32)")
    ap.add_argument(
        "--maps",
        choices=("overall", "labels"),
        default="overall",
        help="the union of the planted regions only, or the 4 label regions plus the union",
    )
    ap.add_argument("--seeds", type=int, default=2, help="random-order seeds (default 2)")
    ap.add_argument("--loop-images", type=int, default=4, help="images timed in the per-image loop (default 4)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, which = get_model()
    stack = generate_stack(args.n, seed=7, split="eval")
    images, truth = left_eye(stack), stack.labels
    regions = region_masks()
    maps = {"overall": regions["any_disease"].astype(float)}
    if args.maps == "labels":
        maps = {name: regions[name].astype(float) for name in DISEASE_LABELS} | maps
    print(
        f"model: {which}; device {model.device}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"images: {args.n} x {images.shape[1]}x{images.shape[2]}; maps: {list(maps)}; random seeds: {args.seeds}; "
        f"fractions: {len(DEFAULT_FRACTIONS)} (default)"
    )

    floor = floor_per_image(model, images)  # also warms the model up
    run_peppr(
        model, images[:4], maps, truth[:4], list(LABELS), PepprConfig(fractions=(0, 0.5, 1.0), random_seeds=1)
    )  # one-time imports (sklearn) untimed
    best_b = min(floor, key=floor.get)
    print(
        "forward-only s/image by batch: "
        + ", ".join(f"{b}: {s * 1e3:.1f} ms" for b, s in floor.items())
        + f"  -> best batch {best_b}"
    )

    def timed_peppr(batch_size):
        t = time.perf_counter()
        res = run_peppr(
            model,
            images,
            maps,
            truth,
            list(LABELS),
            PepprConfig(
                fractions=DEFAULT_FRACTIONS, random_seeds=args.seeds, include_reverse=True, batch_size=batch_size
            ),
        )
        return res, time.perf_counter() - t

    # PEPPR and the floor alternate (PEPPR, floor, PEPPR at the best batch, floor) and the two floor timings are
    # averaged: the load of a shared machine drifts over a run
    default_b = images_per_pass(model.device)
    results = {default_b: timed_peppr(default_b)}
    n_forwards = results[default_b][0].n_forwards
    floors = [floor_run(model, images, n_forwards, best_b)]
    if best_b != default_b:
        results[best_b] = timed_peppr(best_b)
    floors.append(floor_run(model, images, n_forwards, best_b))
    t_floor = float(np.mean(floors))
    for b, (res, t_peppr) in results.items():
        naive = res.n_forwards + res.n_skipped
        which_b = "default" if b == default_b else "the floor's best"
        print(
            f"PEPPR (batch {b}, {which_b}): {t_peppr:.1f} s for "
            f"{res.n_forwards} image forwards ({res.n_skipped} of {naive} naive forwards skipped, "
            f"{100 * res.n_skipped / naive:.1f} %); {t_peppr / res.n_forwards * 1e3:.1f} ms/forward"
        )
        print(
            f"  (a) forward-only floor: {res.n_forwards} forwards of the unmodified images at batch {best_b} "
            f"{t_floor:.1f} s ({t_floor / res.n_forwards * 1e3:.1f} ms/forward) -> PEPPR throughput = "
            f"{t_floor / t_peppr:.2f} x floor (target >= 0.9)"
        )
    res, t_default = results[default_b]
    naive = res.n_forwards + res.n_skipped

    rankings = []
    for m in maps.values():
        r = pixel_ranking(m)
        rankings += [r, r[::-1]]
    rankings += [random_ranking(images.shape[1:3], s) for s in range(args.seeds)]
    k = min(args.loop_images, args.n)
    t_loop, n_loop = per_image_loop(model, images[:k], rankings, DEFAULT_FRACTIONS)
    t_loop_full = t_loop * args.n / k
    print(
        f"(b) per-image per-fraction loop: {t_loop:.1f} s for {n_loop} forwards on {k} images "
        f"({t_loop / n_loop * 1e3:.1f} ms/forward); scaled to {args.n} images ({naive} forwards): "
        f"{t_loop_full:.1f} s -> PEPPR (default batch) is {t_loop_full / t_default:.2f} x faster"
    )
    macro = res.summary["overall"]["macro"]
    print(
        f"check: overall map macro A_erase {macro['A_erase']:.3f} / A_restore {macro['A_restore']:.3f} "
        f"(random {macro['random_A_erase']:.3f} / {macro['random_A_restore']:.3f})"
    )


if __name__ == "__main__":
    main()
