"""Group comparison on the planted-truth sample: does positives vs negatives of each label show the planted region,
nothing far from it, and no more than random splits give?

For each explain run given (e.g. Grad-CAM and Integrated Gradients, both with ``--compute all --normalisation
none``) and each disease label, the label's image-wise maps of every image are compared between the label's
positives and negatives (:func:`napari_global_xai.analyses.compare_pipeline.run_compare`) under each normalisation
(``--normalisations``) and smoothing σ (``--sigmas``: pixels, ``default`` = ``CompareConfig``'s, 0 = the per-pixel
test), then under ``--splits`` random splits of the same sizes (the null: every pixel is null, so a split with any
family-wise pixel is a family-wise error). Printed per run, label and setting: family-wise (FWE) pixels inside the
planted region, within ``--dilate`` px of it (Euclidean; the method's resolution: two cells of a 16-px CAM grid),
beyond that by direction (A = positives higher, B = negatives higher) and how many of those lie inside the field of
view; FDR pixels inside and beyond; for the null, the splits with any FWE / any FDR pixel (each at most α of them
when calibrated; BH under a complete null bounds the chance of any discovery by α) and the largest FWE / FDR counts
of a split; the p-floor refinement. ``--welch`` adds the rejected studentised
alternative (Welch t per pixel, max-|t| family-wise, same permutations, no refinement) for the record.

    global-xai explain sample_data/uwf_sample.tif --method gradcam --compute all --normalisation none \\
        --map-dtype float32 --out /tmp/cmp/gradcam_none
    global-xai explain sample_data/uwf_sample.tif --method ig --compute all --normalisation none \\
        --map-dtype float32 --out /tmp/cmp/ig_none
    PYTHONPATH=src .venv/bin/python benchmarks/bench_compare.py /tmp/cmp/gradcam_none /tmp/cmp/ig_none \\
        --splits 20 --sigmas 0 default
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time

import numpy as np
from scipy import ndimage


def _counts(sig, region, near, fov):
    far = ~near
    return {
        "in": int((sig[region] > 0).sum()),
        "near": int((sig[near] > 0).sum()),
        "far_a": int((sig[far] == 1).sum()),
        "far_b": int((sig[far] == 2).sum()),
        "far_fov": int((sig[far & fov] > 0).sum()),
    }


def _welch(x, labels, n_permutations, seed, alpha):
    """Welch t per pixel with permutation p-values, max-|t| family-wise and BH: (FWE code, FDR code), 1 = A higher."""
    import torch

    from napari_global_xai.analyses.compare import benjamini_hochberg, group_permutations

    flat = torch.as_tensor(x.reshape(len(x), -1), dtype=torch.float64)
    tested = flat.amax(0) > flat.amin(0)
    z = flat[:, tested] - flat[:, tested].mean(0)
    z /= z.std(0)  # t is scale-free per pixel; unit scale keeps the sums of squares well conditioned
    n_a, n_b = int(labels.sum()), int((1 - labels).sum())
    s1, s2 = z.sum(0), (z * z).sum(0)
    rows = np.vstack([labels[None], group_permutations(labels, n_permutations, seed)])
    ts = []
    for start in range(0, len(rows), 100):
        w = torch.as_tensor(rows[start : start + 100], dtype=torch.float64)
        a1, a2 = w @ z, w @ (z * z)
        m_a, m_b = a1 / n_a, (s1 - a1) / n_b
        v_a, v_b = (a2 - n_a * m_a**2) / (n_a - 1), (s2 - a2 - n_b * m_b**2) / (n_b - 1)
        ts.append((m_a - m_b) / (v_a / n_a + v_b / n_b).clamp_min(1e-12).sqrt())
    t = torch.cat(ts)
    observed, null = t[0], t[1:].abs()
    bar = observed.abs() * (1 - 1e-9)
    p = ((null >= bar).sum(0) + 1.0) / (n_permutations + 1)
    p_fwe = ((null.amax(1)[:, None] >= bar[None]).sum(0) + 1.0) / (n_permutations + 1)
    shape, mask = x.shape[1:], tested.numpy()
    sign = np.zeros(mask.shape)
    sign[mask] = np.sign(observed.numpy())
    full_p = np.full(mask.shape, np.nan)
    full_p[mask] = p.numpy()
    fdr, _ = benjamini_hochberg(full_p, alpha)
    fwe = np.zeros(mask.shape, bool)
    fwe[mask] = p_fwe.numpy() <= alpha

    def code(sig):
        return np.where(sig & (sign > 0), 1, np.where(sig & (sign < 0), 2, 0)).astype(np.uint8).reshape(shape)

    return code(fwe), code(fdr)


def _line(head, fwe, fdr, null, extra=""):
    if len(null):
        hits = f"{(null[:, 0] > 0).sum()}/{(null[:, 1] > 0).sum()} of {len(null)}"
        most = f"{null[:, 0].max()}/{null[:, 1].max()}"
    else:
        hits = most = "n/a"
    return (
        f"{head} FWE in {fwe['in']:5d} near {fwe['near']:5d} beyond A/B {fwe['far_a']:5d}/{fwe['far_b']:5d} "
        f"(in FOV {fwe['far_fov']:5d}) | FDR in {fdr['in']:5d} beyond A/B {fdr['far_a']:6d}/{fdr['far_b']:6d} | "
        f"null: splits with any FWE/FDR px {hits}, most px FWE/FDR {most}{extra}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("explain_dirs", nargs="+", help="explain runs with --compute all --normalisation none")
    ap.add_argument("--labels", nargs="*", default=None)
    ap.add_argument("--n-permutations", type=int, default=1000)
    ap.add_argument("--max-permutations", type=int, default=100_000)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--dilate", type=int, default=32)
    ap.add_argument("--normalisations", nargs="*", default=["raw"])
    ap.add_argument("--sigmas", nargs="*", default=["0", "default"], help="smoothing σ in px, or 'default'")
    ap.add_argument("--welch", action="store_true", help="also the studentised alternative (rejected)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from napari_global_xai.analyses.compare import split_groups
    from napari_global_xai.analyses.compare_normalise import prepare_maps, smooth_maps, smoothing_sigma
    from napari_global_xai.analyses.compare_pipeline import run_compare
    from napari_global_xai.analyses.explain_inputs import label_maps
    from napari_global_xai.analysis_config import CompareConfig
    from napari_global_xai.data.synthetic import DISEASE_LABELS, field_of_view_mask
    from napari_global_xai.explain.result import open_explain
    from napari_global_xai.samples import SAMPLE_LABELS, load_ground_truth

    truth = load_ground_truth()["regions"]
    fov = field_of_view_mask()
    with open(SAMPLE_LABELS, newline="") as handle:
        by_id = {r["image"]: r for r in csv.DictReader(handle)}
    print(
        f"{args.n_permutations} permutations (refined to {args.max_permutations}), {args.splits} random splits, "
        f"dilation {args.dilate} px, FWE/FDR at 0.05"
    )
    for folder in args.explain_dirs:
        run = open_explain(folder)
        for label in args.labels or DISEASE_LABELS:
            maps, idx = label_maps(run.image_maps, run.computed, run.targets, label)
            values = np.array([by_id[run.image_ids[i]][label] for i in idx])
            region = truth[label]
            near = ndimage.distance_transform_edt(~region) <= args.dilate
            for norm in args.normalisations:
                for sig in args.sigmas:
                    sigma = None if sig == "default" else float(sig)
                    config = CompareConfig(
                        n_permutations=args.n_permutations,
                        max_permutations=args.max_permutations,
                        normalisation=norm,
                        smooth_sigma=sigma,
                    )
                    t0 = time.perf_counter()
                    real = run_compare(maps, values, config, column=label)
                    wall = time.perf_counter() - t0
                    rng = np.random.default_rng(1)
                    null = []
                    for k in range(args.splits):
                        split_config = dataclasses.replace(config, seed=k + 1)
                        r = run_compare(maps, rng.permutation(values), split_config, column=label)
                        null.append([int((r.significant_fwe > 0).sum()), int((r.significant > 0).sum())])
                    s = real.summary()
                    head = f"{run.method:8s} {label:18s} {norm:6s} σ {s['smooth_sigma']:4.1f}"
                    extra = (
                        f" | refined {s['n_refined']} px to {s['max_permutations']}, FDR needs ≥ "
                        f"{s['fdr_min_pixels']} px | {wall:.1f} s"
                    )
                    counts = [_counts(c, region, near, fov) for c in (real.significant_fwe, real.significant)]
                    print(_line(head, *counts, np.array(null).reshape(-1, 2), extra), flush=True)
                    if not args.welch:
                        continue
                    x = smooth_maps(prepare_maps(maps, norm), smoothing_sigma(maps.shape, sigma))
                    labels = split_groups(values, column=label).assign.astype(np.int64)
                    welch = _welch(x, labels, args.n_permutations, 0, 0.05)
                    null = []
                    for k in range(args.splits):
                        fwe, fdr = _welch(x, rng.permutation(labels), args.n_permutations, k + 1, 0.05)
                        null.append([int((fwe > 0).sum()), int((fdr > 0).sum())])
                    head = f"{run.method:8s} {label:18s} {norm:6s} σ {s['smooth_sigma']:4.1f} Welch t"
                    counts = [_counts(c, region, near, fov) for c in welch]
                    print(_line(head, *counts, np.array(null).reshape(-1, 2)), flush=True)


if __name__ == "__main__":
    main()
