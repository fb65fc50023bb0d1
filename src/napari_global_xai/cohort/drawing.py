"""The cohort figure: for each plane (label, overall), the cohort's global map, the reference's and their difference,
over the mean anatomy when one is given. Cohort and reference share one colour scale; the difference is diverging,
symmetric around 0. Matplotlib on a caller's figure (no pyplot state)."""

from __future__ import annotations

import numpy as np

__all__ = ["draw_cohort"]


def _top(*maps: np.ndarray) -> float:
    values = np.concatenate([m[np.isfinite(m)].ravel() for m in maps])
    return float(np.percentile(np.abs(values), 99.9)) if values.size else 1.0


def draw_cohort(fig, result, anatomy: np.ndarray | None = None) -> None:
    """Draw ``result`` (a :class:`~napari_global_xai.cohort.result.CohortResult`) into ``fig``."""
    from ..figures import anatomy_rgb, map_scale

    planes = list(result.planes)
    axes = fig.subplots(len(planes), 3, squeeze=False)
    background = anatomy_rgb(anatomy) if anatomy is not None else None
    labels = planes[: len(result.cohort_count)]
    counts = dict(zip(labels, result.cohort_count))
    ref_counts = dict(zip(labels, result.reference_count))
    for p, name in enumerate(planes):
        cohort, reference, diff = result.cohort[p], result.reference[p], result.difference[p]
        vmax = _top(cohort, reference) or 1.0
        factor, unit = map_scale(result.normalisation, vmax)
        dmax = _top(diff) or 1.0
        n_c = counts.get(name, sum(result.cohort_count))
        n_r = ref_counts.get(name, sum(result.reference_count))
        titles = (
            f"{name} · cohort ({n_c} maps)",
            f"{name} · reference ({result.config.reference}, {n_r} maps)",
            f"{name} · cohort − reference",
        )
        for k, (data, title) in enumerate(zip((cohort, reference, diff), titles)):
            ax = axes[p, k]
            if background is not None:
                ax.imshow(background, interpolation="nearest")
            if k < 2:
                image = ax.imshow(
                    data * factor,
                    cmap="inferno",
                    vmin=0.0,
                    vmax=vmax * factor,
                    alpha=0.75 if background is not None else 1.0,
                    interpolation="nearest",
                )
                bar = fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02)
                bar.set_label(unit, fontsize=7)
            else:
                image = ax.imshow(
                    data * factor,
                    cmap="RdBu_r",
                    vmin=-dmax * factor,
                    vmax=dmax * factor,
                    alpha=0.8 if background is not None else 1.0,
                    interpolation="nearest",
                )
                bar = fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02)
                bar.set_label("cohort − reference (same unit)", fontsize=7)
            bar.ax.tick_params(labelsize=7)
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    where = result.config.where or "every image"
    fig.suptitle(
        f"Cohort: {where} — {result.n_selected} of {len(result.selected)} images · {result.method} maps "
        f"({result.frame} frame)",
        fontsize=10,
    )
    fig.tight_layout()
