"""The ``global-xai`` argument parser: every sub-command's options, their choices and defaults from
:mod:`napari_global_xai.config` (and the analyses pipelines' signatures).

It imports no torch (nor anything that does), so ``global-xai --help`` and each ``global-xai <command> --help``
answer at once; the handlers import the heavy modules when they run (checked by ``tests/test_headless.py``)."""

from __future__ import annotations

import argparse

from .analyses import _cmd_compare, _cmd_regions, _cmd_sanity
from .commands import (
    _cmd_card,
    _cmd_concepts,
    _cmd_demo,
    _cmd_explain,
    _cmd_make_sample_data,
    _cmd_peppr,
    _cmd_report,
    _cmd_sag,
    _cmd_train_demo,
)

DESCRIPTION = (
    "Global explanations (pixel-wise aggregated saliency maps) and PEPPR faithfulness checks for aligned image stacks."
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``global-xai explain: error: ...``), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


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


def _command(sub, name: str, summary: str) -> argparse.ArgumentParser:
    """A sub-command whose one-line summary is both its entry in ``global-xai --help`` and its own help's text."""
    return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")


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


def _add_postprocess_options(p, defaults) -> None:
    """``--reduction`` and ``--normalisation``: choices and defaults from :mod:`napari_global_xai.config`."""
    from .. import config

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
        help="where chunks of images run: 'embedded' (default, this process), 'local' or 'local:N' (a "
        "Dask LocalCluster of N worker processes here)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="join a running Dask scheduler (e.g. one started by dask-jobqueue on SLURM/PBS); workers "
        "must see the stack and model files under the same paths",
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


