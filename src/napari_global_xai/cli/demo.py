"""``global-xai demo``: the whole chain (explain → global maps → PEPPR → report) on the shipped sample data
(:mod:`..demo`)."""

from __future__ import annotations

from ._common import _cancelled_exit, _run_control
from ._options import add_debug, add_device_option, command


def add_parser(sub) -> None:
    from .. import config

    p = command(sub, "demo", "the whole chain (explain → global maps → PEPPR) on the shipped sample data")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    method = config.ExplainConfig().method
    p.add_argument("--method", default=method, help=f"saliency method (default {method}); see --list-methods")
    add_device_option(p, "where the model runs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug(p)
    p.set_defaults(func=run)


def demo_text(result) -> str:
    """The terminal summary of a :class:`~napari_global_xai.demo.DemoResult`."""
    explained, out = result.explain, result.out_dir
    head = (
        f"demo on {result.n_images} sample images with {result.model_name} on {result.device}: "
        f"{explained.n_computed} {result.method} maps"
    )
    if result.peppr is None:
        return head + f" (CANCELLED: no PEPPR, no report), {result.seconds:.0f}s\nresults in {out.resolve()}"
    from ..explain.result import FILES
    from ..peppr.result import FIGURE_FILE
    from ..peppr.summary import summary_text

    peppr = result.peppr
    return "\n".join(
        [
            head + f", PEPPR {peppr.n_forwards} forwards ({peppr.n_skipped} skipped), {result.seconds:.0f}s",
            summary_text(peppr),
            f"figures: {out / f'explain_{result.method}' / FILES.overlay} and "
            f"{out / f'peppr_{result.method}' / FIGURE_FILE}",
            f"report: {result.report.get('html', '')} (one self-contained file) and {result.report.get('pdf', '')}",
        ]
    )


def run(args) -> int:
    from ..demo import run_demo

    with _run_control(args.quiet) as control:
        result = run_demo(args.out, method=args.method, device=args.device, control=control)
    print(demo_text(result))
    return _cancelled_exit("demo", result)
