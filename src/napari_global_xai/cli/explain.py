"""``global-xai explain``: image-wise saliency maps and label-wise/overall global maps (:mod:`..explain.pipeline`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ._common import (
    _cancelled_exit,
    _cluster_choice,
    _executor,
    _load_inputs,
    _one_line_warnings,
    _parse_params,
    _run_control,
)
from ._options import add_cluster_options, add_input_options, add_postprocess_options, command, positive


def add_parser(sub) -> None:
    p = command(sub, "explain", "image-wise saliency maps and label-wise/overall global maps")
    add_input_options(p)
    _add_explain_options(p)
    _add_store_options(p)
    add_cluster_options(p)
    p.set_defaults(func=run)


def _add_explain_options(p):
    from .. import config

    defaults = config.ExplainConfig()
    p.add_argument(
        "--method", default=defaults.method, help=f"saliency method (default {defaults.method}); see --list-methods"
    )
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="method parameter, repeatable")
    p.add_argument("--targets", nargs="+", default=None, help="labels to explain (default all model labels)")
    p.add_argument(
        "--subset",
        default=defaults.subset,
        choices=config.SUBSETS,
        help="images entering a label's global map (auto: positive if labels are known)",
    )
    p.add_argument(
        "--compute",
        default=defaults.compute,
        choices=config.COMPUTE,
        help="compute maps only for the subset's pairs (default) or for every image and label",
    )
    add_postprocess_options(p, defaults)
    p.add_argument("--probability", action="store_true", help="explain probabilities instead of logits")
    p.add_argument("--autocast", choices=config.AUTOCASTS, default=defaults.autocast, help="mixed precision on CUDA")
    p.add_argument(
        "--include-stalled-maps",
        action="store_true",
        help="average I-GOS/iGOS++ maps whose optimisation stalled (replaced by their recovery map) into "
        "the global maps too (default: counted and left out)",
    )


def _add_store_options(p):
    from .. import config
    from ..store.options import DEFAULT_FORMAT, DEFAULT_MAP_DTYPE, FORMATS, MAP_DTYPES

    chunk_default = config.ExplainConfig().chunk_size

    p.add_argument(
        "--format",
        dest="out_format",
        default=DEFAULT_FORMAT,
        choices=FORMATS,
        help=f"image-wise and global maps in a resumable, compressed Zarr store, image_maps.zarr (zarr), or in "
        f"float32 TIFFs for small stacks, image_maps.tif, global_maps.tif and global_std.tif (tiff) (default "
        f"{DEFAULT_FORMAT}); the same command again on the same --out resumes a zarr run",
    )
    p.add_argument(
        "--map-dtype",
        default=DEFAULT_MAP_DTYPE,
        choices=MAP_DTYPES,
        help=f"precision of the stored image-wise maps (default {DEFAULT_MAP_DTYPE}; global maps are "
        "always computed from float32 maps)",
    )
    p.add_argument(
        "--export-tiff",
        action="store_true",
        help="also write the global maps as global_maps.tif and global_std.tif (float32 TIFFs with the label names "
        "in their metadata) beside the store; --format tiff writes them anyway",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a results store of other settings in --out (otherwise refused)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive,
        default=None,
        metavar="N",
        help="images per chunk: the unit of writing, resuming and (with an executor) of distribution "
        f"(default {chunk_default})",
    )


def explain_config(args):
    """The parsed options as a validated :class:`~napari_global_xai.config.ExplainConfig`."""
    from ..config import ExplainConfig

    return ExplainConfig(
        method=args.method,
        params=_parse_params(args.param),
        targets=args.targets,
        subset=args.subset,
        normalisation=args.normalisation,
        reduction=args.reduction,
        probability=args.probability,
        compute=args.compute,
        autocast=args.autocast,
        include_stalled=args.include_stalled_maps,
        **({"chunk_size": args.chunk_size} if getattr(args, "chunk_size", None) else {}),
    )


def run(args) -> int:
    from ..explain.pipeline import run_explain

    where = _cluster_choice(args)  # a bad spec fails before the model loads
    stack, model = _load_inputs(args)
    t0 = time.perf_counter()
    with _run_control(args.quiet) as control, _one_line_warnings("explain"), _executor(where, args.device) as executor:
        result = run_explain(
            stack,
            model,
            explain_config(args),
            out_dir=args.out,
            control=control,
            out_format=args.out_format,
            map_dtype=args.map_dtype,
            overwrite=args.overwrite,
            executor=executor,
        )
    from ..explain.completeness import completeness_note, completeness_summary

    gm = result.global_maps
    n_zero, n_stalled = result.n_zero, result.n_stalled
    completeness = completeness_summary(result.completeness, result.computed, result.target_labels)
    stalled_fate = "kept in" if result.config.include_stalled else "left out"
    print(
        f"{result.config.method}: {result.n_computed} image-wise maps of {len(stack)} images in "
        f"{time.perf_counter() - t0:.1f}s on {model.device}; subset '{result.subset}'"
        + (" (CANCELLED)" if result.cancelled else "")
    )
    for name, count in zip(gm.labels, gm.count):
        notes = ([f"{n_zero[name]} all-zero maps left out"] if n_zero[name] else []) + (
            [f"{n_stalled[name]} stalled maps {stalled_fate}"] if n_stalled[name] else []
        )
        note = completeness_note(completeness["per_label"][name]) if completeness else ""
        notes += [note] if note else []
        print(f"  {name:<20} {count:>5} maps" + (f" ({'; '.join(notes)})" if notes else ""))
    if args.export_tiff and result.provenance.get("format") == "zarr":
        from ..explain.result import export_tiff

        written = export_tiff(args.out)
        print("global maps exported: " + ", ".join(p.name for p in written.values()))
    print(f"results in {Path(args.out).resolve()}")
    if result.provenance.get("result_meaningless"):
        print(f"global-xai explain: error: {result.provenance['result_meaningless']}", file=sys.stderr)
        return 1
    return _cancelled_exit(
        "explain",
        result,
        f"{result.n_computed} of {result.provenance['n_maps_selected']} maps",
        "; the same command resumes it" if result.provenance.get("format") == "zarr" else "",
    )