def _add_analyses_parsers(sub) -> None:
    """Sub-commands of :mod:`napari_global_xai.analyses`: sanity, compare, regions (defaults: their pipelines')."""
    from .. import config
    from ..analyses import pipelines

    sanity, compare, regions = (
        config.signature_defaults(f) for f in (pipelines.run_sanity, pipelines.run_compare, pipelines.run_regions)
    )

    p = _command(sub, "sanity", "model-parameter randomisation check of saliency methods")
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
    p.add_argument(
        "--seed",
        type=int,
        default=sanity["seed"],
        help=f"layer j (top down) is re-initialised with seed SEED + j (default {sanity['seed']})",
    )
    p.set_defaults(func=_cmd_sanity)

    p = _command(sub, "compare", "group difference map of image-wise maps with a permutation test")
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
    p.add_argument(
        "--n-permutations",
        type=int,
        default=compare["n_permutations"],
        help=f"random permutations of the group labels (default {compare['n_permutations']})",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=compare["alpha"],
        help=f"level of the FDR and FWE corrections (default {compare['alpha']:g})",
    )
    p.add_argument(
        "--seed", type=int, default=compare["seed"], help=f"seed of the permutations (default {compare['seed']})"
    )
    p.add_argument("--device", default="auto", help="where the permutation test runs: auto, cuda, mps or cpu")
    p.add_argument("--regions", default=None, help="region label TIFF (e.g. regions.tif of 'global-xai regions')")
    p.add_argument("--out", required=True, help="output folder (difference, p-value and significance maps)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compare)

    p = _command(sub, "regions", "optic disc, fovea, anatomical regions and each global map's region table")
    p.add_argument("explain_dir", help="output folder of 'global-xai explain'")
    p.add_argument("--stack", default=None, help="the explained stack (for the mean anatomy)")
    p.add_argument("--labels", default=None, help="labels CSV of the stack (laterality)")
    p.add_argument(
        "--resize", nargs=2, type=int, metavar=("H", "W"), help="resize the stack's images to H×W (as in explain)"
    )
    p.add_argument("--region-mask", default=None, help="your own region label TIFF (skips detection)")
    p.add_argument("--disc", nargs=2, type=float, metavar=("ROW", "COL"), help="optic disc, left-eye frame")
    p.add_argument("--fovea", nargs=2, type=float, metavar=("ROW", "COL"), help="fovea, left-eye frame")
    p.add_argument(
        "--landmarks",
        default=None,
        help="CSV with image id, disc_row, disc_col, fovea_row, fovea_col per image (stored frame)",
    )
    p.add_argument(
        "--n-boot",
        type=int,
        default=regions["n_boot"],
        help=f"bootstrap resamples of the images for the region table (default {regions['n_boot']})",
    )
    p.add_argument(
        "--seed", type=int, default=regions["seed"], help=f"seed of the bootstrap (default {regions['seed']})"
    )
    p.add_argument("--out", required=True, help="output folder (regions.tif, region_table.csv, bar charts)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_regions)


def build_parser() -> argparse.ArgumentParser:
    """The ``global-xai`` parser; every choice list and run default comes from :mod:`napari_global_xai.config`."""
    from .. import config, samples
    from ..models.card import ACTIVATIONS

    peppr_defaults, sag_defaults = config.PepprConfig(), config.SagConfig()
    parser = _Parser(prog="global-xai", description=DESCRIPTION)
    parser.add_argument("--list-methods", action="store_true", help="list saliency methods and exit")
    _add_debug(parser, default=False)
    sub = parser.add_subparsers(dest="command")

    p = _command(sub, "explain", "image-wise saliency maps and label-wise/overall global maps")
    _add_common(p)
    _add_explain_options(p)
    _add_store_options(p)
    _add_cluster_options(p)
    p.set_defaults(func=_cmd_explain)

    p = _command(sub, "peppr", "PEPPR faithfulness curves of global maps")
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
    _add_cluster_options(p)
    p.set_defaults(func=_cmd_peppr)

    p = _command(sub, "sag", "structured attention graphs (several sufficient explanations per image)")
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
    _add_cluster_options(p)
    p.set_defaults(func=_cmd_sag)

    p = _command(sub, "concepts", "XNN concepts: global concept maps, concept x label weights, top images")
    _add_common(p)
    p.add_argument("--k", type=int, default=8, help="number of concepts (default 8)")
    p.add_argument("--steps", type=int, default=800, help="training iterations (default 800)")
    p.add_argument("--seed", type=int, default=0, help="seed of the concept network's training (default 0)")
    p.add_argument("--layer", default=None, help="layer to embed (default: the card's cam_layer)")
    p.add_argument("--top", type=int, default=8, help="top images listed per concept (default 8)")
    p.set_defaults(func=_cmd_concepts)

    p = _command(sub, "demo", "the whole chain (explain → global maps → PEPPR) on the shipped sample data")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    method = config.ExplainConfig().method
    p.add_argument("--method", default=method, help=f"saliency method (default {method}); see --list-methods")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_debug(p)
    p.set_defaults(func=_cmd_demo)

    p = _command(sub, "report", "one self-contained HTML report (and a PDF of its figures) of a results folder")
    p.add_argument("results", help="a 'demo' output folder or a single explain / peppr / sag output folder")
    p.add_argument("--out", default="report.html", help="HTML file (default report.html); the PDF goes beside it")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF of the figures")
    p.set_defaults(func=_cmd_report)

    p = _command(sub, "train-demo", "train the demo model on generated planted-truth images")
    p.add_argument("--out", required=True, help="output folder (demo_net.pt and demo_net.card.json)")
    p.add_argument("--n-train", type=int, default=3000, help="generated training images (default 3000)")
    p.add_argument("--epochs", type=int, default=11, help="training epochs (default 11)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the training images and of torch (held-out images: SEED + 1)"
    )
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

    p = _command(sub, "card", "probe a model file and write its model card (then fill in what it lists)")
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
    p.add_argument(
        "--activation",
        default=ACTIVATIONS[0],
        choices=ACTIVATIONS,
        help=f"output activation: sigmoid = multi-label, softmax = multi-class (default {ACTIVATIONS[0]})",
    )
    p.add_argument(
        "--trust-pickle", action="store_true", help="allow loading a full pickled model (runs code from the file)"
    )
    p.set_defaults(func=_cmd_card)

    p = _command(sub, "make-sample-data", "write the planted-truth sample stack and ground truth")
    p.add_argument("--out", required=True, help="output folder (uwf_sample.tif, uwf_sample.csv, ground-truth masks)")
    p.add_argument(
        "--n", type=int, default=samples.SAMPLE_SIZE, help=f"number of images (default {samples.SAMPLE_SIZE})"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=samples.SAMPLE_SEED,
        help=f"generator seed (default {samples.SAMPLE_SEED}, the shipped sample)",
    )
    _add_debug(p)
    p.set_defaults(func=_cmd_make_sample_data)
    _add_analyses_parsers(sub)
    return parser
