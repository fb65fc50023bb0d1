"""``global-xai peppr``: PEPPR faithfulness curves of global maps (:mod:`..peppr.pipeline`)."""

from __future__ import annotations

from pathlib import Path

from ._common import _cancelled_exit, _cluster_choice, _executor, _load_inputs, _run_control
from ._options import add_cluster_options, add_input_options, command, count


def add_parser(sub) -> None:
    from .. import config

    defaults = config.PepprConfig()
    p = command(sub, "peppr", "PEPPR faithfulness curves of global maps")
    add_input_options(p)
    p.add_argument(
        "--global-maps",
        required=True,
        metavar="PATH",
        help="the global maps: an output folder of 'global-xai explain' (or its image_maps.zarr), or a "
        "global_maps.tif of 'explain --format tiff' / '--export-tiff'",
    )
    p.add_argument(
        "--fill",
        default=defaults.fill,
        choices=config.FILLS,
        help=f"value of erased pixels (default {defaults.fill})",
    )
    p.add_argument(
        "--random-seeds",
        type=count,
        default=defaults.random_seeds,
        help=f"random-order baselines (default {defaults.random_seeds})",
    )
    p.add_argument(
        "--fractions",
        nargs="+",
        type=float,
        default=None,
        metavar="P",
        help="fractions of pixels erased/restored, increasing in [0, 1]; 0 and 1 are added when missing "
        f"(default: {' '.join(f'{f:g}' for f in config.DEFAULT_FRACTIONS)})",
    )
    add_cluster_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import PepprConfig, complete_fractions
    from ..peppr.pipeline import run_peppr_from_files

    given = {} if args.fractions is None else {"fractions": args.fractions}
    config = PepprConfig(fill=args.fill, random_seeds=args.random_seeds, **given)  # checked before any input is read
    added = complete_fractions(args.fractions)[1] if given else []
    where = _cluster_choice(args)
    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control, _executor(where, args.device) as executor:
        summary, result = run_peppr_from_files(
            stack, model, args.global_maps, args.out, config, control=control, executor=executor
        )
    if added:
        summary += (
            f"\nnote: added fraction(s) {', '.join(f'{a:g}' for a in added)} (the curves are read against "
            f"the intact image at both ends); fractions used: {', '.join(f'{f:g}' for f in config.fractions)}"
        )
    print(summary + f"\nresults in {Path(args.out).resolve()}")
    return _cancelled_exit("peppr", result, f"{result.n_images} of {result.n_requested} images")
