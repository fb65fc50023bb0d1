"""SAG read-outs: a stack-level count of roots and patches, and the JSON-ready record of one result (and back)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .result import SagNode, SagResult

__all__ = ["sag_stack_summary", "to_json", "from_json"]


def sag_stack_summary(results: Sequence[SagResult], which: str = "roots") -> dict:
    """How often root sets and patches occur across a stack (beyond the paper; valid because images are aligned).

    Parameters
    ----------
    results : sequence of SagResult
        One per image, same label and grid (typically images positive for the label).
    which : {"roots", "all_roots"}
        The shown (diverse) roots or every root found.

    Returns
    -------
    dict
        ``n_images``; ``grid``; ``root_sets``: list of ``{"patches": [...], "count", "frequency"}`` sorted by count
        (frequency = share of images having that exact root); ``patch_frequency``: ``(rows·cols,)`` share of images
        with the patch in any of their roots; ``heatmap``: the same as a ``(rows, cols)`` array;
        ``top_patches``: patch indices by decreasing frequency.
    """
    if not results:
        raise ValueError("no SAG results to summarise")
    grid = tuple(results[0].grid)
    if any(tuple(r.grid) != grid for r in results):
        raise ValueError("all results must share one patch grid")
    n_p = grid[0] * grid[1]
    counts: dict[frozenset, int] = {}
    patch = np.zeros(n_p)
    for r in results:
        roots = getattr(r, which)
        for s in dict.fromkeys(roots):
            counts[s] = counts.get(s, 0) + 1
        used = set().union(*roots) if roots else set()
        for p in used:
            patch[p] += 1
    n = len(results)
    freq = patch / n
    sets = sorted(counts.items(), key=lambda t: (-t[1], sorted(t[0])))
    return {
        "n_images": n,
        "grid": list(grid),
        "root_sets": [{"patches": sorted(s), "count": c, "frequency": c / n} for s, c in sets],
        "patch_frequency": freq,
        "heatmap": freq.reshape(grid),
        "top_patches": [int(p) for p in np.argsort(-freq, kind="stable")],
    }


def to_json(result: SagResult) -> dict:
    """A JSON-ready dict of a :class:`SagResult` (patch sets as sorted lists)."""
    return {
        "image_index": result.image_index,
        "label": result.label,
        "grid": list(result.grid),
        "full_confidence": result.full_confidence,
        "roots": [sorted(s) for s in result.roots],
        "all_roots": [sorted(s) for s in result.all_roots],
        "root_confidences": list(result.root_confidences),
        "nodes": [
            {
                "patches": sorted(n.patches),
                "confidence": n.confidence,
                "relative": n.relative,
                "children": list(n.children),
            }
            for n in result.nodes
        ],
        "n_forwards": result.n_forwards,
        "n_batches": result.n_batches,
        "seconds": result.seconds,
        "saliency_seconds": result.saliency_seconds,
        "params": {k: (v if not isinstance(v, tuple) else list(v)) for k, v in result.params.items()},
    }


def from_json(record: dict) -> SagResult:
    """The :class:`SagResult` of a :func:`to_json` record (patch sets as frozensets, the grid a tuple)."""
    return SagResult(
        image_index=int(record["image_index"]),
        label=int(record["label"]),
        grid=tuple(record["grid"]),
        full_confidence=float(record["full_confidence"]),
        roots=[frozenset(s) for s in record["roots"]],
        nodes=[
            SagNode(frozenset(n["patches"]), float(n["confidence"]), float(n["relative"]), list(n["children"]))
            for n in record["nodes"]
        ],
        n_forwards=int(record["n_forwards"]),
        all_roots=[frozenset(s) for s in record.get("all_roots", [])],
        root_confidences=[float(c) for c in record.get("root_confidences", [])],
        n_batches=int(record.get("n_batches", 0)),
        seconds=float(record.get("seconds", 0.0)),
        saliency_seconds=float(record.get("saliency_seconds", 0.0)),
        params=dict(record.get("params", {})),
    )
