"""``global-xai make-sample-data``: write the planted-truth sample stack and its ground truth (:mod:`..samples`)."""

from __future__ import annotations

from ._options import add_debug, command


def add_parser(sub) -> None:
    from .. import samples

    p = command(sub, "make-sample-data", "write the planted-truth sample stack and ground truth")
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
    add_debug(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..samples import write_sample_data

    out = write_sample_data(args.out, n=args.n, seed=args.seed)
    print(f"wrote sample data to {out}")
    return 0
