"""What every ``global-xai`` command shares: the run contract (a terminal bar per stage, Ctrl-C as the cancel Event),
one-line warnings and notes, the inputs (model, then the stack fitted to it), and failures as one line and an exit code.
"""

from __future__ import annotations

import ast
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

#: Exit code of a cancelled run (128 + SIGINT, as shells report Ctrl-C).
EXIT_CANCELLED = 130


def _bar_format(unit: str) -> str:
    """tqdm's bar with the stage's unit and the time left said in words:
    ``peppr:  43%|████      | 2017/4673 image forwards [01:02 elapsed, 01:20 left]``."""
    unit = unit.replace("{", "{{").replace("}", "}}")
    return "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} " + unit + " [{elapsed} elapsed, {remaining} left]"


class _TerminalProgress:
    """Adapts the core's ``progress(done, total, stage)`` callback to one tqdm bar per stage."""

    def __init__(self, disable: bool = False):
        self.bar = None
        self.stage = None
        self.disable = disable

    def __call__(self, done: int, total: int, stage: str) -> None:
        from tqdm.auto import tqdm

        from ..control import unit_of

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(
                total=total,
                desc=stage,
                bar_format=_bar_format(unit_of(stage)),
                disable=self.disable,
                dynamic_ncols=True,
                mininterval=0.5,
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
    from ..control import RunControl

    with _progress(quiet) as bar, _interrupt_event() as event:
        yield RunControl(progress=bar, cancel=event)


@contextmanager
def _progress(quiet: bool):
    bar = _TerminalProgress(disable=quiet)
    try:
        yield bar
    finally:
        bar.close()


def _parse_params(items) -> dict:
    """``["n_steps=16", "baseline=blur"]`` → ``{"n_steps": 16, "baseline": "blur"}``."""
    params = {}
    for item in items or []:
        if "=" not in item:
            from ..errors import UsageError

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
    """Saliency warnings (a method partly undefined on this model) and result warnings (a label without maps,
    NaN probabilities) as one line each on stderr."""
    import warnings

    from ..errors import ResultWarning
    from ..saliency.base import SaliencyWarning

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (SaliencyWarning, ResultWarning)):
            print(f"global-xai {command}: warning: {message}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", SaliencyWarning)
        warnings.simplefilter("always", ResultWarning)
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = previous


_PYTHON_FORMATWARNING = warnings.formatwarning


def _format_notice(message, category, filename, lineno, line=None):
    """Input notices print as one ``global-xai: note: ...`` line; other warnings as Python formats them."""
    from ..data.labels import InputNotice

    if issubclass(category, InputNotice):
        return f"global-xai: note: {message}\n"
    return _PYTHON_FORMATWARNING(message, category, filename, lineno, line)


def _cluster_choice(args):
    """The parsed ``--cluster`` / ``--scheduler`` (call it before loading the model: a bad spec fails at once)."""
    from ..scale import parse_cluster

    return parse_cluster(args.cluster, args.scheduler)


@contextmanager
def _executor(where, device: str | None):
    """The run's executor for ``where``: None in this process, else a Dask executor on the (started) cluster."""
    from ..scale import connect

    with connect(where) as client:
        if client is None:
            yield None
        else:
            from ..scale.executor import DaskExecutor

            yield DaskExecutor(client, device=device)


def _load_inputs(args):
    """The model first (its card says the labels, size, channels and bit depth), then the stack fitted to it."""
    from ..data import read_stack
    from ..data.conform import model_input_spec
    from ..models import load_model

    warnings.formatwarning = _format_notice
    _refuse_output_in_input(getattr(args, "out", None), args.stack)
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


def _refuse_output_in_input(out, *inputs) -> None:
    """Refuse an output folder that is, or lies inside, an input folder (a stack given as a folder): the results would
    land among the images, and the next run on that folder would read its own output files as images.

    Raises
    ------
    OutputFolderError
        Before the model loads; the message names both folders.
    """
    if not out:
        return
    target = Path(out).resolve()
    for given in inputs:
        if not given or not Path(given).is_dir():
            continue
        folder = Path(given).resolve()
        if target == folder or folder in target.parents:
            from ..errors import OutputFolderError

            where = "is" if target == folder else "lies inside"
            raise OutputFolderError(
                f"output folder {out} {where} the input folder {given}: the results would mix with the images and "
                "the next run on that folder would meet its own output files; give --out outside it"
            )


def _cancelled_exit(command: str, result, done: str = "", then: str = "") -> int:
    """0, or after a cancel one stderr line and :data:`EXIT_CANCELLED` (the partial result is written).

    ``done`` says how much the partial result holds (``"16 of 28 images"``); ``then`` is appended (what to do next).
    """
    if not result.cancelled:
        return 0
    held = f" ({done})" if done else ""
    print(f"global-xai {command}: cancelled: partial result{held} written, marked CANCELLED{then}", file=sys.stderr)
    return EXIT_CANCELLED


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _failure(command: str, exc: BaseException) -> tuple[int, str] | None:
    """Exit code and the one stderr line for a failure; None for exceptions that are not failures (SystemExit)."""
    from ..control import Cancelled
    from ..errors import UsageError

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
    """A failed run leaves no empty folders that it created itself: the empty folders under ``folder`` (which did not
    exist before the run, so the run made everything in it), then ``folder`` up to ``first_created``."""
    if folder is None or first_created is None:
        return
    import contextlib
    import os

    if folder.is_dir():
        for root, _, _ in sorted(os.walk(folder), key=lambda entry: -len(Path(entry[0]).parts)):  # deepest first
            if Path(root) != folder:
                with contextlib.suppress(OSError):
                    Path(root).rmdir()  # only succeeds when empty
    current = folder.absolute()
    while not current.exists() and current != first_created:  # a file never written (e.g. a card): its folders
        current = current.parent
    while True:
        try:
            current.rmdir()  # only succeeds when empty
        except OSError:
            return
        if current == first_created:
            return
        current = current.parent
