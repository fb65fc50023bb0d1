"""Benchmark I-GOS and iGOS++ (saliency/igos/): batched time per image versus its own floor and a one-by-one loop.

For each method the script runs the batched implementation on ``k`` images and reports

* seconds per image (batched over the ``k`` images, at most ``--max-batch`` path images per model forward);
* the **floor**: the forward-only and forward+backward images the run actually made (``last_forward_images``,
  ``last_backward_images``) times the measured per-image cost of a plain forward / forward+backward-to-the-input of
  the same model at its best batch size (batch sizes 1, 2, 4, … 32), and the ratio to it;
* the same code run one image at a time, and the ratio loop / batched.

The best batch sizes are found once. After that, right before every method run, the floor is measured by
**replaying** the run's passes: as many plain forwards and forward+backward passes of the same images as the method
made, at the best batch sizes, timed as a whole (sustained throughput, the same machine conditions as the run it is
compared with; on a shared 2-core machine a pass's cost drifts by up to 50 % within a minute). Each figure is the
minimum over the repeats. The optimistic floor from the fastest single pass of each kind (min of ``--repeats``) is
printed beside it.
``--official`` uses the official CLI counts (20 iterations × 15 path steps: khorrams/IGOS_pp ``main.py`` passes
``--ig_iter`` as the iterations and ``--iterations`` as the path steps) instead of the short default.

``--official-code DIR`` runs a different benchmark (``_igos_official.py``): the official code of a khorrams/IGOS_pp
checkout in ``DIR`` (outside this repository; CPU shim applied in a temporary copy at run time) and ours, back to
back on a real ImageNet-pretrained network (EfficientNet-Lite0) and real photographs shipped in installed packages
(scikit-image, matplotlib, scikit-learn; ``--photos``, default the held-out set), scored by the official
deletion/insertion ``metric()``, for every ``--seeds`` value; it prints per-image rows and the passes.
``--ours KEY=VALUE`` sets our parameters over ``--preset`` (tuning runs).

The model is the shipped demo model when its card exists, else a randomly initialised ``DemoNet`` stand-in. Images
come from the synthetic generator (right eyes mirrored), resized to ``--size``.

Example::

    python benchmarks/bench_igos.py --images 4 --iterations 2 --size 192 256
    python benchmarks/bench_igos.py --official-code /tmp/igos_official --methods igos --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from napari_global_xai.data.synthetic import generate_stack
from napari_global_xai.models import DEMO_CARD_PATH, LoadedModel, ModelCard, load_model
from napari_global_xai.models.architectures import DemoNet
from napari_global_xai.models.device import resolve_device
from napari_global_xai.saliency.base import get_method

sys.path.insert(0, str(Path(__file__).parent))
from _igos_official import HELD_OUT_PHOTOS, PHOTOS, TUNING_PHOTOS, compare, trace  # noqa: E402
from _timing import replay_passes, timed  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=4, help="images k attributed together (default 4)")
    p.add_argument("--iterations", type=int, default=2, help="optimisation iterations (default 2; official CLI 20)")
    p.add_argument("--ig-iter", type=int, default=5, help="integrated-gradient path steps (default 5; official CLI 15)")
    p.add_argument(
        "--official",
        action="store_true",
        help="the official CLI counts: 20 iterations × 15 path steps (main.py swaps the two flags)",
    )
    p.add_argument("--mask-size", type=int, default=28, help="mask grid shorter side (default 28)")
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="most images per model forward (default: the method's own, path_batch_size: 4 on a CPU at "
        "384 × 512, 32 on a GPU)",
    )
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, mps (default cpu)")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(192, 256),
        metavar=("H", "W"),
        help="input size (default 192 256; the UWF size is 384 512)",
    )
    p.add_argument("--methods", nargs="+", default=["igos", "igos++"], help="methods to time")
    p.add_argument("--warm-start", action="store_true", help="line search warm start (not the official default)")
    p.add_argument("--repeats", type=int, default=3, help="repetitions of each floor measurement (min is kept)")
    p.add_argument(
        "--method-repeats",
        type=int,
        default=2,
        help="repetitions of each method run, batched and one-by-one (min is kept; default 2)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: stable timings on a busy 2-core machine; 0 = torch's)",
    )
    p.add_argument(
        "--card",
        default=str(DEMO_CARD_PATH),
        help="model card (default: the shipped demo model; a random DemoNet stands in if it is missing)",
    )
    g = p.add_argument_group("comparison with the official code (--official-code)")
    g.add_argument(
        "--official-code",
        default=None,
        metavar="DIR",
        help="khorrams/IGOS_pp checkout (commit bbd49e3) outside the repository: compare with it",
    )
    g.add_argument(
        "--photos",
        nargs="+",
        default=list(HELD_OUT_PHOTOS),
        choices=PHOTOS,
        metavar="PHOTO",
        help=f"real photos from installed packages (default: the held-out set {HELD_OUT_PHOTOS}; the "
        f"fast preset was tuned on {TUNING_PHOTOS})",
    )
    g.add_argument("--input-size", type=int, default=224, help="square input side (default 224, the official)")
    g.add_argument("--seeds", type=int, nargs="+", default=[0], help="noise seeds, both codes (default 0)")
    g.add_argument("--preset", default="fast", help="our preset (default fast; 'official' = the official counts)")
    g.add_argument(
        "--ours",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="our parameters over the preset, e.g. iterations=25 ig_iter=4 (values parsed as Python "
        "literals; for tuning runs)",
    )
    g.add_argument("--official-iterations", type=int, default=20, help="official iterations (CLI: 20)")
    g.add_argument("--official-ig-iter", type=int, default=15, help="official path steps (CLI: 15)")
    g.add_argument(
        "--quadrature-check",
        action="store_true",
        help="also measure the path-integral error of the uniform and Gauss–Legendre rules at the official "
        "I-GOS masks against a many-node reference",
    )
    g.add_argument(
        "--trace",
        default=None,
        metavar="PHOTO",
        choices=PHOTOS,
        help="instead: the official IGOS and ours (preset official, score_scale 1) on PHOTO with the same noise, "
        "iteration by iteration (masks, directions, steps); --seeds' first value, --official-iterations/-ig-iter",
    )
    g.add_argument(
        "--official-cache",
        default=None,
        metavar="FILE",
        help="reuse / store the official masks, times and counts in FILE (the official code is seeded: a cached "
        "run equals a rerun with the same --threads bit for bit, benchmarks/RESULTS.md)",
    )
    g.add_argument(
        "--maps-figure",
        default=None,
        metavar="PNG",
        help="also save each photo with the official map and ours (first method and seed) and their scores",
    )
    return p.parse_args(argv)


def load(device: torch.device, card_path=DEMO_CARD_PATH) -> tuple[LoadedModel, str]:
    """The model of ``card_path`` (default the demo model), or a random-weight DemoNet stand-in when it is missing."""
    if Path(card_path).exists():
        return load_model(card_path, device=device), f"model card {card_path}"
    card = ModelCard(
        name="demo_net_random",
        labels=[f"label{i}" for i in range(5)],
        weights="unused",
        format="state_dict",
        architecture="demo_net",
        mean=[0.5, 0.5],
        std=[0.25, 0.25],
    )
    module = DemoNet(in_channels=2, n_labels=5).to(device).to(memory_format=torch.channels_last)
    return LoadedModel(module, card, device), "DemoNet stand-in with random weights (demo card missing)"


def make_inputs(model: LoadedModel, k: int, size) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` synthetic images (left-eye frame, red+green), normalised, at ``size``; targets = top prediction."""
    stack = generate_stack(k, seed=5, split="eval")
    images = stack.aligned("left").get(slice(None))[..., :2]
    x = model.preprocess(images)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        targets = model.module(x).argmax(dim=1)
    return x, targets


