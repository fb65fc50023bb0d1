"""``global-xai``: the command-line face of the jobs' pipelines (``<job>.pipeline``).

Sub-commands: ``explain``, ``peppr``, ``sag``, ``demo`` (the whole chain on the shipped sample data), ``card`` (write
a model card for a model file), ``report``, ``concepts``, ``sanity``, ``compare``, ``regions``, ``cohort``,
``train-demo`` and ``make-sample-data``. Argument parsing, the terminal progress bar and text rendering live in this
package; everything else is the core. One module per command (``explain``, ``peppr``, ``sag``, ``concepts``,
``demo``, ``report``, ``models``: train-demo and card, ``samples``: make-sample-data, ``sanity``, ``compare``,
``regions``, ``cohort``), each with its argparse fragment (``add_parser``) beside its handler (``run``) and the text
it prints; their top levels import no torch, so ``--help`` is fast (the handlers import the torch-backed core when
they run). Shared: ``_options`` (the parser class and the option groups of several commands), ``_common`` (run
control, one-line warnings, input loading, failures as exit codes); ``build_parser`` and ``main`` are here.

Exit codes: 0 done; 1 an input file, the model or the output folder cannot be used (or an unexpected error); 2 a
usage error (an option or parameter value); 130 cancelled (Ctrl-C; explain, peppr and sag write the partial result
over the images finished, marked ``"status": "CANCELLED"``; explain's same command then resumes). Every failure is
one line on stderr, ``global-xai <command>: error: ...``; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import cohort, compare, concepts, demo, explain, models, peppr, regions, report, sag, samples, sanity
from ._common import _failure, _first_missing, _remove_created_empty
from ._options import Parser, add_debug

__all__ = ["main", "build_parser"]

DESCRIPTION = (
    "Global explanations (pixel-wise aggregated saliency maps) and PEPPR faithfulness checks for aligned image stacks."
)

#: The command modules, in the order of ``global-xai --help``; each adds its sub-command(s) with ``add_parser``.
COMMANDS = (explain, peppr, sag, concepts, demo, report, models, samples, sanity, compare, regions, cohort)


def build_parser() -> Parser:
    """The ``global-xai`` parser; every choice list and run default comes from :mod:`napari_global_xai.config`."""
    parser = Parser(prog="global-xai", description=DESCRIPTION)
    parser.add_argument("--list-methods", action="store_true", help="list saliency methods and exit")
    add_debug(parser, default=False)
    sub = parser.add_subparsers(dest="command")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Run the CLI; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error already printed on one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    if args.list_methods:
        from ..saliency import METHODS, method_names

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
