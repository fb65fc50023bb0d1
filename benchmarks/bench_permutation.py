"""Permutation test of group difference maps: batched matmuls vs. a one-permutation-at-a-time loop.

Times :func:`napari_global_xai.analyses.compare.compare_groups` (1,000 permutations by default) on random maps of
``n_images × H × W`` and, as the baseline in the same run, the plain loop (group means of each permuted split with
numpy, ``--loop-permutations`` of them, extrapolated linearly to the same number of permutations).

    python benchmarks/bench_permutation.py --n-images 1000 --height 384 --width 512 --threads 1
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from _timing import sync


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--n-permutations", type=int, default=1000)
    ap.add_argument("--loop-permutations", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from napari_global_xai.analyses.compare import (
        compare_groups,
        group_permutations,
        split_groups,
    )

    rng = np.random.default_rng(0)
    n, h, w = args.n_images, args.height, args.width
    maps = rng.random((n, h, w), dtype=np.float32)
    split = split_groups(np.arange(n) % 2)
    print(
        f"maps {n} × {h} × {w} float32 ({maps.nbytes / 2**30:.2f} GiB), {args.n_permutations} permutations, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    # warm-up on a small slice (allocator, kernels), untimed
    compare_groups(maps[:, :8, :8], split, n_permutations=50, device=args.device, dtype=args.dtype)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = compare_groups(maps, split, n_permutations=args.n_permutations, device=args.device, dtype=args.dtype)
    sync(args.device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        f"batched: {wall:.1f} s wall ({wall / args.n_permutations * 1e3:.1f} ms per permutation), CPU/wall "
        f"{cpu / wall:.2f}, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB, "
        f"min p {result.p.min():.4f}"
    )
    labels = split.assign.astype(np.int64)
    perms = group_permutations(labels, args.loop_permutations, seed=1)
    x = maps.reshape(n, -1)
    obs = np.abs(x[labels == 1].mean(0) - x[labels == 0].mean(0))
    t0 = time.perf_counter()
    count = np.zeros(x.shape[1], np.int64)
    for perm in perms:
        d = np.abs(x[perm == 1].mean(0) - x[perm == 0].mean(0))
        count += d >= obs
    loop = (time.perf_counter() - t0) / len(perms)
    print(
        f"loop baseline: {loop * 1e3:.1f} ms per permutation (numpy, {len(perms)} timed) → "
        f"{loop * args.n_permutations:.1f} s for {args.n_permutations}; batched is "
        f"{loop * args.n_permutations / wall:.1f}× faster"
    )


if __name__ == "__main__":
    main()
