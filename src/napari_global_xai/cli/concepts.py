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
    p.add_argument(
        "--keep-dead",
        action="store_true",
        help="keep concepts that die in training (active on no image, all-zero maps); default: drop them and say so",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis_config import ConceptConfig
    from ..concepts import run_concepts

    config = ConceptConfig(
        k=args.k, steps=args.steps, seed=args.seed, layer=args.layer, top_n=args.top, prune_dead=not args.keep_dead
    )
    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control:  # a cancel before any result: Cancelled, exit 130 (cli.main)
        result = run_concepts(stack, model, config, out_dir=args.out, control=control)
    faith = result.faithfulness()
    lines = [f"{n}: AUROC model {v['model']:.3f}, concepts {v['concepts']:.3f}" for n, v in faith.items()]
    lines += concept_lines(result)
    state = " (cancelled: partial results)" if result.cancelled else ""
    print("\n".join(lines + [f"{result.global_maps.shape[0]} concepts{state}; results in {Path(args.out).resolve()}"]))
    return _cancelled_exit("concepts", result)


def concept_lines(result) -> list[str]:
    """What a reader checks first: how many concepts lived, and per concept its label, region and off-retina mass."""
    import numpy as np

    units = result.units
    lines = []
    if units.get("dead"):
        went = "dropped" if units.get("pruned") else "kept (all-zero maps)"
        lines.append(
            f"{units['requested']} concepts asked, {units['dead']} died in training (active on no image) and were "
            f"{went}: {units['kept']} concepts"
        )
    tables = {t.label: t for t in result.region_tables}
    for k in range(result.global_maps.shape[0]):
        j = int(np.argmax(np.abs(result.weights[k]))) if result.weights.shape[1] else None
        text = f"  concept_{k}: " + (f"{result.weights[k, j]:+.2f} on {result.labels[j]}" if j is not None else "")
        table = tables.get(f"concept_{k}")
        if table is not None:
            best = table.row(table.best())
            text += f"; most enriched: {best['region']} ×{best['enrichment']:.1f} (within the field of view)"
        if result.fov_mass is not None and np.isfinite(result.fov_mass[k]):
            text += f"; {1 - result.fov_mass[k]:.0%} of its map outside the field of view"
        lines.append(text)
    if result.anatomy_note and not result.region_tables:
        lines.append(f"  ({result.anatomy_note})")
    return lines
