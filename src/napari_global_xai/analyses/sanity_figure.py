"""The sanity check's figure, drawn from a :class:`~napari_global_xai.analyses.sanity_result.SanityResult` into a
figure the caller owns (the dock's canvas, ``sanity.png``, the report). Torch-free."""

from __future__ import annotations

import numpy as np

__all__ = ["draw_sanity"]


def draw_sanity(fig, result):
    """Similarity against the randomised layer, one colour per method, into ``fig``.

    Three panels: image-wise |ρ| (mean over the sample with its bootstrap interval), image-wise SSIM (mean ± sd),
    and |ρ| of the global map; cascading steps solid, each layer randomised alone dashed. The unrelated-pair
    reference (the verdicts' bar, with its interval) is the dotted band of each method in the two ρ panels.

    Returns
    -------
    list of matplotlib.axes.Axes
    """
    fig.clear()
    axes = fig.subplots(1, 3, sharex=True)
    x = np.arange(len(result.steps))
    for i, m in enumerate(result.methods):
        colour = f"C{i}"
        intervals = result.step_intervals.get(m) or []
        if intervals:
            mean = np.array([iv.mean for iv in intervals])
            low, high = np.array([iv.low for iv in intervals]), np.array([iv.high for iv in intervals])
            axes[0].plot(x[: len(mean)], mean, "-o", color=colour, ms=3, label=m)
            axes[0].fill_between(x[: len(mean)], low, high, color=colour, alpha=0.2, lw=0)
        ss = result.ssim[m]
        mean, sd = np.nanmean(ss, axis=1), np.nanstd(ss, axis=1)
        axes[1].plot(x[: len(mean)], mean, "-o", color=colour, ms=3, label=m)
        axes[1].fill_between(x[: len(mean)], mean - sd, mean + sd, color=colour, alpha=0.15, lw=0)
        g = np.abs(np.asarray(result.global_spearman[m], float))
        axes[2].plot(x[: len(g)], g, "-o", color=colour, ms=3, label=m)
        alone = result.independent_intervals.get(m) or []
        if alone:
            axes[0].plot(
                np.arange(1, len(alone) + 1),
                [iv.mean for iv in alone],
                "--",
                color=colour,
                lw=1,
                label=f"{m} (each layer alone)",
            )
        if m in result.independent_ssim and len(result.independent_ssim[m]):
            axes[1].plot(
                np.arange(1, len(result.independent_ssim[m]) + 1),
                np.nanmean(result.independent_ssim[m], axis=1),
                "--",
                color=colour,
                lw=1,
            )
        if m in result.independent_global_spearman and len(result.independent_global_spearman[m]):
            g_alone = np.abs(result.independent_global_spearman[m])
            axes[2].plot(np.arange(1, len(g_alone) + 1), g_alone, "--", color=colour, lw=1)
        verdict = (result.judgements.get(m) or {}).get("image")
        if verdict is not None and np.isfinite(verdict.unrelated.mean):
            u = verdict.unrelated
            for ax in (axes[0], axes[2]):
                ax.axhline(u.mean, color=colour, lw=0.8, ls=":")
                if np.isfinite(u.low) and np.isfinite(u.high):
                    ax.axhspan(u.low, u.high, color=colour, alpha=0.08, lw=0)
    titles = (
        "image-wise |ρ| (band: 95 % interval)",
        "image-wise SSIM (mean ± sd)",
        "global-map |ρ|",
    )
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xticks(x, result.steps, rotation=70, fontsize=7, ha="right")
        ax.set_xlabel("randomised down to layer (cascading)", fontsize=8)
    axes[0].legend(fontsize=7)
    axes[2].text(0.02, 0.02, "dotted: unrelated-pair |ρ| (the bar)", transform=axes[2].transAxes, fontsize=7)
    fig.tight_layout()
    return list(axes)
