"""A PNG grid of sample images with their captions, for people to look at a dataset."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.data.figures import figure_png  # noqa: E402


def sample_grid_png(images: list[np.ndarray], captions: list[list[str]], cols: int = 4,
                    captions_shown: int = 2) -> bytes:
    """images: list of (H, W, 3) uint8; captions: per image, a list of strings."""
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, caps in zip(axes.ravel(), images, captions):
        ax.imshow(img, interpolation="nearest")
        text = "\n".join(textwrap.fill(c, 42) for c in caps[:captions_shown])
        ax.set_title(text, fontsize=7, loc="left")
    fig.tight_layout()
    return figure_png(fig, dpi=80)
