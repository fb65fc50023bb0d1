"""Group comparison on the planted-truth sample: does positives vs negatives of each label show the planted region,
and no "other group higher" pixels beyond what random splits give?

For each disease label, the label's image-wise maps of every image (an explain run with ``--compute all
--normalisation none``) are compared between the label's positives and negatives under each normalisation of
:mod:`napari_global_xai.analyses.compare_normalise` (and the stored ``mass`` maps, i.e. the old behaviour), then
under ``--splits`` random splits of the same sizes (the null). Printed per label and normalisation: family-wise and
FDR pixels inside the planted region, inside it dilated by ``--dilate`` pixels (the method's resolution: one CAM cell
for Grad-CAM), and outside it by direction (A = positives higher, B = negatives higher); the null's largest count of
significant pixels outside the region (either direction) over the random splits; the p-floor refinement.

    global-xai explain sample_data/uwf_sample.tif --method gradcam --compute all --normalisation none \\
        --map-dtype float32 --out /tmp/gradcam_none
    PYTHONPATH=src .venv/bin/python benchmarks/bench_compare.py /tmp/gradcam_none --splits 20 --dilate 32
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np
from scipy import ndimage


def _counts(sig, region, near):
    out = ~region
    return {
        "in": int((sig[region] > 0).sum()),
        "near": int((sig[near] > 0).sum()),
        "out_a": int((sig[out] == 1).sum()),
        "out_b": int((sig[out] == 2).sum()),
        "far": int((sig[~near] > 0).sum()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("explain_dir", help="explain run with --compute all --normalisation none")
    ap.add_argument("--labels", nargs="*", default=None)
    ap.add_argument("--n-permutations", type=int, default=1000)
    ap.add_argument("--max-permutations", type=int, default=100_000)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--dilate", type=int, default=32)
    ap.add_argument("--normalisations", nargs="*", default=["mass (stored)", "raw", "shares"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from napari_global_xai.analyses.compare import compare_groups, split_groups
    from napari_global_xai.analyses.compare_normalise import prepare_maps
    from napari_global_xai.analyses.explain_inputs import label_maps
    from napari_global_xai.data.synthetic import DISEASE_LABELS
    from napari_global_xai.explain.result import open_explain
    from napari_global_xai.samples import SAMPLE_LABELS, load_ground_truth

    run = open_explain(args.explain_dir)
    truth = load_ground_truth()["regions"]
    with open(SAMPLE_LABELS, newline="") as handle:
        by_id = {r["image"]: r for r in csv.DictReader(handle)}
    print(
        f"{run.method} maps of {args.explain_dir}; {args.n_permutations} permutations (refined to "
        f"{args.max_permutations}), {args.splits} random splits, dilation {args.dilate} px"
    )
    for label in args.labels or DISEASE_LABELS:
        maps, idx = label_maps(run.image_maps, run.computed, run.targets, label)
        values = np.array([by_id[run.image_ids[i]][label] for i in idx])
        region = truth[label]
        near = ndimage.distance_transform_edt(~region) <= args.dilate  # Euclidean distance to the region
        for norm in args.normalisations:
            x = prepare_maps(maps, "shares") if norm == "mass (stored)" else prepare_maps(maps, norm)
            t0 = time.perf_counter()
            real = compare_groups(
                x,
                split_groups(values, column=label),
                args.n_permutations,
                max_permutations=args.max_permutations,
            )
            wall = time.perf_counter() - t0
            fwe, fdr = _counts(real.significant_fwe, region, near), _counts(real.significant, region, near)
            rng = np.random.default_rng(1)
            null = []
            for k in range(args.splits):
                r = compare_groups(
                    x,
                    split_groups(rng.permutation(values), column=label),
                    args.n_permutations,
                    seed=k + 1,
                    max_permutations=args.max_permutations,
                )
                null.append(
                    [int((r.significant_fwe[~region] > 0).sum()), int((r.significant[~region] > 0).sum())]
                    + [int((r.significant_fwe[~region] == 2).sum()), int((r.significant[~region] == 2).sum())]
                )
            null = np.array(null)
            s = real.summary()
            print(
                f"{label:18s} {norm:14s} FWE in {fwe['in']:6d} near {fwe['near']:6d} out A/B {fwe['out_a']:5d}/"
                f"{fwe['out_b']:5d} beyond {fwe['far']:5d} | FDR in {fdr['in']:6d} near {fdr['near']:6d} out A/B "
                f"{fdr['out_a']:6d}/{fdr['out_b']:6d} beyond {fdr['far']:6d} | null out (any dir) FWE max "
                f"{null[:, 0].max()} FDR max {null[:, 1].max()}, B-higher FWE max {null[:, 2].max()} FDR max "
                f"{null[:, 3].max()}, splits with any FWE pixel {(null[:, 0] > 0).sum()}/{len(null)} | refined "
                f"{s['n_refined']} px to {s['max_permutations']}, floor {s['p_floor']:.1e}, FDR needs ≥ "
                f"{s['fdr_min_pixels']} px | {wall:.1f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
