"""``global-xai sanity``: model-parameter randomisation check of saliency methods
(:mod:`..analyses.sanity_pipeline`): image-wise and global verdicts with their intervals and references."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import _cancelled_exit, _load_inputs, _parse_params, _run_control
from ._options import add_input_options, add_postprocess_options, command, count, positive


def add_parser(sub) -> None:
    from .. import config
    from ..analysis_config import SANITY_METHODS, SanityConfig

    defaults = SanityConfig()
    p = command(sub, "sanity", "model-parameter randomisation check of saliency methods")
    add_input_options(p)
    p.add_argument(
        "--method",
        nargs="+",
        default=list(SANITY_METHODS),
        help=f"methods to check (default {' '.join(SANITY_METHODS)})",
    )
    p.add_argument(
        "--param", action="append", metavar="METHOD.NAME=VALUE", help="method parameter, e.g. ig.n_steps=8 (repeatable)"
    )
    add_postprocess_options(p, config.ExplainConfig())
    p.add_argument(
        "--images", nargs="+", type=int, default=defaults.images, help="image indices (default evenly spaced)"
    )
    p.add_argument(
        "--n-images",
        type=positive,
        default=defaults.n_images,
        help=f"sample size when --images is not given (default {defaults.n_images}: enough for intervals a few "
        "hundredths wide on the shipped sample)",
    )
    p.add_argument("--label", default=defaults.label, help="label explained (default each image's most probable label)")
    p.add_argument(
        "--depth",
        type=count,
        default=defaults.depth,
        help=f"group parameterised modules by the first DEPTH name parts (default {defaults.depth}: the top-level "
        "blocks; 0: every module alone, one step each)",
    )
    p.add_argument(
        "--independent",
        action=argparse.BooleanOptionalAction,
        default=defaults.independent,
        help="also randomise each layer alone, besides the cascade (default on; --no-independent halves the runtime)",
    )
    p.add_argument(
        "--seed",
        type=count,
        default=defaults.seed,
        help=f"layer j (top down) is re-initialised with seed SEED + j; the bootstrap's seed (default {defaults.seed})",
    )
    p.add_argument(
        "--n-boot",
        type=positive,
        default=defaults.n_boot,
        help=f"bootstrap resamples of the image-wise 95%% intervals (default {defaults.n_boot}; the global "
        "intervals use a fifth)",
    )
    p.set_defaults(func=run)


def _method_configs(args):
    """``--method ig --param ig.n_steps=4`` → one ExplainConfig per method (parameters prefixed by the method)."""
    from ..config import ExplainConfig

    params = {m: {} for m in args.method}
    for item in args.param or []:
        key = item.split("=", 1)[0]
        if "." not in key or key.split(".", 1)[0] not in params:
            raise SystemExit(f"--param expects METHOD.NAME=VALUE with METHOD among {args.method}, got {item!r}")
        method, rest = item.split(".", 1)
        params[method].update(_parse_params([rest]))
    return [
        ExplainConfig(method=m, params=params[m], reduction=args.reduction, normalisation=args.normalisation)
        for m in args.method
    ]


def _sanity_config(args):
    """The :class:`~napari_global_xai.analysis_config.SanityConfig` of the command line."""
    from ..analysis_config import SanityConfig

    return SanityConfig(
        methods=_method_configs(args),
        images=args.images,
        n_images=args.n_images,
        label=args.label,
        depth=args.depth,
        independent=args.independent,
        seed=args.seed,
        n_boot=args.n_boot,
    )


def _table(result) -> list[str]:
    """The verdicts as a table: per method and level, |ρ| after full randomisation and the two references."""
    from ..analyses.sanity_result import VERDICT_COLUMNS

    head = VERDICT_COLUMNS
    rows = [head] + result.verdict_rows()
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _layer_table(result) -> list[str]:
    """Mean image-wise |ρ| per layer: cascading (randomised down to it) and that layer alone."""
    lines = []
    for m in result.methods:
        alone = result.independent_intervals.get(m) or []
        cells = []
        for j, layer in enumerate(result.layers):
            casc = result.step_intervals[m][j + 1].mean if j + 1 < len(result.step_intervals[m]) else float("nan")
            cells.append(f"{layer} {casc:.2f}" + (f"/{alone[j].mean:.2f}" if j < len(alone) else ""))
        lines.append(f"  {m}: " + ", ".join(cells))
    return lines


def run(args) -> int:
    from ..analyses.sanity_pipeline import run_sanity

    config = _sanity_config(args)
    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control:
        result = run_sanity(stack, model, config, out_dir=args.out, control=control)
    print(
        f"sanity check on {len(result.image_indices)} images, {len(result.layers)} layers randomised top down"
        + (" (CANCELLED)" if result.cancelled else "")
    )
    for line in _table(result):
        print(f"  {line}")
    print(
        "image-wise mean |ρ| per layer, top down: cascading (every layer down to it randomised)"
        + ("/that layer alone" if config.independent else "")
    )
    for line in _layer_table(result):
        print(line)
    print("verdicts (pass: the randomised |ρ| interval lies below the unrelated-pair interval):")
    for text in result.verdicts.values():
        for line in text.splitlines():
            print(f"  {line}")
    print(f"results in {Path(args.out).resolve()}")
    return _cancelled_exit("sanity", result)
