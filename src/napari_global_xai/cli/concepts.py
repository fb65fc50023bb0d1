"""``global-xai concepts``: XNN concepts, their global maps, concept x label weights and top images
(:mod:`..concepts`)."""

from __future__ import annotations

from pathlib import Path

from ._common import _cancelled_exit, _load_inputs, _run_control
from ._options import add_input_options, command, count, positive


def add_parser(sub) -> None:
    from ..analysis_config import ConceptConfig

    defaults = ConceptConfig()
    p = command(sub, "concepts", "XNN concepts: global concept maps, concept x label weights, top images")
    add_input_options(p)
    p.add_argument("--k", type=positive, default=defaults.k, help=f"number of concepts (default {defaults.k})")
    p.add_argument(
        "--steps", type=positive, default=defaults.steps, help=f"training iterations (default {defaults.steps})"
    )
    p.add_argument(
        "--seed",
        type=count,
        default=defaults.seed,
        help=f"seed of the concept network's training (default {defaults.seed})",
    )
    p.add_argument("--layer", default=defaults.layer, help="layer to embed (default: the card's cam_layer)")
    p.add_argument(
        "--top", type=positive, default=defaults.top_n, help=f"top images listed per concept (default {defaults.top_n})"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis_config import ConceptConfig
    from ..concepts import run_concepts

    config = ConceptConfig(k=args.k, steps=args.steps, seed=args.seed, layer=args.layer, top_n=args.top)
    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control:  # a cancel before any result: Cancelled, exit 130 (cli.main)
        result = run_concepts(stack, model, config, out_dir=args.out, control=control)
    faith = result.faithfulness()
    lines = [f"{n}: AUROC model {v['model']:.3f}, concepts {v['concepts']:.3f}" for n, v in faith.items()]
    state = " (cancelled: partial results)" if result.cancelled else ""
    print("\n".join(lines + [f"{config.k} concepts{state}; results in {Path(args.out).resolve()}"]))
    return _cancelled_exit("concepts", result)
