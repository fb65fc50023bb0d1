"""``global-xai compare``: group difference map of image-wise maps with a permutation test
(:mod:`..analyses.compare_pipeline`)."""

from __future__ import annotations

from pathlib import Path

from ._common import _cancelled_exit, _run_control
from ._options import add_device_option, command, count, positive


def add_parser(sub) -> None:
    from ..analysis_config import COMPARE_NORMALISATIONS, COMPARE_SMOOTH_FRACTION, CompareConfig

    defaults = CompareConfig()
    p = command(sub, "compare", "group difference map of image-wise maps with a permutation test")
    p.add_argument("explain_dir", help="output folder of 'global-xai explain' (or its image_maps.zarr)")
    p.add_argument(
        "--csv",
        required=True,
        help="CSV with an image id column and the grouping column (read as "
        "plain text: any column, e.g. the labels CSV's site, device, sex or age)",
    )
    p.add_argument("--column", required=True, help="grouping column (categorical, numeric or a 0/1 label)")
    p.add_argument(
        "--groups",
        nargs=2,
        metavar=("A", "B"),
        default=defaults.groups,
        help="values forming group A and group B (B may be 'rest'; default the column's two values)",
    )
    p.add_argument(
        "--threshold", type=float, default=defaults.threshold, help="numeric split: A = value > T (default median)"
    )
    p.add_argument("--label", default=None, help="label whose maps are compared (default: each image's mean)")
    p.add_argument(
        "--n-permutations",
        type=positive,
        default=defaults.n_permutations,
        help=f"random permutations of the group labels (default {defaults.n_permutations})",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=defaults.alpha,
        help=f"level of the FDR and FWE corrections (default {defaults.alpha:g})",
    )
    p.add_argument(
        "--seed", type=count, default=defaults.seed, help=f"seed of the permutations (default {defaults.seed})"
    )
    p.add_argument(
        "--maps-as",
        dest="normalisation",
        choices=COMPARE_NORMALISATIONS,
        default=defaults.normalisation,
        help="what is compared: raw = the attributions as the method made them (needs 'global-xai explain "
        "--normalisation none --map-dtype float32'; maps normalised per image are refused, since a group that "
        "concentrates its "
        "evidence would look lower everywhere else), shares = each map divided by its total (a lower pixel is a "
        f"smaller share, by construction wherever the other group concentrates) (default {defaults.normalisation})",
    )
    p.add_argument(
        "--max-permutations",
        type=positive,
        default=defaults.max_permutations,
        help="pixels where the p-floor 1/(1+N) binds get 10x more permutations, stage after stage, up to this "
        f"many (default {defaults.max_permutations}; equal to --n-permutations: none)",
    )
    p.add_argument(
        "--smooth",
        dest="smooth_sigma",
        type=float,
        metavar="SIGMA",
        default=defaults.smooth_sigma,
        help="σ in pixels of the Gaussian every map (both groups alike) is smoothed with before the test: tames "
        "pixel-level, heavy-tailed maps such as Integrated Gradients', at the price of resolution (differences "
        f"narrower than about 2σ are spread); 0 = none (default 1/{round(1 / COMPARE_SMOOTH_FRACTION)} of the maps' "
        "shorter side)",
    )
    add_device_option(p, "where the permutation test runs")
    p.add_argument("--regions", default=None, help="region label TIFF (e.g. regions.tif of 'global-xai regions')")
    p.add_argument("--out", required=True, help="output folder (difference, p-value and significance maps)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analyses.compare_normalise import smoothing_text
    from ..analyses.compare_pipeline import run_compare
    from ..analyses.compare_report import floor_text, total_text
    from ..analyses.explain_inputs import label_maps, read_csv_column
    from ..analyses.regions import read_region_mask
    from ..analysis_config import CompareConfig
    from ..explain.result import open_explain

    config = CompareConfig(
        groups=args.groups,
        threshold=args.threshold,
        n_permutations=args.n_permutations,
        alpha=args.alpha,
        seed=args.seed,
        normalisation=args.normalisation,
        max_permutations=args.max_permutations,
        smooth_sigma=args.smooth_sigma,
    )
    outputs = open_explain(args.explain_dir)
    maps, idx = label_maps(outputs.image_maps, outputs.computed, outputs.targets, args.label)
    values = read_csv_column(args.csv, args.column, [outputs.image_ids[i] for i in idx])
    regions, names = read_region_mask(args.regions, shape=maps.shape[1:]) if args.regions else (None, None)
    with _run_control(args.quiet) as control:
        result = run_compare(
            maps,
            values,
            config,
            column=args.column,
            device=args.device,
            regions=regions,
            region_names=names,
            stored_normalisation=(outputs.provenance.get("config") or {}).get("normalisation"),
            out_dir=args.out,
            control=control,
        )
    s = result.summary()
    print(
        f"{args.label or 'overall'} maps, {s['groups'][0]} (n={s['n_images'][0]}) vs {s['groups'][1]} "
        f"(n={s['n_images'][1]}), {s['n_permutations']} permutations" + (" (CANCELLED)" if result.cancelled else "")
    )
    print(f"  compared: {s['normalisation']}: {s['meaning']}; {smoothing_text(s['smooth_sigma'])}")
    print(
        f"  significant pixels: {s['n_significant_fdr']} at FDR {args.alpha:g} "
        f"({s['n_significant_fdr_a_gt_b']} A>B, {s['n_significant_fdr_b_gt_a']} B>A), "
        f"{s['n_significant_fwe']} family-wise ({s['n_significant_fwe_a_gt_b']} A>B, "
        f"{s['n_significant_fwe_b_gt_a']} B>A)"
    )
    print(f"  total evidence: {total_text(s)}")
    print(f"  p-floor {floor_text(s)}")
    for row in (result.by_region or [])[:5]:
        if row["n_significant"]:
            print(f"  {row['region']:<24} {row['share_of_significant']:6.1%} of significant pixels")
    print(f"results in {Path(args.out).resolve()}")
    return _cancelled_exit("compare", result)
