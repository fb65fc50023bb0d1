"""``global-xai``: the command-line face of the pipelines in :mod:`napari_global_xai.run`.

Sub-commands: ``explain``, ``peppr``, ``sag``, ``demo`` (the whole chain on the shipped sample data), ``card`` (write
a model card for a model file), ``report``, ``concepts``, ``sanity``, ``compare``, ``regions``, ``train-demo`` and
``make-sample-data``. Argument parsing and the terminal progress bar live here; everything else is the core.

Exit codes: 0 done; 1 an input file, the model or the output folder cannot be used (or an unexpected error); 2 a
usage error (an option or parameter value); 130 cancelled (Ctrl-C; explain and sag write the partial result, marked
``"status": "CANCELLED"``). Every failure is one line on stderr, ``global-xai <command>: error: ...``; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

__all__ = ["main", "build_parser"]

DESCRIPTION = (
    "Global explanations (pixel-wise aggregated saliency maps) and PEPPR faithfulness checks for aligned image stacks."
)

#: Exit code of a cancelled run (128 + SIGINT, as shells report Ctrl-C).
EXIT_CANCELLED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``global-xai explain: error: ...``), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _TerminalProgress:
    """Adapts the core's ``progress(done, total, stage)`` callback to one tqdm bar per stage."""

    def __init__(self, disable: bool = False):
        self.bar = None
        self.stage = None
        self.disable = disable

    def __call__(self, done: int, total: int, stage: str) -> None:
        from tqdm.auto import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(
                total=total, desc=stage, unit="it", disable=self.disable, dynamic_ncols=True, mininterval=0.5
            )
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)  # tqdm throttles redraws (mininterval), so logs stay short

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def _interrupt_event():
    """A :class:`threading.Event` set by Ctrl-C: the pipeline stops at the next batch (it keeps and writes what it
    finished); a second Ctrl-C aborts at once."""
    import signal
    import threading

    event = threading.Event()

    def handler(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        print("\ncancelling after the current batch (Ctrl-C again to abort)…", file=sys.stderr)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread: no signal handling, never cancelled
        yield event
        return
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _run_control(quiet: bool):
    """The run contract for one command: a terminal bar per stage as ``progress``, Ctrl-C setting the cancel Event.

    Yields
    ------
    RunControl
        ``progress`` draws the bar (nothing with ``--quiet``); ``cancel`` is a :class:`threading.Event` that the
        first Ctrl-C sets (the pipeline stops after its current batch and returns what it finished).
    """
    from .control import RunControl

    with _progress(quiet) as bar, _interrupt_event() as event:
        yield RunControl(progress=bar, cancel=event)


@contextmanager
def _progress(quiet: bool):
    bar = _TerminalProgress(disable=quiet)
    try:
        yield bar
    finally:
        bar.close()


def _count(text: str) -> int:
    """argparse type: a non-negative integer."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


_count.__name__ = "non-negative integer"  # argparse names the type in its message


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_positive.__name__ = "positive integer"


def _parse_params(items) -> dict:
    """``["n_steps=16", "baseline=blur"]`` → ``{"n_steps": 16, "baseline": "blur"}``."""
    params = {}
    for item in items or []:
        if "=" not in item:
            from .errors import UsageError

            raise UsageError(f"--param expects NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def _note(text: str) -> None:
    """One informational line on stderr (e.g. which user code is imported)."""
    print(text, file=sys.stderr)


@contextmanager
def _one_line_warnings(command: str):
    """Saliency warnings (a method partly undefined on this model) as one line each on stderr."""
    import warnings

    from .explain.base import SaliencyWarning

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SaliencyWarning):
            print(f"global-xai {command}: warning: {message}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", SaliencyWarning)
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = previous


_PYTHON_FORMATWARNING = warnings.formatwarning


def _format_notice(message, category, filename, lineno, line=None):
    """Input notices print as one ``global-xai: note: ...`` line; other warnings as Python formats them."""
    from .data.labels import InputNotice

    if issubclass(category, InputNotice):
        return f"global-xai: note: {message}\n"
    return _PYTHON_FORMATWARNING(message, category, filename, lineno, line)


def _load_inputs(args):
    """The model first (its card says the labels, size, channels and bit depth), then the stack fitted to it."""
    from .data import read_stack
    from .data.conform import model_input_spec
    from .models import load_model

    warnings.formatwarning = _format_notice
    model = load_model(args.model, device=args.device, trust_pickle=args.trust_pickle, log=_note)
    spec = model_input_spec(model.card)
    if args.resize:
        spec["resize"] = tuple(args.resize)
    stack = read_stack(
        args.stack,
        labels=args.labels,
        label_names=model.labels,
        id_column=args.id_column,
        laterality_column=args.laterality_column,
        label_map=args.label_map,
        **spec,
    )
    return stack, model


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("stack", help="multi-page TIFF, folder of PNG/JPEG/TIFF/DICOM images, or DICOM file")
    p.add_argument("--model", default=None, help="model card (.json); default: the shipped demo model")
    p.add_argument(
        "--labels",
        default=None,
        help="labels CSV (default: found beside the stack); ',' ';' or tab "
        "delimited; the model's labels are found by column name, other columns kept as metadata",
    )
    p.add_argument(
        "--id-column",
        default=None,
        metavar="NAME",
        help="CSV column with the image ids / file names (default: image, image_id, filename, file, path, id or name)",
    )
    p.add_argument(
        "--laterality-column",
        default=None,
        metavar="NAME",
        help="CSV column with the eye: L/R, left/right, OS/OD (default: laterality, LR, eye or side)",
    )
    p.add_argument(
        "--label-map",
        action="append",
        default=None,
        metavar="CSV_NAME=MODEL_NAME",
        help="CSV column holding a model label under another name (repeatable)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu (default auto)")
    p.add_argument(
        "--resize",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="resize every image to H×W (default: the model card's input_size, with a note)",
    )
    p.add_argument(
        "--trust-pickle", action="store_true", help="allow loading a full pickled model (runs code from the file)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_debug(p)


def _add_debug(p, default=argparse.SUPPRESS):
    p.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the Python traceback of a failure instead of one line",
    )


def _explain_config(args):
    from .config import ExplainConfig

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


def _add_postprocess_options(p, defaults) -> None:
    """``--reduction`` and ``--normalisation``: choices and defaults from :mod:`napari_global_xai.config`."""
    from . import config

    p.add_argument(
        "--normalisation",
        default=defaults.normalisation,
        choices=config.NORMALISATIONS,
        help=f"per-image normalisation (default {defaults.normalisation})",
    )
    p.add_argument(
        "--reduction",
        default=defaults.reduction,
        choices=config.REDUCTIONS,
        help=f"channel reduction (default {defaults.reduction})",
    )


def _add_explain_options(p):
    from . import config

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
    _add_postprocess_options(p, defaults)
    p.add_argument("--probability", action="store_true", help="explain probabilities instead of logits")
    p.add_argument("--autocast", choices=config.AUTOCASTS, default=defaults.autocast, help="mixed precision on CUDA")
    p.add_argument(
        "--include-stalled-maps",
        action="store_true",
        help="average I-GOS/iGOS++ maps whose optimisation stalled (replaced by their recovery map) into "
        "the global maps too (default: counted and left out)",
    )


def _add_cluster_options(p):
    p.add_argument(
        "--cluster",
        default=None,
        metavar="SPEC",
        help="where chunks run: 'embedded' (default, this process), 'local' or 'local:N' (a Dask "
        "LocalCluster of N worker processes here)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="join a running Dask scheduler (e.g. one started by dask-jobqueue on SLURM/PBS); workers "
        "must see the stack and model files under the same paths",
    )


def _add_store_options(p):
    import dataclasses

    from .explain import ExplainConfig
    from .store.options import DEFAULT_FORMAT, DEFAULT_MAP_DTYPE, FORMATS, MAP_DTYPES

    chunk_default = {f.name: f.default for f in dataclasses.fields(ExplainConfig)}["chunk_size"]

    p.add_argument(
        "--format",
        dest="out_format",
        default=DEFAULT_FORMAT,
        choices=FORMATS,
        help=f"image-wise maps in a resumable, compressed Zarr store (zarr) or one float32 TIFF for small "
        f"stacks (tiff) (default {DEFAULT_FORMAT}); the same command again on the same --out resumes "
        "a zarr run",
    )
    p.add_argument(
        "--map-dtype",
        default=DEFAULT_MAP_DTYPE,
        choices=MAP_DTYPES,
        help=f"precision of the stored image-wise maps (default {DEFAULT_MAP_DTYPE}; global maps are "
        "always computed from float32 maps)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a results store of other settings in --out (otherwise refused)",
    )
    p.add_argument(
        "--chunk-size",
        type=_positive,
        default=None,
        metavar="N",
        help="images per chunk: the unit of writing, resuming and (with an executor) of distribution "
        f"(default {chunk_default})",
    )


def _cmd_explain(args) -> int:
    from .run import run_explain
    from .scale import connect, parse_cluster

    where = parse_cluster(args.cluster, args.scheduler)  # a bad spec fails before the model loads
    stack, model = _load_inputs(args)
    t0 = time.perf_counter()
    with _run_control(args.quiet) as control, _one_line_warnings("explain"), connect(where) as client:
        executor = None
        if client is not None:
            from .scale.executor import DaskExecutor

            executor = DaskExecutor(client, device=args.device)
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
    if result.cancelled:
        print(
            f"global-xai explain: cancelled: partial result ({result.n_computed} of "
            f"{result.provenance['n_maps_selected']} maps) written, marked CANCELLED"
            + ("; the same command resumes it" if result.provenance.get("format") == "zarr" else ""),
            file=sys.stderr,
        )
        return EXIT_CANCELLED
    return 0


def _cmd_peppr(args) -> int:
    from .peppr.pipeline import run_peppr_from_files

    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control:
        summary, result = run_peppr_from_files(
            stack,
            model,
            args.global_maps,
            out_dir=args.out,
            fill=args.fill,
            random_seeds=args.random_seeds,
            fractions=args.fractions,
            progress=control.report,
            cancel=control.cancel,
            return_result=True,
        )
    print(summary)
    if result.cancelled:
        print(
            f"global-xai peppr: cancelled: partial result ({result.n_images} of {result.n_requested} images) "
            "written, marked CANCELLED",
            file=sys.stderr,
        )
        return EXIT_CANCELLED
    return 0


def _cmd_sag(args) -> int:
    from .config import SagConfig
    from .run import run_sag_pipeline

    config = SagConfig(
        method=args.method,
        fill=args.fill,
        max_root_size=args.max_root_size or None,
        figure_formats=tuple(args.figure_formats),
    )
    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control:
        run = run_sag_pipeline(stack, model, args.label, config, indices=args.images, out_dir=args.out, control=control)
    n_done = len(run.results)
    done = f"cancelled after {n_done} of {run.n_requested} images" if run.cancelled else f"{n_done} images"
    print(f"SAG for {args.label}: {done}, {run.n_roots} roots shown; results in {Path(args.out).resolve()}")
    if run.cancelled:
        print(
            f"global-xai sag: cancelled: partial result ({n_done} of {run.n_requested} images) "
            "written, marked CANCELLED",
            file=sys.stderr,
        )
        return EXIT_CANCELLED
    return 0


def _cmd_concepts(args) -> int:
    from .concepts import ConceptConfig, run_concepts
    from .control import Cancelled

    config = ConceptConfig(k=args.k, steps=args.steps, seed=args.seed, layer=args.layer, top_n=args.top)
    stack, model = _load_inputs(args)
    with _run_control(args.quiet) as control:
        try:
            result = run_concepts(stack, model, config, out_dir=args.out, control=control)
        except Cancelled as exc:
            print(f"global-xai concepts: {exc}; nothing written", file=sys.stderr)
            return 1
    faith = result.faithfulness()
    lines = [f"{n}: AUROC model {v['model']:.3f}, concepts {v['concepts']:.3f}" for n, v in faith.items()]
    state = " (cancelled: partial results)" if result.cancelled else ""
    print("\n".join(lines + [f"{config.k} concepts{state}; results in {Path(args.out).resolve()}"]))
    return 0


def _demo_text(result) -> str:
    """The terminal summary of a :class:`~napari_global_xai.run.DemoResult`."""
    explained, out = result.explain, result.out_dir
    head = (
        f"demo on {result.n_images} sample images with {result.model_name} on {result.device}: "
        f"{explained.n_computed} {result.method} maps"
    )
    if result.peppr is None:
        return head + f" (CANCELLED: no PEPPR, no report), {result.seconds:.0f}s\nresults in {out.resolve()}"
    from .peppr.report import summary_text

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
    from .run import run_demo

    with _run_control(args.quiet) as control:
        result = run_demo(args.out, method=args.method, device=args.device, control=control)
    print(_demo_text(result))
    if result.cancelled:
        print("global-xai demo: cancelled: partial result written, marked CANCELLED", file=sys.stderr)
        return EXIT_CANCELLED
    return 0


def _cmd_report(args) -> int:
    from .report import write_report

    paths = write_report(args.results, args.out, pdf=not args.no_pdf)
    sizes = ", ".join(f"{p} ({p.stat().st_size / 1e6:.1f} MB)" for p in paths.values())
    print(f"wrote {sizes}")
    return 0


def _cmd_train_demo(args) -> int:
    from .models.train_demo import train_demo_model

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

    from .models.probe import make_card

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
    from .samples import write_sample_data

    out = write_sample_data(args.out, n=args.n, seed=args.seed)
    print(f"wrote sample data to {out}")
    return 0


def _method_configs(args):
    """``--method ig --param ig.n_steps=4`` → one ExplainConfig per method (parameters prefixed by the method)."""
    from .config import ExplainConfig

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
    from .analyses.pipelines import run_sanity

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
    from .analyses.pipelines import label_maps, read_explain_outputs

    outputs = read_explain_outputs(args.explain_dir)
    maps, idx = label_maps(outputs.image_maps, outputs.computed, outputs.targets, label)
    return outputs, maps, idx


def _cmd_compare(args) -> int:
    from .analyses.pipelines import read_csv_column, run_compare
    from .analyses.regions import read_region_mask

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
    from .analyses.pipelines import (
        label_maps,
        read_explain_outputs,
        read_landmarks_csv,
        run_regions,
    )
    from .analyses.regions import read_region_mask

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
        from .data import read_stack

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


def _cancelled_exit(command: str, result) -> int:
    """0, or after a cancel one stderr line and :data:`EXIT_CANCELLED` (the partial result is written)."""
    if not result.cancelled:
        return 0
    print(f"global-xai {command}: cancelled: partial result written, marked cancelled", file=sys.stderr)
    return EXIT_CANCELLED


def _add_analyses_parsers(sub) -> None:
    """Sub-commands of :mod:`napari_global_xai.analyses`: sanity, compare, regions (defaults: their pipelines')."""
    from . import config
    from .analyses import pipelines

    sanity, compare, regions = (
        config.signature_defaults(f) for f in (pipelines.run_sanity, pipelines.run_compare, pipelines.run_regions)
    )

    p = sub.add_parser("sanity", help="model-parameter randomisation check of saliency methods")
    _add_common(p)
    p.add_argument(
        "--method",
        nargs="+",
        default=list(config.SANITY_METHODS),
        help=f"methods to check (default {' '.join(config.SANITY_METHODS)})",
    )
    p.add_argument(
        "--param", action="append", metavar="METHOD.NAME=VALUE", help="method parameter, e.g. ig.n_steps=8 (repeatable)"
    )
    _add_postprocess_options(p, config.ExplainConfig())
    p.add_argument("--images", nargs="+", type=int, default=None, help="image indices (default evenly spaced)")
    p.add_argument(
        "--n-images",
        type=int,
        default=sanity["n_images"],
        help=f"sample size when --images is not given (default {sanity['n_images']})",
    )
    p.add_argument("--label", default=None, help="label explained (default each image's most probable label)")
    p.add_argument(
        "--depth",
        type=int,
        default=None,
        help="group parameterised modules by the first DEPTH name parts (default: every module alone)",
    )
    p.add_argument("--independent", action="store_true", help="also randomise each layer alone")
    p.add_argument("--seed", type=int, default=sanity["seed"])
    p.set_defaults(func=_cmd_sanity)

    p = sub.add_parser("compare", help="group difference map of image-wise maps with a permutation test")
    p.add_argument("explain_dir", help="output folder of 'global-xai explain' (image_maps.tif, predictions.csv)")
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
        default=None,
        help="values forming group A and group B (B may be 'rest')",
    )
    p.add_argument("--threshold", type=float, default=None, help="numeric split: A = value > T (default median)")
    p.add_argument("--label", default=None, help="label whose maps are compared (default: each image's mean)")
    p.add_argument("--n-permutations", type=int, default=compare["n_permutations"])
    p.add_argument("--alpha", type=float, default=compare["alpha"])
    p.add_argument("--seed", type=int, default=compare["seed"])
    p.add_argument("--device", default="auto")
    p.add_argument("--regions", default=None, help="region label TIFF (e.g. regions.tif of 'global-xai regions')")
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("regions", help="optic disc, fovea, anatomical regions and each global map's region table")
    p.add_argument("explain_dir", help="output folder of 'global-xai explain'")
    p.add_argument("--stack", default=None, help="the explained stack (for the mean anatomy)")
    p.add_argument("--labels", default=None, help="labels CSV of the stack (laterality)")
    p.add_argument("--resize", nargs=2, type=int, metavar=("H", "W"))
    p.add_argument("--region-mask", default=None, help="your own region label TIFF (skips detection)")
    p.add_argument("--disc", nargs=2, type=float, metavar=("ROW", "COL"), help="optic disc, left-eye frame")
    p.add_argument("--fovea", nargs=2, type=float, metavar=("ROW", "COL"), help="fovea, left-eye frame")
    p.add_argument(
        "--landmarks",
        default=None,
        help="CSV with image id, disc_row, disc_col, fovea_row, fovea_col per image (stored frame)",
    )
    p.add_argument("--n-boot", type=int, default=regions["n_boot"])
    p.add_argument("--seed", type=int, default=regions["seed"])
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_regions)


