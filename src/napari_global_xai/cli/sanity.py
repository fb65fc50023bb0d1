"""``global-xai sanity``: model-parameter randomisation check of saliency methods
(:mod:`..analyses.sanity_pipeline`)."""

from __future__ import annotations

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
        help=f"sample size when --images is not given (default {defaults.n_images})",
    )
    p.add_argument("--label", default=defaults.label, help="label explained (default each image's most probable label)")
    p.add_argument(
        "--depth",
        type=count,
        default=defaults.depth,
        help="group parameterised modules by the first DEPTH name parts (default, or 0: every module alone)",
    )
    p.add_argument("--independent", action="store_true", help="also randomise each layer alone")
    p.add_argument(
        "--seed",
        type=count,
        default=defaults.seed,
        help=f"layer j (top down) is re-initialised with seed SEED + j (default {defaults.seed})",
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
    )


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
    for line in result.verdicts.values():
        print(f"  {line}")
    print(f"results in {Path(args.out).resolve()}")
    return _cancelled_exit("sanity", result)
