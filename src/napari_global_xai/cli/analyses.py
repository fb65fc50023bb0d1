"""Handlers of the analyses sub-commands (sanity, compare, regions; see :mod:`napari_global_xai.analyses`) and the
text they print."""

from __future__ import annotations

from pathlib import Path

from ._common import _cancelled_exit, _load_inputs, _parse_params, _run_control


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


def _cmd_sanity(args) -> int:
    from ..analyses.pipelines import run_sanity

    configs = _method_configs(args)
    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control:
        result = run_sanity(
            stack,
            model,
            configs,
            indices=args.images,
            n_images=args.n_images,
            label=args.label,
            depth=args.depth,
            independent=args.independent,
            seed=args.seed,
            out_dir=args.out,
            control=control,
        )
    print(
        f"sanity check on {len(result.image_indices)} images, {len(result.layers)} layers randomised top down"
        + (" (CANCELLED)" if result.cancelled else "")
    )
    for line in result.verdicts.values():
        print(f"  {line}")
    print(f"results in {Path(args.out).resolve()}")
    return _cancelled_exit("sanity", result)


def _explain_maps(args, label):
    from ..analyses.pipelines import label_maps, read_explain_outputs

    outputs = read_explain_outputs(args.explain_dir)
    maps, idx = label_maps(outputs.image_maps, outputs.computed, outputs.targets, label)
    return outputs, maps, idx


def _cmd_compare(args) -> int:
    from ..analyses.pipelines import read_csv_column, run_compare
    from ..analyses.regions import read_region_mask

    outputs, maps, idx = _explain_maps(args, args.label)
    values = read_csv_column(args.csv, args.column, [outputs.image_ids[i] for i in idx])
    regions, names = read_region_mask(args.regions, shape=maps.shape[1:]) if args.regions else (None, None)
    with _run_control(args.quiet) as control:
        result = run_compare(
            maps,
            values,
            column=args.column,
            groups=args.groups,
            threshold=args.threshold,
            n_permutations=args.n_permutations,
            alpha=args.alpha,
            seed=args.seed,
            device=args.device,
            regions=regions,
            region_names=names,
            out_dir=args.out,
            control=control,
        )
    s = result.summary()
    print(
        f"{args.label or 'overall'} maps, {s['groups'][0]} (n={s['n_images'][0]}) vs {s['groups'][1]} "
        f"(n={s['n_images'][1]}), {s['n_permutations']} permutations" + (" (CANCELLED)" if result.cancelled else "")
    )
    print(
        f"  significant pixels: {s['n_significant_fdr']} at FDR {args.alpha:g} "
        f"({s['n_significant_fdr_a_gt_b']} A>B, {s['n_significant_fdr_b_gt_a']} B>A), "
        f"{s['n_significant_fwe']} family-wise"
    )
    for row in (result.by_region or [])[:5]:
        if row["n_significant"]:
            print(f"  {row['region']:<24} {row['share_of_significant']:6.1%} of significant pixels")
    print(f"results in {Path(args.out).resolve()}")
    return _cancelled_exit("compare", result)


def _cmd_regions(args) -> int:
    from ..analyses.pipelines import (
        label_maps,
        read_explain_outputs,
        read_landmarks_csv,
        run_regions,
    )
    from ..analyses.regions import read_region_mask

    outputs = read_explain_outputs(args.explain_dir)
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
            anatomy=anatomy,
            regions=regions,
            region_names=names,
            disc=disc,
            fovea=fovea,
            n_boot=args.n_boot,
            seed=args.seed,
            out_dir=args.out,
            control=control,
        )
    landmarks = result.landmarks
    if landmarks is not None:
        print(
            f"optic disc at (row, col) {tuple(round(v) for v in landmarks.disc)}, fovea at "
            f"{tuple(round(v) for v in landmarks.fovea)} ({landmarks.source})"
        )
    for t in result.tables:
        best = t.row(t.best())
        print(
            f"  {t.label:<20} most enriched: {best['region']} ×{best['enrichment']:.1f} "
            f"[{best['enrichment_lo']:.1f}, {best['enrichment_hi']:.1f}], {best['mass_share']:.0%} of the mass "
            f"on {best['area_share']:.0%} of the area"
        )
    print(f"results in {Path(args.out).resolve()}")
    return _cancelled_exit("regions", result)