def pass_costs(model: LoadedModel, x: torch.Tensor, batch: int, repeats: int) -> tuple[float, float]:
    """Per-image seconds of a plain forward and of a forward+backward to the input at batch size ``batch``."""
    module, device = model.module, x.device
    xb = x[:1].expand(batch, *x.shape[1:]).contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.no_grad():
            module(xb)

    def forward_backward():
        xi = xb.clone().requires_grad_(True)
        torch.autograd.grad(module(xi)[:, 0].sum(), xi)

    forward(), forward_backward()  # warm-up
    t_f = min(timed(forward, device) for _ in range(repeats)) / batch
    t_fb = min(timed(forward_backward, device) for _ in range(repeats)) / batch
    return t_f, t_fb


def floor_costs(model: LoadedModel, x: torch.Tensor, max_batch: int, repeats: int) -> dict:
    """Per-image seconds of a forward and of a forward+backward to the input, per batch size; and the best."""
    table = {b: pass_costs(model, x, b, repeats) for b in (1, 2, 4, 8, 16, 32, 64) if b <= max_batch}
    best_f = min(table.items(), key=lambda kv: kv[1][0])
    best_fb = min(table.items(), key=lambda kv: kv[1][1])
    return {
        "table": table,
        "forward": best_f[1][0],
        "forward_batch": best_f[0],
        "forward_backward": best_fb[1][1],
        "forward_backward_batch": best_fb[0],
    }


