"""``global-xai``: the command-line face of the pipelines in :mod:`napari_global_xai.run`.

Sub-commands: ``explain``, ``peppr``, ``sag``, ``report``, ``demo`` (the whole chain on the shipped sample data), ``train-demo`` and
``make-sample-data``. Argument parsing and the terminal progress bar live here; everything else is the core.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ["main", "build_parser"]


class _TerminalProgress:
    """Adapts the core's ``progress(done, total, stage)`` callback to one tqdm bar per stage."""

    def __init__(self, disable: bool = False):
        self.bar = None
        self.stage = None
        self.disable = disable

    def __call__(self, done: int, total: int, stage: str) -> None:
        from tqdm.auto import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit="it", disable=self.disable, dynamic_ncols=True,
                            mininterval=0.5)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)  # tqdm throttles redraws (mininterval), so logs stay short

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def _cancel_on_interrupt():
    """Ctrl-C asks the pipeline to stop at the next batch (it keeps and writes what it finished); twice aborts."""
    import signal
    import threading

    event = threading.Event()

    def handler(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        print("\ncancelling after the current batch (Ctrl-C again to abort)…", file=sys.stderr)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread: no signal handling, never cancelled
        yield event.is_set
        return
    try:
        yield event.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _progress(quiet: bool):
    bar = _TerminalProgress(disable=quiet)
    try:
        yield bar
    finally:
        bar.close()


def _parse_params(items) -> dict:
    """``["n_steps=16", "baseline=blur"]`` → ``{"n_steps": 16, "baseline": "blur"}``."""
    params = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--param expects NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def _load_inputs(args):
    from .data import read_stack
    from .models import load_model

    stack = read_stack(args.stack, labels=args.labels, resize=tuple(args.resize) if args.resize else None)
    model = load_model(args.model, device=args.device, trust_pickle=args.trust_pickle)
    return stack, model


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("stack", help="multi-page TIFF, folder of PNG/JPEG/TIFF/DICOM images, or DICOM file")
    p.add_argument("--model", default=None, help="model card (.json); default: the shipped demo model")
    p.add_argument("--labels", default=None, help="labels CSV (default: found beside the stack)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu (default auto)")
    p.add_argument("--resize", nargs=2, type=int, metavar=("H", "W"), help="resize every image to H×W")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a full pickled model (runs code from the file)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _explain_config(args):
    from .explain import ExplainConfig

    return ExplainConfig(method=args.method, params=_parse_params(args.param), targets=args.targets,
                         subset=args.subset, normalisation=args.normalisation, reduction=args.reduction,
                         probability=args.probability, compute=args.compute, autocast=args.autocast)


def _add_explain_options(p):
    p.add_argument("--method", default="ig", help="saliency method (default ig); see --list-methods")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="method parameter, repeatable")
    p.add_argument("--targets", nargs="+", default=None, help="labels to explain (default all model labels)")
    p.add_argument("--subset", default="auto", choices=["auto", "positive", "predicted", "true_positive", "all"],
                   help="images entering a label's global map (auto: positive if labels are known)")
    p.add_argument("--compute", default="subset", choices=["subset", "all"],
                   help="compute maps only for the subset's pairs (default) or for every image and label")
    p.add_argument("--normalisation", default="mass", choices=["mass", "max", "none"])
    p.add_argument("--reduction", default="abs_sum", choices=["abs_sum", "sum", "pos_sum", "l2"])
    p.add_argument("--probability", action="store_true", help="explain probabilities instead of logits")
    p.add_argument("--autocast", choices=["bf16", "fp16"], default=None, help="mixed precision on CUDA")


def _cmd_explain(args) -> int:
    from .run import run_explain

    stack, model = _load_inputs(args)
    t0 = time.perf_counter()
    with _progress(args.quiet) as bar, _cancel_on_interrupt() as cancel:
        result = run_explain(stack, model, _explain_config(args), out_dir=args.out, progress=bar, cancel=cancel)
    gm = result.global_maps
    print(f"{result.config.method}: {result.n_computed} image-wise maps of {len(stack)} images in "
          f"{time.perf_counter() - t0:.1f}s on {model.device}; subset '{result.subset}'"
          + (" (CANCELLED)" if result.cancelled else ""))
    for name, count in zip(gm.labels, gm.count):
        print(f"  {name:<20} {count:>5} maps")
    print(f"results in {Path(args.out).resolve()}")
    return 0


def _cmd_peppr(args) -> int:
    from .run import run_peppr_from_files

    stack, model = _load_inputs(args)
    with _progress(args.quiet) as bar:
        summary = run_peppr_from_files(stack, model, args.global_maps, out_dir=args.out, fill=args.fill,
                                       random_seeds=args.random_seeds, progress=bar)
    print(summary)
    return 0


