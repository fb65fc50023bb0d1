"""A results store of many images written fast, without a model: the store's own writer given synthetic chunks.

Used by the viewer tests (lazy layers, flat memory) and ``benchmarks/bench_ui_stall.py`` (a 10,000-image store).
Each map is a smooth blob (compresses like real maps), mass-normalised; the global maps are the exact means.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

LABELS = ("lesion", "disc")


def write_synthetic_store(folder, n: int, shape=(96, 128), labels=LABELS, chunk_size: int = 500, seed: int = 0):
    """Write ``folder/image_maps.zarr`` (the folder contract of ``run_explain``) with ``n`` images; returns the store.

    Images alternate left / right eyes; every map is computed and in the subset.
    """
    import dask.array as da

    from napari_global_xai.aggregate import GlobalMapAccumulator
    from napari_global_xai.chunks import ChunkResult, chunk_bounds
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.data import AlignedStack
    from napari_global_xai.explain.result import FILES
    from napari_global_xai.models import ModelCard
    from napari_global_xai.store import open_results_store
    from napari_global_xai.store.writer import write_anatomy

    h, w = shape
    labels = list(labels)
    laterality = np.array(["L", "R"] * (n // 2) + ["L"] * (n % 2))
    stack = AlignedStack(
        da.zeros((n, h, w, 3), np.uint8, chunks=(chunk_size, h, w, 3)),
        [f"img{i:05d}" for i in range(n)],
        laterality=laterality,
        labels=None,
        sources=["<synthetic>"] * n,
    )
    config = ExplainConfig(method="saliency", subset="all", chunk_size=chunk_size)
    card = ModelCard(name="synthetic", labels=labels, weights="none.pt", format="torchscript")
    bounds = chunk_bounds(n, chunk_size)
    task = SimpleNamespace(
        config=config,
        targets=labels,
        subset="all",
        truth=None,
        known=np.zeros(len(labels), bool),
        model=SimpleNamespace(card=card, labels=labels),
        stack=stack,
        n_chunks=len(bounds),
    )
    root = Path(folder) / FILES.store
    writer = open_results_store(root, (n, len(labels), h, w), task, stack)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    total = GlobalMapAccumulator(labels, (h, w))
    for c, (start, stop) in enumerate(bounds):
        k = stop - start
        centres = rng.uniform(0.2, 0.8, (k, len(labels), 2)).astype(np.float32) * np.array([h, w], np.float32)
        d2 = (yy - centres[..., 0, None, None]) ** 2 + (xx - centres[..., 1, None, None]) ** 2
        maps = np.exp(-d2 / np.float32(2 * (0.1 * h) ** 2))
        maps[maps < 1e-3] = 0  # a blob on a zero background, as real maps compress
        maps /= maps.sum(axis=(2, 3), keepdims=True)
        ones = np.ones((k, len(labels)), bool)
        acc = GlobalMapAccumulator(labels, (h, w))
        acc.update(maps, ones)
        result = ChunkResult(
            c,
            np.arange(start, stop),
            maps,
            ones,
            ~ones,
            ~ones,
            ones,
            ones,
            rng.uniform(0, 1, (k, len(labels))).astype(np.float32),
            acc,
        )
        writer.write(result)
        total.merge(acc)
    gm = total.result(metadata={"method": "saliency", "subset": "all", "normalisation": "mass"})
    writer.finish(gm, {"status": "complete", "config": {"method": "saliency", "normalisation": "mass"}})
    anatomy = np.stack([128 + 100 * np.cos(xx / w * 6) * np.cos(yy / h * 6)] * 3, axis=-1)
    write_anatomy(root, anatomy.astype(np.float32))
    return root