def run_method(name, model, x, targets, params, repeats: int, floor: dict, floor_repeats: int) -> dict:
    """Batched run and one-image-at-a-time loop of one method (each the fastest of ``repeats``), each repeat
    preceded by a replay of its passes (the floor) and a re-timing of single passes; the minimum of each is kept."""
    device = x.device
    method = get_method(name, model, **params)
    method.attribute(x[:1], targets[:1])  # warm-up (allocator, oneDNN kernels for these shapes)
    method.attribute(x, targets)  # pass counts for the first replay
    seconds = loop_seconds = t_f = t_fb = replay = float("inf")
    for _ in range(repeats):
        fwd, bwd = method.last_forward_images, method.last_backward_images
        replay = min(
            replay, replay_passes(model.module, x, fwd, bwd, floor["forward_batch"], floor["forward_backward_batch"])
        )
        t_f = min(t_f, pass_costs(model, x, floor["forward_batch"], floor_repeats)[0])
        t_fb = min(t_fb, pass_costs(model, x, floor["forward_backward_batch"], floor_repeats)[1])
        seconds = min(seconds, timed(lambda: method.attribute(x, targets), device))
        trials = method.last_stats["line_search_trials"].float().mean().item()
        loop_fwd = loop_bwd = 0
        total = 0.0
        for i in range(len(x)):
            single = get_method(name, model, **params)
            total += timed(lambda single=single, i=i: single.attribute(x[i : i + 1], targets[i : i + 1]), device)
            loop_fwd += single.last_forward_images
            loop_bwd += single.last_backward_images
        loop_seconds = min(loop_seconds, total)
    fwd, bwd = method.last_forward_images, method.last_backward_images
    return {
        "seconds": seconds,
        "forward_images": fwd,
        "backward_images": bwd,
        "trials": trials,
        "loop_seconds": loop_seconds,
        "loop_forward_images": loop_fwd,
        "loop_backward_images": loop_bwd,
        "passes_per_map": method.passes_per_map(),
        "floor_seconds": replay,
        "single_pass_floor_seconds": fwd * t_f + bwd * t_fb,
        "forward_cost": t_f,
        "forward_backward_cost": t_fb,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.official_code:
        trace(args) if args.trace else compare(args)
        return
    device = resolve_device(args.device)
    torch.manual_seed(0)
    if args.official:
        args.iterations, args.ig_iter = 20, 15
    model, model_desc = load(device, args.card)
    x, targets = make_inputs(model, args.images, args.size)
    k = len(x)
    params = {
        "preset": "official",
        "iterations": args.iterations,
        "ig_iter": args.ig_iter,
        "mask_size": args.mask_size,
        "max_batch": args.max_batch,
        "warm_start": args.warm_start,
    }
    print(f"model: {model_desc}; device {device}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"input {k} × {tuple(x.shape[1:])}; targets {targets.tolist()}; params {params}")

    t0 = time.perf_counter()
    floor = floor_costs(model, x, max(32, args.max_batch or 0), args.repeats)
    print(f"\nper-image cost of plain passes (min of {args.repeats} repeats):")
    print("  batch  forward ms  fwd+bwd ms")
    for b, (t_f, t_fb) in floor["table"].items():
        print(f"  {b:5d}  {t_f * 1e3:10.2f}  {t_fb * 1e3:10.2f}")
    print(
        f"  best: forward {floor['forward'] * 1e3:.2f} ms (batch {floor['forward_batch']}), "
        f"forward+backward {floor['forward_backward'] * 1e3:.2f} ms (batch {floor['forward_backward_batch']})"
    )

    rows = []
    for name in args.methods:
        r = run_method(name, model, x, targets, params, max(1, args.method_repeats), floor, args.repeats)
        rows.append((name, r, r["floor_seconds"]))

    print(
        f"\n{'method':8s} {'s/img':>8s} {'fwd/img':>8s} {'f+b/img':>8s} {'trials':>6s} {'floor s/img':>11s} "
        f"{'×floor':>7s} {'1-by-1 s/img':>12s} {'1-by-1/batched':>14s} {'passes_per_map':>14s}"
    )
    for name, r, floor_s in rows:
        print(
            f"{name:8s} {r['seconds'] / k:8.3f} {r['forward_images'] / k:8.1f} {r['backward_images'] / k:8.1f} "
            f"{r['trials']:6.2f} {floor_s / k:11.3f} {r['seconds'] / floor_s:7.2f} {r['loop_seconds'] / k:12.3f} "
            f"{r['loop_seconds'] / r['seconds']:14.2f} {r['passes_per_map']:14d}"
        )
        if (r["loop_forward_images"], r["loop_backward_images"]) != (r["forward_images"], r["backward_images"]):
            print(
                f"  note: the one-by-one loop made {r['loop_forward_images']} forward / "
                f"{r['loop_backward_images']} fwd+bwd images (batched: {r['forward_images']} / "
                f"{r['backward_images']})"
            )
    for name, r, _ in rows:
        print(
            f"  {name}: floor = its {r['forward_images']} forward + {r['backward_images']} forward+backward images "
            f"replayed at batch {floor['forward_batch']} / {floor['forward_backward_batch']}: "
            f"{r['floor_seconds']:.2f} s -> floor/ours = {r['floor_seconds'] / r['seconds']:.2f}; "
            f"from the fastest single passes ({r['forward_cost'] * 1e3:.2f} / {r['forward_backward_cost'] * 1e3:.2f}"
            f" ms per image): {r['single_pass_floor_seconds']:.2f} s -> "
            f"{r['single_pass_floor_seconds'] / r['seconds']:.2f}"
        )
    print(
        "(floor: the run's own passes replayed as plain passes of the same images at the best batch sizes, timed "
        "beside the run; ×floor = ours / floor; trials = line-search loss evaluations per image and iteration)"
    )
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
