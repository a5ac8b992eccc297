"""Render one image's proposals as a PNG, for a person to look at what a stage produced:
the image, all proposals overlaid in distinct colours, then each proposal alone with its
score (and label, for ground-truth segments)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.data.figures import figure_png  # noqa: E402


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """(H, W, 3) uint8 image, (N, H, W) bool masks -> (H, W, 3) uint8; later masks on top."""
    colours = (plt.get_cmap("tab20")(np.arange(len(masks)) % 20)[:, :3] * 255)
    out = image.astype(np.float32).copy()
    for m, c in zip(masks, colours):
        out[m] = (1 - alpha) * out[m] + alpha * c
    return out.astype(np.uint8)


def proposals_png(image: np.ndarray, masks: np.ndarray, scores: np.ndarray,
                  titles: list[str] | None = None, cols: int = 6) -> bytes:
    n = len(masks)
    panels = 2 + n
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes.flat[0].imshow(image, interpolation="nearest")
    axes.flat[0].set_title("image", fontsize=8)
    axes.flat[1].imshow(overlay(image, masks), interpolation="nearest")
    axes.flat[1].set_title(f"{n} proposals", fontsize=8)
    dimmed = (image * 0.25).astype(np.uint8)
    for k in range(n):
        ax = axes.flat[2 + k]
        ax.imshow(np.where(masks[k][..., None], image, dimmed), interpolation="nearest")
        ax.set_title(titles[k] if titles else f"#{k} score {scores[k]:.2f}", fontsize=7)
    fig.tight_layout()
    return figure_png(fig, dpi=80)
