"""``global-xai``: the command-line face of the jobs' pipelines (``<job>.pipeline``).

Sub-commands: ``explain``, ``peppr``, ``sag``, ``demo`` (the whole chain on the shipped sample data), ``card`` (write
a model card for a model file), ``report``, ``concepts``, ``sanity``, ``compare``, ``regions``, ``train-demo`` and
``make-sample-data``. Argument parsing, the terminal progress bar and text rendering live in this package;
everything else is the core. Modules: ``parser`` (the argparse definitions; torch-free, so ``--help`` is fast),
``_common`` (run control, one-line warnings, input loading, failures as exit codes), ``commands`` and ``analyses``
(the sub-command handlers and the text they print; they import torch-backed modules only when they run); ``main`` is
here.

Exit codes: 0 done; 1 an input file, the model or the output folder cannot be used (or an unexpected error); 2 a
usage error (an option or parameter value); 130 cancelled (Ctrl-C; explain, peppr and sag write the partial result
over the images finished, marked ``"status": "CANCELLED"``; explain's same command then resumes). Every failure is
one line on stderr, ``global-xai <command>: error: ...``; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

# re-exported (``X as X``): importable from ``napari_global_xai.cli`` as before the split
from ._common import EXIT_CANCELLED as EXIT_CANCELLED
from ._common import _failure, _first_missing, _remove_created_empty
from ._common import _run_control as _run_control
from ._common import _TerminalProgress as _TerminalProgress
from .commands import _demo_text as _demo_text
from .commands import _explain_config as _explain_config
from .parser import DESCRIPTION as DESCRIPTION
from .parser import build_parser

__all__ = ["main", "build_parser"]


def main(argv=None) -> int:
    """Run the CLI; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error already printed on one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    if args.list_methods:
        from ..explain import METHODS, method_names

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
