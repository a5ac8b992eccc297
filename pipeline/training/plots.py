"""Plots rendered to PNG (DVC's HTML plots load Vega from a CDN, unreachable offline)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.data.figures import figure_png  # noqa: E402


def curves_png(x, curves: dict[str, list[float]], xlabel: str, title: str) -> bytes:
    """One panel per named curve, sharing the x axis; PNG bytes without timestamps."""
    fig, axes = plt.subplots(len(curves), 1, figsize=(6, 2.2 * len(curves)), sharex=True,
                             squeeze=False)
    for ax, (name, ys) in zip(axes[:, 0], curves.items()):
        ax.plot(x, ys, lw=1)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(xlabel)
    axes[0, 0].set_title(title)
    fig.tight_layout()
    return figure_png(fig, dpi=90)
