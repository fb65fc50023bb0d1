"""``global-xai regions``: optic disc, fovea, anatomical regions and each global map's region table
(:mod:`..analyses.regions_pipeline`)."""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import _cancelled_exit, _run_control
from ._options import command, count


def add_parser(sub) -> None:
    from ..analysis_config import RegionsConfig

    defaults = RegionsConfig()
    p = command(sub, "regions", "optic disc, fovea, anatomical regions and each global map's region table")
    p.add_argument("explain_dir", help="output folder of 'global-xai explain'")
    p.add_argument("--stack", default=None, help="the explained stack (for the mean anatomy)")
    p.add_argument("--labels", default=None, help="labels CSV of the stack (laterality)")
    p.add_argument(
        "--resize", nargs=2, type=int, metavar=("H", "W"), help="resize the stack's images to H×W (as in explain)"
    )
    p.add_argument("--region-mask", default=None, help="your own region label TIFF (skips detection)")
    p.add_argument(
        "--disc",
        nargs=2,
        type=float,
        metavar=("ROW", "COL"),
        help="optic disc, left-eye frame (skips its detection; give it when the one found is refused as implausible)",
    )
    p.add_argument(
        "--fovea", nargs=2, type=float, metavar=("ROW", "COL"), help="fovea, left-eye frame (skips its detection)"
    )
    p.add_argument(
        "--landmarks",
        default=None,
        help="CSV with image id, disc_row, disc_col, fovea_row, fovea_col per image (stored frame)",
    )
    p.add_argument(
        "--n-boot",
        type=count,
        default=defaults.n_boot,
        help=f"bootstrap resamples of the images for the region table (default {defaults.n_boot})",
    )
    p.add_argument("--seed", type=count, default=defaults.seed, help=f"seed of the bootstrap (default {defaults.seed})")
    p.add_argument("--out", required=True, help="output folder (regions.tif, region_table.csv, bar charts)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analyses.explain_inputs import label_maps, read_landmarks_csv
    from ..analyses.regions import read_region_mask
    from ..analyses.regions_pipeline import run_regions
    from ..analysis_config import RegionsConfig
    from ..explain.result import open_explain

    config = RegionsConfig(n_boot=args.n_boot, seed=args.seed)
    outputs = open_explain(args.explain_dir)
    maps = {}
    for label in outputs.targets:
        try:
            maps[label] = label_maps(outputs.image_maps, outputs.computed, outputs.targets, label, use=outputs.include)[
                0
            ]
        except ValueError:  # no map for this label: no row
            continue
    if not maps:
        raise ValueError(f"{args.explain_dir}: no image-wise map in the explain run's subsets")
    shape = next(iter(maps.values())).shape[1:]
    anatomy = regions = names = None
    disc, fovea = args.disc, args.fovea
    if args.region_mask:
        regions, names = read_region_mask(args.region_mask, shape=shape)
    else:
        if not args.stack:
            raise ValueError("give the stack (for the mean anatomy) or --region-mask")
        from ..data import read_stack

        stack = read_stack(args.stack, labels=args.labels, resize=tuple(args.resize) if args.resize else None)
        if stack.image_ids != outputs.image_ids:
            raise ValueError(
                f"the stack's images do not match the explain run's ({len(stack)} vs "
                f"{len(outputs.image_ids)} images, or other ids)"
            )
        frame_stack = stack.in_frame(outputs.frame)  # the frame the explain run recorded for its maps
        anatomy = frame_stack.mean_image()
        if args.landmarks:
            disc, fovea = read_landmarks_csv(
                args.landmarks,
                stack.image_ids,
                frame_stack.laterality if outputs.frame == "left" else ["L"] * len(stack),
                shape[1],
            )
    with _run_control(args.quiet) as control:
        result = run_regions(
            maps,
            config,
            anatomy=anatomy,
            regions=regions,
            region_names=names,
            disc=disc,
            fovea=fovea,
            out_dir=args.out,
            control=control,
        )
    landmarks = result.landmarks
    if landmarks is not None:
        print(
            f"optic disc at (row, col) {tuple(round(v) for v in landmarks.disc)}, fovea at "
            f"{tuple(round(v) for v in landmarks.fovea)} ({landmarks.source})"
        )
        for problem in landmarks.problems:  # given by hand: used as given, but said
            print(f"global-xai regions: warning: not plausible: {problem}", file=sys.stderr)
    where = "of the field of view" if result.fov_source != "none" else "of the image (no field of view known)"
    print(f"shares are of the map's mass and the area {where}; enrichment 1 = a uniform map there")
    for t in result.tables:
        best = t.row(t.best())
        outside = f"; {1 - t.mass_in_fov:.0%} of the mass outside it" if t.mass_in_fov == t.mass_in_fov else ""
        print(
            f"  {t.label:<20} most enriched: {best['region']} ×{best['enrichment']:.1f} "
            f"[{best['enrichment_lo']:.1f}, {best['enrichment_hi']:.1f}], {best['mass_share']:.0%} of the mass "
            f"on {best['area_share']:.0%} of the area{outside}"
        )
    print(f"results in {Path(args.out).resolve()}")
    return _cancelled_exit("regions", result)
