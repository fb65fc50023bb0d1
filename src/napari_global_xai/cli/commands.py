"""Handlers of the core ``global-xai`` sub-commands (explain, peppr, sag, concepts, demo, report, train-demo, card,
make-sample-data): each turns the parsed options into a pipeline call and prints its result as text."""

from __future__ import annotations

import time
from pathlib import Path

from ._common import (
    _cancelled_exit,
    _cluster_choice,
    _executor,
    _load_inputs,
    _note,
    _one_line_warnings,
    _parse_params,
    _run_control,
)


def _explain_config(args):
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


def _cmd_explain(args) -> int:
    from ..explain.pipeline import run_explain

    where = _cluster_choice(args)  # a bad spec fails before the model loads
    stack, model = _load_inputs(args)
    t0 = time.perf_counter()
    with _run_control(args.quiet) as control, _one_line_warnings("explain"), _executor(where, args.device) as executor:
        result = run_explain(
            stack,
            model,
            _explain_config(args),
            out_dir=args.out,
            control=control,
            out_format=args.out_format,
            map_dtype=args.map_dtype,
            overwrite=args.overwrite,
            executor=executor,
        )
    gm = result.global_maps
    n_zero, n_stalled = result.n_zero, result.n_stalled
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
        print(f"  {name:<20} {count:>5} maps" + (f" ({'; '.join(notes)})" if notes else ""))
    print(f"results in {Path(args.out).resolve()}")
    return _cancelled_exit(
        "explain",
        result,
        f"{result.n_computed} of {result.provenance['n_maps_selected']} maps",
        "; the same command resumes it" if result.provenance.get("format") == "zarr" else "",
    )


def _cmd_peppr(args) -> int:
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


def _cmd_sag(args) -> int:
    from ..config import SagConfig
    from ..sag.pipeline import run_sag_pipeline

    config = SagConfig(
        method=args.method,
        fill=args.fill,
        max_root_size=args.max_root_size or None,
        figure_formats=tuple(args.figure_formats),
    )
    where = _cluster_choice(args)
    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control, _executor(where, args.device) as executor:
        run = run_sag_pipeline(
            stack, model, args.label, config, indices=args.images, out_dir=args.out, control=control, executor=executor
        )
    n_done = len(run.results)
    done = f"cancelled after {n_done} of {run.n_requested} images" if run.cancelled else f"{n_done} images"
    print(f"SAG for {args.label}: {done}, {run.n_roots} roots shown; results in {Path(args.out).resolve()}")
    return _cancelled_exit("sag", run, f"{n_done} of {run.n_requested} images")


def _cmd_concepts(args) -> int:
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


def _demo_text(result) -> str:
    """The terminal summary of a :class:`~napari_global_xai.demo.DemoResult`."""
    explained, out = result.explain, result.out_dir
    head = (
        f"demo on {result.n_images} sample images with {result.model_name} on {result.device}: "
        f"{explained.n_computed} {result.method} maps"
    )
    if result.peppr is None:
        return head + f" (CANCELLED: no PEPPR, no report), {result.seconds:.0f}s\nresults in {out.resolve()}"
    from ..peppr.report import summary_text

    peppr = result.peppr
    return "\n".join(
        [
            head + f", PEPPR {peppr.n_forwards} forwards ({peppr.n_skipped} skipped), {result.seconds:.0f}s",
            summary_text(peppr),
            f"figures: {out / f'explain_{result.method}' / 'global_maps.png'} and "
            f"{out / f'peppr_{result.method}' / 'peppr.png'}",
            f"report: {result.report.get('html', '')} (one self-contained file) and {result.report.get('pdf', '')}",
        ]
    )


def _cmd_demo(args) -> int:
    from ..demo import run_demo

    with _run_control(args.quiet) as control:
        result = run_demo(args.out, method=args.method, device=args.device, control=control)
    print(_demo_text(result))
    return _cancelled_exit("demo", result)


def _cmd_report(args) -> int:
    from ..report import write_report

    paths = write_report(args.results, args.out, pdf=not args.no_pdf)
    sizes = ", ".join(f"{p} ({p.stat().st_size / 1e6:.1f} MB)" for p in paths.values())
    print(f"wrote {sizes}")
    return 0


def _cmd_train_demo(args) -> int:
    from ..models.train_demo import train_demo_model

    card = train_demo_model(
        args.out,
        n_train=args.n_train,
        epochs=args.epochs,
        seed=args.seed,
        max_lr=args.max_lr,
        unseen_share=args.unseen_share,
        init=args.init,
    )
    print(f"wrote {Path(args.out) / 'demo_net.card.json'}: held-out AUROC {card.metrics['heldout_auroc']}")
    return 0


def _cmd_card(args) -> int:
    import json

    from ..models.probe import make_card

    kwargs = json.loads(args.architecture_kwargs) if args.architecture_kwargs else None
    card, todo = make_card(
        args.model_file,
        args.out,
        labels_csv=args.labels,
        architecture=args.architecture,
        architecture_kwargs=kwargs,
        channels=args.channels,
        size=tuple(args.size) if args.size else None,
        activation=args.activation,
        trust_pickle=args.trust_pickle,
        log=_note,
    )
    print(
        f"wrote {Path(args.out).resolve()}: {card.format} model, {len(card.input_channels)} input channel(s), "
        f"{len(card.labels)} outputs, cam_layer {card.cam_layer!r}"
    )
    print("still to check or fill in:")
    for line in todo:
        print(f"  - {line}")
    return 0


def _cmd_make_sample_data(args) -> int:
    from ..samples import write_sample_data

    out = write_sample_data(args.out, n=args.n, seed=args.seed)
    print(f"wrote sample data to {out}")
    return 0
