"""What the ``global-xai`` sub-commands' argument parsers share: the one-line-error parser, the argparse types, and
the option groups of several commands (input stack and model, ``--debug``, post-processing, cluster).

Torch-free, as every command module's top level, so ``global-xai --help`` and ``global-xai <command> --help`` answer
at once (checked by ``tests/test_headless.py``); choices and defaults come from :mod:`napari_global_xai.config`."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``global-xai explain: error: ...``), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def count(text: str) -> int:
    """argparse type: a non-negative integer."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


count.__name__ = "non-negative integer"  # argparse names the type in its message


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive.__name__ = "positive integer"


def command(sub, name: str, summary: str) -> argparse.ArgumentParser:
    """A sub-command whose one-line summary is both its entry in ``global-xai --help`` and its own help's text."""
    return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")


def add_input_options(p: argparse.ArgumentParser) -> None:
    """The stack, the model and how they are read (``_common._load_inputs``), ``--out``, ``--quiet``, ``--debug``."""
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
    add_device_option(p, "where the model runs")
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
    add_debug(p)


def add_device_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--device``: the names and the default of :mod:`napari_global_xai.config` (resolved by
    :func:`napari_global_xai.models.device.resolve_device`, which also takes an index such as ``cuda:1``)."""
    from .. import config

    p.add_argument(
        "--device",
        default=config.DEFAULT_DEVICE,
        help=f"{what}: {', '.join(config.DEVICES)} (default {config.DEFAULT_DEVICE}: CUDA, then MPS, then the CPU)",
    )


def add_debug(p, default=argparse.SUPPRESS):
    p.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the Python traceback of a failure instead of one line",
    )


def add_postprocess_options(p, defaults) -> None:
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


def add_cluster_options(p):
    """``--cluster`` and ``--scheduler`` (read by ``_common._cluster_choice``)."""
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