def build_parser() -> argparse.ArgumentParser:
    """The ``global-xai`` parser; every choice list and run default comes from :mod:`napari_global_xai.config`."""
    from . import config, samples
    from .models.card import ACTIVATIONS

    peppr_defaults, sag_defaults = config.PepprConfig(), config.SagConfig()
    parser = _Parser(prog="global-xai", description=DESCRIPTION)
    parser.add_argument("--list-methods", action="store_true", help="list saliency methods and exit")
    _add_debug(parser, default=False)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("explain", help="image-wise saliency maps and label-wise/overall global maps")
    _add_common(p)
    _add_explain_options(p)
    _add_store_options(p)
    _add_cluster_options(p)
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("peppr", help="PEPPR faithfulness curves of global maps")
    _add_common(p)
    p.add_argument("--global-maps", required=True, help="global_maps.tif written by 'explain'")
    p.add_argument(
        "--fill",
        default=peppr_defaults.fill,
        choices=config.FILLS,
        help=f"value of erased pixels (default {peppr_defaults.fill})",
    )
    p.add_argument(
        "--random-seeds",
        type=_count,
        default=peppr_defaults.random_seeds,
        help=f"random-order baselines (default {peppr_defaults.random_seeds})",
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
    p.set_defaults(func=_cmd_peppr)

    p = sub.add_parser("sag", help="structured attention graphs (several sufficient explanations per image)")
    _add_common(p)
    p.add_argument("--label", required=True, help="model label to explain")
    p.add_argument(
        "--images", nargs="+", type=int, default=None, help="image indices (default: images positive for the label)"
    )
    p.add_argument(
        "--method",
        default=sag_defaults.method,
        help=f"saliency that ranks patches (default "
        f"{sag_defaults.method}, as the official code; gradcam is ~3x faster)",
    )
    p.add_argument(
        "--fill",
        default=sag_defaults.fill,
        choices=config.FILLS,
        help=f"value of hidden patches (default {sag_defaults.fill})",
    )
    p.add_argument(
        "--max-root-size",
        type=int,
        default=sag_defaults.max_root_size,
        help=f"largest root in patches (0 = no limit; default {sag_defaults.max_root_size})",
    )
    p.add_argument(
        "--figure-formats",
        nargs="+",
        default=list(sag_defaults.figure_formats),
        choices=config.FIGURE_FORMATS,
        help=f"formats of each image's graph figure (default {' '.join(sag_defaults.figure_formats)})",
    )
    p.set_defaults(func=_cmd_sag)

    p = sub.add_parser("concepts", help="XNN concepts: global concept maps, concept x label weights, top images")
    _add_common(p)
    p.add_argument("--k", type=int, default=8, help="number of concepts (default 8)")
    p.add_argument("--steps", type=int, default=800, help="training iterations (default 800)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layer", default=None, help="layer to embed (default: the card's cam_layer)")
    p.add_argument("--top", type=int, default=8, help="top images listed per concept (default 8)")
    p.set_defaults(func=_cmd_concepts)

    p = sub.add_parser("demo", help="the whole chain (explain → global maps → PEPPR) on the shipped sample data")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--method", default=config.ExplainConfig().method)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    _add_debug(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("report", help="one self-contained HTML report (and a PDF of its figures) of a results folder")
    p.add_argument("results", help="a 'demo' output folder or a single explain / peppr / sag output folder")
    p.add_argument("--out", default="report.html", help="HTML file (default report.html); the PDF goes beside it")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF of the figures")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("train-demo", help="train the demo model on generated planted-truth images")
    p.add_argument("--out", required=True)
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=11)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-lr", type=float, default=3e-3, help="one-cycle peak learning rate")
    p.add_argument(
        "--unseen-share",
        type=float,
        default=None,
        help="share of peripheral_lesion training positives without a visible lesion (default 0.25)",
    )
    p.add_argument("--init", default=None, help="model card whose weights start the training (fine-tuning)")
    _add_debug(p)
    p.set_defaults(func=_cmd_train_demo)

    p = sub.add_parser("card", help="probe a model file and write its model card (then fill in what it lists)")
    p.add_argument("model_file", help="TorchScript, torch.export .pt2, state dict .pt/.pth or .safetensors file")
    p.add_argument("--out", required=True, help="card to write (.json)")
    p.add_argument("--labels", default=None, help="labels CSV: its 0/1 columns name the outputs, in file order")
    p.add_argument(
        "--architecture",
        default=None,
        help="for a state dict: 'file.py:ClassName', 'package.module:factory', 'timm:name' or a registered name",
    )
    p.add_argument(
        "--architecture-kwargs",
        default=None,
        metavar="JSON",
        help='keyword arguments of the architecture, e.g. \'{"in_chans": 2, "num_classes": 8}\'',
    )
    p.add_argument("--channels", type=int, default=None, help="input channels (default: probed)")
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=None, help="input size (default: probed)")
    p.add_argument("--activation", default=ACTIVATIONS[0], choices=ACTIVATIONS)
    p.add_argument(
        "--trust-pickle", action="store_true", help="allow loading a full pickled model (runs code from the file)"
    )
    p.set_defaults(func=_cmd_card)

    p = sub.add_parser("make-sample-data", help="write the planted-truth sample stack and ground truth")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=samples.SAMPLE_SIZE)
    p.add_argument("--seed", type=int, default=samples.SAMPLE_SEED)
    _add_debug(p)
    p.set_defaults(func=_cmd_make_sample_data)
    _add_analyses_parsers(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _failure(command: str, exc: BaseException) -> tuple[int, str] | None:
    """Exit code and the one stderr line for a failure; None for exceptions that are not failures (SystemExit)."""
    from .control import Cancelled
    from .errors import UsageError

    prefix = f"global-xai {command}: "
    if isinstance(exc, Cancelled):
        return EXIT_CANCELLED, prefix + "cancelled before any result was complete; nothing written"
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_CANCELLED, prefix + "interrupted (Ctrl-C twice): stopped at once, no partial files left"
    if isinstance(exc, UsageError):
        return 2, prefix + f"error: {_one_line(exc)}"
    if isinstance(exc, (ValueError, OSError)):  # StackError, LabelsError, ModelLoadError, InputError, disk errors
        return 1, prefix + f"error: {_one_line(exc)}"
    if isinstance(exc, Exception):
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        return 1, prefix + (
            f"error: unexpected {type(exc).__name__}: {first.strip()} (run with --debug for the traceback)"
        )
    return None


def _first_missing(folder: Path | None) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (None if it exists)."""
    if folder is None or folder.exists():
        return None
    folder = folder.absolute()
    while not folder.parent.exists():
        folder = folder.parent
    return folder


def _remove_created_empty(folder: Path | None, first_created: Path | None) -> None:
    """A failed run leaves no empty folders that it created itself (from ``folder`` up to ``first_created``)."""
    if folder is None or first_created is None:
        return
    current = folder.absolute()
    while True:
        try:
            current.rmdir()  # only succeeds when empty
        except OSError:
            return
        if current == first_created:
            return
        current = current.parent


def main(argv=None) -> int:
    """Run the CLI; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error already printed on one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    if args.list_methods:
        from .explain import METHODS, method_names

        for name in method_names():
            print(f"{name:<18} {METHODS[name].description}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    out = Path(args.out) if getattr(args, "out", None) else None
    first_created = _first_missing(out)
    try:
        return args.func(args)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
        failure = _failure(args.command, exc)
        if failure is None or (args.debug and not isinstance(exc, KeyboardInterrupt)):
            raise
        code, line = failure
        print(line, file=sys.stderr)
        _remove_created_empty(out, first_created)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
