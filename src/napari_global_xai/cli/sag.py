"""``global-xai sag``: structured attention graphs, several sufficient explanations per image
(:mod:`..sag.pipeline`)."""

from __future__ import annotations

from pathlib import Path

from ._common import _cancelled_exit, _cluster_choice, _executor, _load_inputs, _run_control
from ._options import add_cluster_options, add_input_options, command


def add_parser(sub) -> None:
    from .. import config

    defaults = config.SagConfig()
    p = command(sub, "sag", "structured attention graphs (several sufficient explanations per image)")
    add_input_options(p)
    p.add_argument("--label", required=True, help="model label to explain")
    p.add_argument(
        "--images", nargs="+", type=int, default=None, help="image indices (default: images positive for the label)"
    )
    p.add_argument(
        "--method",
        default=defaults.method,
        help=f"saliency that ranks patches (default {defaults.method}, as the official code; gradcam is ~3x faster)",
    )
    p.add_argument(
        "--fill",
        default=defaults.fill,
        choices=config.FILLS,
        help=f"value of hidden patches (default {defaults.fill})",
    )
    p.add_argument(
        "--max-root-size",
        type=int,
        default=defaults.max_root_size,
        help=f"largest root in patches (0 = no limit; default {defaults.max_root_size})",
    )
    p.add_argument(
        "--figure-formats",
        nargs="+",
        default=list(defaults.figure_formats),
        choices=config.FIGURE_FORMATS,
        help=f"formats of each image's graph figure (default {' '.join(defaults.figure_formats)})",
    )
    add_cluster_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import SagConfig
    from ..sag.pipeline import run_sag_pipeline

    config = SagConfig(
        method=args.method,
        fill=args.fill,
        max_root_size=args.max_root_size or None,
        figure_formats=tuple(args.figure_formats),
    )
    where = _cluster_choice(args)
    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control, _executor(where, args.device) as executor:
        result = run_sag_pipeline(
            stack, model, args.label, config, indices=args.images, out_dir=args.out, control=control, executor=executor
        )
    n_done = len(result.results)
    done = f"cancelled after {n_done} of {result.n_requested} images" if result.cancelled else f"{n_done} images"
    print(f"SAG for {args.label}: {done}, {result.n_roots} roots shown; results in {Path(args.out).resolve()}")
    return _cancelled_exit("sag", result, f"{n_done} of {result.n_requested} images")