def _cmd_sag(args) -> int:
    from .run import run_sag_pipeline

    stack, model = _load_inputs(args)
    with _progress(args.quiet) as bar, _cancel_on_interrupt() as cancel:
        results, summary = run_sag_pipeline(stack, model, args.label, indices=args.images, method=args.method,
                                            fill=args.fill, max_root_size=args.max_root_size or None,
                                            out_dir=args.out, figure_formats=args.figure_formats,
                                            progress=bar, cancel=cancel)
    done = (f"cancelled after {len(results)} of {summary['n_requested']} images" if summary["cancelled"]
            else f"{len(results)} images")
    print(f"SAG for {args.label}: {done}, {sum(len(r.roots) for r in results)} roots shown; "
          f"results in {Path(args.out).resolve()}")
    return 0


def _cmd_demo(args) -> int:
    from .run import run_demo

    with _progress(args.quiet) as bar:
        text = run_demo(args.out, method=args.method, device=args.device, progress=bar)
    print(text)
    return 0


def _cmd_report(args) -> int:
    from .report import write_report

    paths = write_report(args.results, args.out, pdf=not args.no_pdf)
    sizes = ", ".join(f"{p} ({p.stat().st_size / 1e6:.1f} MB)" for p in paths.values())
    print(f"wrote {sizes}")
    return 0


def _cmd_train_demo(args) -> int:
    from .models.train_demo import train_demo_model

    card = train_demo_model(args.out, n_train=args.n_train, epochs=args.epochs, seed=args.seed, max_lr=args.max_lr,
                            unseen_share=args.unseen_share, init=args.init)
    print(f"wrote {Path(args.out) / 'demo_net.card.json'}: held-out AUROC {card.metrics['heldout_auroc']}")
    return 0


def _cmd_make_sample_data(args) -> int:
    from .samples import write_sample_data

    out = write_sample_data(args.out, n=args.n, seed=args.seed)
    print(f"wrote sample data to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="global-xai", description=__doc__.splitlines()[0])
    parser.add_argument("--list-methods", action="store_true", help="list saliency methods and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("explain", help="image-wise saliency maps and label-wise/overall global maps")
    _add_common(p)
    _add_explain_options(p)
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("peppr", help="PEPPR faithfulness curves of global maps")
    _add_common(p)
    p.add_argument("--global-maps", required=True, help="global_maps.tif written by 'explain'")
    p.add_argument("--fill", default="zero", choices=["zero", "black", "blur", "impute"])
    p.add_argument("--random-seeds", type=int, default=5)
    p.set_defaults(func=_cmd_peppr)

    p = sub.add_parser("sag", help="structured attention graphs (several sufficient explanations per image)")
    _add_common(p)
    p.add_argument("--label", required=True, help="model label to explain")
    p.add_argument("--images", nargs="+", type=int, default=None,
                   help="image indices (default: images positive for the label)")
    p.add_argument("--method", default="igos", help="saliency that ranks patches (default igos, as the official "
                   "code; gradcam is ~3x faster)")
    p.add_argument("--fill", default="blur", choices=["zero", "black", "blur", "impute"])
    p.add_argument("--max-root-size", type=int, default=6, help="largest root in patches (0 = no limit)")
    p.add_argument("--figure-formats", nargs="+", default=["png"], choices=["png", "svg", "pdf"],
                   help="formats of each image's graph figure (default png)")
    p.set_defaults(func=_cmd_sag)

    p = sub.add_parser("demo", help="the whole chain (explain → global maps → PEPPR) on the shipped sample data")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--method", default="ig")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("report", help="one self-contained HTML report (and a PDF of its figures) of a results folder")
    p.add_argument("results", help="a 'demo' output folder or a single explain / peppr / sag output folder")
    p.add_argument("--out", default="report.html", help="HTML file (default report.html); the PDF goes beside it")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF of the figures")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("train-demo", help="train the demo model on generated planted-truth images")
    p.add_argument("--out", required=True)
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=11)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-lr", type=float, default=3e-3, help="one-cycle peak learning rate")
    p.add_argument("--unseen-share", type=float, default=None,
                   help="share of peripheral_lesion training positives without a visible lesion (default 0.25)")
    p.add_argument("--init", default=None, help="model card whose weights start the training (fine-tuning)")
    p.set_defaults(func=_cmd_train_demo)

    p = sub.add_parser("make-sample-data", help="write the planted-truth sample stack and ground truth")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed", type=int, default=2026)
    p.set_defaults(func=_cmd_make_sample_data)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_methods:
        from .explain import METHODS, method_names

        for name in method_names():
            print(f"{name:<18} {METHODS[name].description}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .data.errors import StackError
    from .models.card import ModelLoadError

    try:
        return args.func(args)
    except (StackError, ModelLoadError, ValueError, FileNotFoundError) as exc:
        print(f"global-xai {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
