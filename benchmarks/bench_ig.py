"""Integrated Gradients: Captum's Gauss–Legendre rule against this project's variants, on three models (issue #25).

For every image (top-1 logit, zero baseline in normalised space) the script computes a reference map, Captum's IG
with ``--reference`` (512) Gauss–Legendre steps, and then, in **paired, interleaved** runs in this one process
(each repeat runs every candidate once, in turn; each candidate's time is divided by the Captum IG-32 time of the
same repeat, so the ratios see the same machine state):

* Captum ``IntegratedGradients`` (Gauss–Legendre, ``internal_batch_size`` = ``--path-batch``: Captum as tuned as it
  gets on a CPU, methods.md §4) at ``--steps`` steps;
* this project's ``ig`` with ``integration="adaptive"`` at ``--adaptive`` forward+backward nodes;

and reports per candidate the medians over the images of: rank ρ (Spearman, over pixels of the channel-summed
absolute maps) and relative L2 distance (raw attributions) to the reference, the completeness error
``|Σ attribution − (f(x) − f(b))| / |f(x) − f(b)|``, forward-only and forward+backward passes per map, seconds per
map and the paired time ratio to Captum IG-32; and the means over the images of the deletion and insertion areas
(``peppr.deletion_insertion``: each image's pixels erased / restored in the order of its channel-summed absolute
map, as an explain run's default ``abs_sum`` map ranks them, at PEPPR's default fractions, filled with ``--fill``
(default zero in normalised space, IG's baseline here), scored by the card's activation of the top-1 output;
normalised trapezoid areas, deletion lower and insertion higher is better). The reference map's own areas are
printed as the last row. The deletion/insertion passes run after the timed repeats and are not timed.

``--labels M`` adds the several-labels benchmark on the first image: its top-``M`` outputs, as ``M`` Captum IG-32
calls, as this project's shared path (``attribute_labels``: one forward per path image, one backward per label)
with Gauss–Legendre 32, and with the adaptive rule at each ``--adaptive`` count; time ratios to one Captum IG-32
call of the same repeat.

Models (``--model``): ``effnet`` (EfficientNet-Lite0 with its shipped ImageNet weights, the ``benchmark-igos``
extra, on real photos from installed packages at 224²), ``demo`` (the shipped demo model on synthetic 384 × 512
images), ``resnet34`` (the ResNet34-shaped model of the published UWF model's shape, random weights, 384 × 512).

Examples::

    .venv/bin/python benchmarks/bench_ig.py --model effnet --images 5 --labels 8
    .venv/bin/python benchmarks/bench_ig.py --model resnet34 --images 1 --steps 16 32 --adaptive 24 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import sync  # noqa: E402

#: Held-out photos (the adaptive rule's constants were chosen on chelsea, coffee and rocket).
PHOTOS = ("astronaut", "motorcycle", "grace_hopper", "china", "flower", "camera", "coins", "moon")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("effnet", "demo", "resnet34"), default="effnet")
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64], help="Captum Gauss–Legendre steps")
    p.add_argument("--adaptive", type=int, nargs="+", default=[16, 20, 24], help="adaptive rule's F+B nodes")
    p.add_argument("--reference", type=int, default=512, help="Gauss–Legendre steps of the reference map")
    p.add_argument("--repeats", type=int, default=2, help="paired repeats per image")
    p.add_argument("--labels", type=int, default=0, help="also time M labels of the first image (0: skip)")
    p.add_argument("--label-repeats", type=int, default=1)
    p.add_argument("--path-batch", type=int, default=8, help="path images per forward (Captum internal_batch_size)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--autocast", choices=("bf16", "fp16"), default=None, help="CUDA mixed precision")
    p.add_argument(
        "--fill",
        choices=("zero", "black", "blur"),
        default="zero",
        help="what deletion/insertion put in place of the removed pixels (default zero: IG's baseline here)",
    )
    return p.parse_args(argv)


def load(args):
    """``(LoadedModel, normalised images (n, c, H, W), raw pixels (n, H, W, C) uint8)``."""
    from napari_global_xai.models import DEMO_CARD_PATH, LoadedModel, load_model
    from napari_global_xai.models.device import resolve_device

    device = resolve_device(args.device)
    if args.model == "effnet":
        from _igos_official import imagenet_card, load_network, load_photos

        net = load_network(device)
        x, _ = load_photos(PHOTOS[: args.images], 224, device)
        model = LoadedModel(net, imagenet_card(), device)
        return model, x, raw_pixels(model, x)
    from napari_global_xai.data.synthetic import generate_stack

    if args.model == "demo":
        model = load_model(DEMO_CARD_PATH, device=device)
    else:
        from _models import real_size_model

        model = real_size_model(device)
    for p in model.module.parameters():
        p.requires_grad_(False)
    pixels = generate_stack(args.images, seed=7, split="eval").aligned("left").get(slice(None))
    return model, model.preprocess(pixels).to(device), pixels


def raw_pixels(model, x: torch.Tensor):
    """The uint8 pixels ``(n, H, W, C)`` whose :meth:`LoadedModel.preprocess` is ``x`` (its inverse, rounded)."""
    import numpy as np

    card = model.card
    mean = torch.tensor(card.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(card.std, dtype=torch.float64).view(1, -1, 1, 1)
    raw = (x.detach().double().cpu() * std + mean) * card.pixel_scale
    return np.clip(np.rint(raw.permute(0, 2, 3, 1).numpy()), 0, 255).astype(np.uint8)


def deletion_insertion_areas(args, model, pixels, maps, targets) -> dict[str, list[float]]:
    """Per-image deletion and insertion areas of ``maps`` ``(n, H, W)`` (see the module notes)."""
    import numpy as np

    from napari_global_xai.peppr import deletion_insertion

    curves = deletion_insertion(model, pixels, np.stack(maps), targets, fill=args.fill)
    return {key: [float(v) for v in values] for key, values in curves.areas().items()}


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.abs().sum(0).flatten().cpu().numpy(), b.abs().sum(0).flatten().cpu().numpy())[0])


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import captum.attr as ca

    from napari_global_xai.saliency import get_method

    model, x, pixels = load(args)
    device = x.device
    module = model.module
    with torch.no_grad():
        logits = torch.cat([module(x[i : i + 1]) for i in range(len(x))])
    top = logits.argmax(1)

    def autocast():
        import contextlib

        if args.autocast and device.type == "cuda":
            return torch.autocast("cuda", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[args.autocast])
        return contextlib.nullcontext()

    def captum(xi, target, n):
        with autocast():
            return (
                ca.IntegratedGradients(module)
                .attribute(
                    xi,
                    baselines=torch.zeros_like(xi),
                    target=target,
                    n_steps=n,
                    method="gausslegendre",
                    internal_batch_size=args.path_batch,
                )
                .detach()
            )

    def ours(n):
        method = get_method("ig", model, n_steps=n, integration="adaptive", internal_batch_size=args.path_batch)
        return method

    def timed(fn):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        return out, time.perf_counter() - t

    print(
        f"model {args.model}, {len(x)} images {tuple(x.shape[1:])}, device {device}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, path batch {args.path_batch}, reference GL-{args.reference}, "
        f"repeats {args.repeats}",
        flush=True,
    )
    names = [f"captum-GL{n}" for n in args.steps] + [f"adaptive-{n}" for n in args.adaptive]
    rows = {k: {"rho": [], "rel": [], "comp": [], "sec": [], "ratio": [], "fwd": [], "fb": []} for k in names}
    maps = {k: [] for k in [*names, "reference"]}  # each image's channel-summed absolute map, for deletion/insertion
    ref_comp = []
    for i in range(len(x)):
        xi, ti = x[i : i + 1], top[i : i + 1]
        ref = captum(xi, ti, args.reference)
        maps["reference"].append(ref[0].abs().sum(0).float().cpu().numpy())
        with torch.no_grad():
            change = float(module(xi)[0, ti] - module(torch.zeros_like(xi))[0, ti])
        ref_comp.append(abs(float(ref.sum()) - change) / abs(change))
        for _ in range(args.repeats):
            base = None
            results = {}
            for name in ["captum-GL32"] + [k for k in names if k != "captum-GL32"]:
                if name.startswith("captum"):
                    n = int(name[len("captum-GL") :])
                    attr, sec = timed(lambda n=n, xi=xi, ti=ti: captum(xi, ti, n))
                    fwd, fb = 0, n
                else:
                    method = ours(int(name.split("-")[1]))
                    with autocast():
                        attr, sec = timed(lambda m=method, xi=xi, ti=ti: m.attribute(xi, ti).detach())
                    fwd, fb = method.last_passes["forward"], method.last_passes["forward_backward"]
                base = sec if name == "captum-GL32" else base
                results[name] = (attr, sec, fwd, fb)
            for name in names:
                attr, sec, fwd, fb = results[name]
                r = rows[name]
                r["sec"].append(sec)
                r["ratio"].append(sec / base)
                r["fwd"].append(fwd)
                r["fb"].append(fb)
            for name in names:  # accuracy once per image (the maps of every repeat are the same)
                attr = results[name][0].float()
                if len(rows[name]["rho"]) <= i:
                    rows[name]["rho"].append(spearman(attr[0], ref[0]))
                    rows[name]["rel"].append(float((attr - ref).norm() / ref.norm()))
                    rows[name]["comp"].append(abs(float(attr.sum()) - change) / abs(change))
                    maps[name].append(attr[0].abs().sum(0).cpu().numpy())
        print(f"  image {i} done (top-1 output {int(ti)}, f(x) - f(0) = {change:.3f})", flush=True)
    targets = top.cpu().numpy()
    areas = {name: deletion_insertion_areas(args, model, pixels, maps[name], targets) for name in maps}
    print(
        "\n| rule | F+B passes | forward-only | rank ρ | relative L2 | completeness | s/map | time vs Captum IG-32 "
        "| deletion ↓ | insertion ↑ |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    med, mean = statistics.median, statistics.fmean
    for name in names:
        r, a = rows[name], areas[name]
        print(
            f"| {name} | {med(r['fb']):.0f} | {med(r['fwd']):.0f} | {med(r['rho']):.4f} | {med(r['rel']):.3f} | "
            f"{med(r['comp']):.3f} | {med(r['sec']):.3f} | {med(r['ratio']):.2f} | {mean(a['deletion']):.4f} | "
            f"{mean(a['insertion']):.4f} |"
        )
    a = areas["reference"]
    print(
        f"| reference GL-{args.reference} | {args.reference} | 0 | 1 | 0 | {statistics.median(ref_comp):.3f} | — | — | "
        f"{mean(a['deletion']):.4f} | {mean(a['insertion']):.4f} |"
    )
    print(f"\nper image (relative L2 / rank ρ, deletion / insertion with fill {args.fill}):")
    for name in names:
        vals = zip(rows[name]["rel"], rows[name]["rho"], areas[name]["deletion"], areas[name]["insertion"])
        print(f"  {name:14s} " + "  ".join(f"{l2:.3f}/{rho:.4f} {d:.3f}/{ins:.3f}" for l2, rho, d, ins in vals))
    if args.labels:
        several_labels(args, model, module, x[:1], logits[0], captum, ours, timed, autocast)


def several_labels(args, model, module, xi, logits, captum, ours, timed, autocast):
    from napari_global_xai.saliency import get_method

    m = min(args.labels, logits.numel())
    targets = logits.argsort(descending=True)[:m].view(1, m)
    shared = get_method("ig", model, n_steps=32, internal_batch_size=args.path_batch)
    cands = {
        f"{m} Captum IG-32 calls": lambda: [captum(xi, targets[:, j], 32) for j in range(m)],
        "shared path, GL-32": lambda: shared.attribute_labels(xi, targets),
    }
    for n in args.adaptive:
        method = ours(n)
        cands[f"shared path, adaptive-{n}"] = lambda method=method: method.attribute_labels(xi, targets)
    ratios = {k: [] for k in cands}
    seconds = {k: [] for k in cands}
    for _ in range(args.label_repeats):
        _, one = timed(lambda: captum(xi, targets[:, 0], 32))
        for name, fn in cands.items():
            with autocast():
                _, sec = timed(fn)
            ratios[name].append(sec / one)
            seconds[name].append(sec)
    loop = torch.stack([a[0] for a in cands[f"{m} Captum IG-32 calls"]()], 0)
    together = shared.attribute_labels(xi, targets)[0]
    diff = float((together - loop).abs().max() / loop.abs().max())
    print(f"\n{m} labels of one image (top-{m} outputs), time vs one Captum IG-32 call of the same repeat:")
    print("| computation | s | time vs one Captum IG-32 call |")
    print("|---|---|---|")
    for name in cands:
        print(f"| {name} | {statistics.median(seconds[name]):.2f} | {statistics.median(ratios[name]):.2f} |")
    print(f"shared GL-32 maps vs the {m} Captum calls: largest difference {diff:.1e} of the largest value")


if __name__ == "__main__":
    main()
