"""``global-xai cohort``: a cohort's global maps from an explain run's stored maps, beside a reference
(:mod:`..cohort.pipeline`)."""

from __future__ import annotations

from pathlib import Path

from ._common import _run_control
from ._options import command


def add_parser(sub) -> None:
    from ..analysis_config import COHORT_REFERENCES, CohortConfig

    defaults = CohortConfig()
    p = command(sub, "cohort", "a cohort's global maps (rows of the study table) beside the whole study's")
    p.add_argument("results", help="output folder of 'global-xai explain' (or its image_maps.zarr)")
    p.add_argument(
        "--where",
        default=None,
        metavar="FILTER",
        help="rows of the study table, e.g. \"outcome == 'FP'\" or \"outcome in ['FP', 'FN'] and age >= 60\": "
        "comparisons (== != < <= > >= in, not in) of columns with numbers or quoted text, joined by and / or / not "
        "(default every image; --columns lists the columns)",
    )
    p.add_argument(
        "--label",
        default=defaults.label,
        help="label whose maps are averaged; its truth, probability, prediction and outcome are also the columns "
        "truth, prob, pred and outcome (default every explained label and the overall map)",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="CSV",
        help="labels CSV with the images' truth and metadata columns (default: the CSV beside the explained stack)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help="probability at or above which a label counts as predicted, for the outcome "
        f"(default {defaults.threshold:g})",
    )
    p.add_argument(
        "--reference",
        choices=COHORT_REFERENCES,
        default=defaults.reference,
        help="what the cohort is judged against: the explain run's global maps (global, nothing read), every image "
        f"with a map (study) or the images outside the cohort (rest) (default {defaults.reference})",
    )
    p.add_argument(
        "--stack",
        default=None,
        help="the explained stack, to draw the maps over the cohort's mean anatomy in the PNG (optional)",
    )
    p.add_argument("--columns", action="store_true", help="list the study table's columns and exit")
    p.add_argument("--out", default=None, help="output folder (maps TIFF/PNG, table CSV, summary JSON)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis_config import CohortConfig
    from ..cohort.pipeline import run_cohort
    from ..cohort.table import study_table
    from ..errors import UsageError
    from ..explain.result import open_explain

    explained = open_explain(args.results)
    if args.columns:
        table = study_table(explained, args.labels, args.threshold, args.label)
        for name in table.names:
            print(f"{name:<28} e.g. {table.cell(0, name) if len(table) else ''}")
        return 0
    if not args.out:
        raise UsageError("--out is required (or --columns to list the columns)")
    config = CohortConfig(where=args.where, label=args.label, threshold=args.threshold, reference=args.reference)
    anatomy = None
    if args.stack:
        anatomy = _cohort_anatomy(args, config, explained)
    with _run_control(args.quiet) as control:
        result = run_cohort(
            explained, config, labels_csv=args.labels, out_dir=args.out, control=control, anatomy=anatomy
        )
    s = result.summary()
    print(
        f"cohort {args.where or 'every image'}: {s['n_selected']} of {s['n_images']} images; "
        f"judged against {s['reference']} ({s['reference_is']})"
    )
    for name, n in s["cohort_maps_per_label"].items():
        print(f"  {name:<20} {n} maps in the cohort, {s['reference_maps_per_label'][name]} in the reference")
    if "outcomes_in_cohort" in s:
        print("  outcomes in the cohort: " + ", ".join(f"{k} {v}" for k, v in s["outcomes_in_cohort"].items()))
    print(f"results in {Path(args.out).resolve()}")
    return 0


def _cohort_anatomy(args, config, explained):
    """The mean anatomy of the cohort's images, in the maps' frame."""
    import numpy as np

    from ..cohort.table import study_table
    from ..cohort.where import select_rows
    from ..data import read_stack

    table = study_table(explained, args.labels, config.threshold, config.label)
    rows = np.nonzero(select_rows(config.where, table.columns, len(table)))[0]
    stack = read_stack(args.stack, labels=args.labels).in_frame(explained.frame)
    if len(stack) != len(table):
        from ..errors import InputError

        raise InputError(f"{args.stack}: {len(stack)} images, the explain run has {len(table)}")
    return stack.subset(rows if len(rows) else np.arange(len(stack))).mean_image()
