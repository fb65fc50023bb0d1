"""``global-xai concepts``: XNN concepts, their global maps, concept x label weights and top images
(:mod:`..concepts`)."""

from __future__ import annotations

from pathlib import Path

from ._common import _cancelled_exit, _load_inputs, _run_control
from ._options import add_input_options, command


def add_parser(sub) -> None:
    p = command(sub, "concepts", "XNN concepts: global concept maps, concept x label weights, top images")
    add_input_options(p)
    p.add_argument("--k", type=int, default=8, help="number of concepts (default 8)")
    p.add_argument("--steps", type=int, default=800, help="training iterations (default 800)")
    p.add_argument("--seed", type=int, default=0, help="seed of the concept network's training (default 0)")
    p.add_argument("--layer", default=None, help="layer to embed (default: the card's cam_layer)")
    p.add_argument("--top", type=int, default=8, help="top images listed per concept (default 8)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..concepts import ConceptConfig, run_concepts

    config = ConceptConfig(k=args.k, steps=args.steps, seed=args.seed, layer=args.layer, top_n=args.top)
    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control:  # a cancel before any result: Cancelled, exit 130 (cli.main)
        result = run_concepts(stack, model, config, out_dir=args.out, control=control)
    faith = result.faithfulness()
    lines = [f"{n}: AUROC model {v['model']:.3f}, concepts {v['concepts']:.3f}" for n, v in faith.items()]
    state = " (cancelled: partial results)" if result.cancelled else ""
    print("\n".join(lines + [f"{config.k} concepts{state}; results in {Path(args.out).resolve()}"]))
    return _cancelled_exit("concepts", result)
