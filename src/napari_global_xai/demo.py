"""The demo: explain → global maps → PEPPR → report on the shipped planted-truth sample (``global-xai demo``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import DEFAULT_DEVICE, ExplainConfig
from .control import Cancelled, RunControl
from .explain.pipeline import run_explain
from .explain.result import ExplainResult

__all__ = ["DemoResult", "run_demo"]


@dataclass
class DemoResult:
    """What :func:`run_demo` made (the CLI prints it; see ``cli._demo_text``).

    Attributes
    ----------
    out_dir : pathlib.Path
    n_images : int
        Sample images explained.
    model_name, device : str
    method : str
    explain : ExplainResult
        The explain run (``out_dir/explain_<method>/``).
    peppr : PepprResult or None
        The PEPPR run (``out_dir/peppr_<method>/``); None when cancelled before it finished.
    report : dict str -> pathlib.Path
        ``"html"`` (and ``"pdf"``) of the one-file report; empty when cancelled.
    seconds : float
    cancelled : bool
    """

    out_dir: Path
    n_images: int
    model_name: str
    device: str
    method: str
    explain: ExplainResult
    peppr: object | None = None
    report: dict = field(default_factory=dict)
    seconds: float = 0.0
    cancelled: bool = False


def run_demo(
    out_dir,
    method: str = "ig",
    device: str = DEFAULT_DEVICE,
    *,
    control: RunControl | None = None,
) -> DemoResult:
    """The whole chain on the shipped sample data: explain → global maps → PEPPR, with figures and the report.

    Files go to ``out_dir/explain_<method>/`` and ``out_dir/peppr_<method>/``, and the one-file report of both to
    ``out_dir/report.html`` (+ ``report.pdf``).

    Parameters
    ----------
    out_dir : path
    method : str
        Registered saliency method (IG runs with 16 steps here, to keep the demo short).
    device : str
    control : RunControl, optional
        Progress (stages ``predict``, ``explain``, ``peppr``) and cancel.

    Returns
    -------
    DemoResult
        After a cancel: ``cancelled=True``, the explain run's partial result (written, marked CANCELLED), no PEPPR
        and no report.
    """
    import time

    from .config import PepprConfig
    from .models import load_model
    from .peppr.pipeline import run_peppr_pipeline
    from .samples import load_sample_stack

    control = control or RunControl()
    t0 = time.perf_counter()
    out = Path(out_dir)
    stack = load_sample_stack()
    model = load_model(None, device=device)
    params = {"n_steps": 16} if method == "ig" else {}
    explained = run_explain(
        stack, model, ExplainConfig(method=method, params=params), out_dir=out / f"explain_{method}", control=control
    )
    result = DemoResult(
        out, len(stack), model.card.name, str(model.device), method, explained, cancelled=explained.cancelled
    )
    if not result.cancelled:
        try:
            result.peppr = run_peppr_pipeline(
                stack,
                model,
                explained.global_maps,
                PepprConfig(map_split="eval (same images: no held-out split in the sample)"),
                out_dir=out / f"peppr_{method}",
                control=control,
            )
        except Cancelled:
            result.cancelled = True
    if not result.cancelled:
        from .report import write_report

        result.report = dict(write_report(out, out / "report.html", title="demo"))
    result.seconds = time.perf_counter() - t0
    return result
