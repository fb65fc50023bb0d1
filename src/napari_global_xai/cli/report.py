"""``global-xai report``: one self-contained HTML report (and a PDF of its figures) of a results folder
(:mod:`..report`)."""

from __future__ import annotations

from ._options import command


def add_parser(sub) -> None:
    p = command(sub, "report", "one self-contained HTML report (and a PDF of its figures) of a results folder")
    p.add_argument("results", help="a 'demo' output folder or a single explain / peppr / sag output folder")
    p.add_argument("--out", default="report.html", help="HTML file (default report.html); the PDF goes beside it")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF of the figures")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import write_report

    paths = write_report(args.results, args.out, pdf=not args.no_pdf)
    sizes = ", ".join(f"{p} ({p.stat().st_size / 1e6:.1f} MB)" for p in paths.values())
    print(f"wrote {sizes}")
    return 0
