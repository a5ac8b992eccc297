"""Pictures of segmentations: a label map coloured over its image with a legend of the
classes it uses, panels of predictions beside ground truth, a per-class IoU chart, the
λ sweep and the most confused class pairs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from pipeline.data.figures import figure_png  # noqa: E402


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct-ish colours, the same for the same class index every time."""
    base = np.concatenate([plt.get_cmap(c)(np.arange(20))[:, :3] for c in ("tab20", "tab20b",
                                                                          "tab20c")])
    return (base[np.arange(n) % len(base)] * 255).astype(np.uint8)


def colour_labels(image: np.ndarray, labels: np.ndarray, num_classes: int,
                  alpha: float = 0.6, ignore: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 image and (H, W) label map -> blended (H, W, 3) uint8; `ignore`
    pixels keep the image."""
    colours = palette(max(num_classes, 1))
    known = labels < num_classes if ignore is None else (labels != ignore) & \
        (labels < num_classes)
    out = image.astype(np.float32).copy()
    out[known] = (1 - alpha) * out[known] + alpha * colours[labels[known]]
    return out.astype(np.uint8)


def classes_shown(label_maps: list[np.ndarray], num_classes: int,
                  ignore: int | None = None) -> list[int]:
    """The class indices that any of the (H, W) label maps uses, ascending; `ignore` and
    indices outside the vocabulary (no colour, no name) left out."""
    used = np.unique(np.concatenate([np.unique(m) for m in label_maps])) if label_maps else []
    return [int(c) for c in used if c < num_classes and c != ignore]


def add_legend(ax, classes: list[int], names: list[str], fontsize: float = 8,
               per_column: int = 12) -> None:
    """A legend right of `ax`: one swatch per class, in `colour_labels`' colour, named by
    the class's first synonym; a new column every `per_column` classes, so that a
    prediction of many classes (a large vocabulary) stays beside its row."""
    colours = palette(len(names))
    ax.legend(handles=[Patch(color=colours[c] / 255, label=names[c].split(",")[0].strip())
                       for c in classes], ncol=max(1, -(-len(classes) // per_column)),
              loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=fontsize, frameon=False)


def segmentation_png(image: np.ndarray, labels: np.ndarray, names: list[str]) -> bytes:
    """The image, and the label map over it with a legend of the classes present."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    axes[0].imshow(image)
    axes[1].imshow(colour_labels(image, labels, len(names)))
    for ax in axes:
        ax.axis("off")
    add_legend(axes[1], classes_shown([labels], len(names)), names)
    fig.tight_layout()
    return figure_png(fig, dpi=90)


def label_map_png(labels: np.ndarray, num_classes: int, size: tuple[int, int]) -> bytes:
    """PNG of an (h, w) label map (class indices in vocabulary order) at `size` (H, W), the
    image file's own size: resized nearest, so classes never blend; 8-bit up to 255
    classes, else 16-bit."""
    from pipeline.data.image_io import encode_png, resize_labels

    return encode_png(resize_labels(labels.astype(np.uint8 if num_classes <= 255 else
                                                  np.uint16), size))


def prediction_panels_png(rows: list[dict], names: list[str], ignore: int) -> bytes:
    """One row per image: image, ground truth, then each variant's prediction, and a legend
    of every class the row's ground truth or predictions show (the `ignore` label, drawn
    as the bare image, has none). rows: [{"image": (H, W, 3), "gt": (H, W), "<variant>":
    (H, W), ...}]."""
    variants = [k for k in rows[0] if k not in ("image", "gt")]
    cols = 2 + len(variants)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols + 1.6, 2.3 * len(rows)),
                             squeeze=False)
    for r, row in enumerate(rows):
        axes[r, 0].imshow(row["image"], interpolation="nearest")
        axes[r, 1].imshow(colour_labels(row["image"], row["gt"], len(names), ignore=ignore),
                          interpolation="nearest")
        for c, v in enumerate(variants):
            axes[r, 2 + c].imshow(colour_labels(row["image"], row[v], len(names)),
                                  interpolation="nearest")
        for c, title in enumerate(["image", "ground truth", *variants]):
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(title, fontsize=8)
        add_legend(axes[r, -1], classes_shown([row["gt"], *(row[v] for v in variants)],
                                              len(names), ignore), names, fontsize=7)
    fig.tight_layout()
    return figure_png(fig, dpi=90)


def class_iou_png(names: list[str], ious: list[float | None], seen: list[bool],
                  title: str) -> bytes:
    """Horizontal bars of per-class IoU (classes in neither ground truth nor prediction
    left out); seen classes dark, unseen light."""
    keep = [i for i, v in enumerate(ious) if v is not None]
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.18 * max(len(keep), 1)))
    ax.barh(range(len(keep)), [ious[i] for i in keep],
            color=["#33658a" if seen[i] else "#f6ae2d" for i in keep])
    ax.set_yticks(range(len(keep)), [names[i].split(",")[0] for i in keep], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU (dark: seen in training, light: unseen)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return figure_png(fig, dpi=90)


def lambda_sweep_png(rows: list[dict], used: float, title: str) -> bytes:
    """The ensemble's mIoU (detectron2 <= 0.6) over all, seen and unseen classes against
    λ, CLIP's share of the ensemble, with the λ the evaluation used marked. rows: as
    pipeline/segment/evaluation.py's lambda_sweep_rows; none: a picture saying so."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    lams = [r["lambda"] for r in rows]
    for key, label, colour, style in (
            ("miou_d2_legacy", "all", "#222222", "-"),
            ("seen_miou_d2_legacy", "seen", "#33658a", "-"),
            ("unseen_miou_d2_legacy", "unseen", "#f6ae2d", "-"),
            ("open_miou_d2_legacy", "all, Open mIoU", "#222222", ":")):
        ys = [np.nan if r.get(key) is None else r[key] for r in rows]
        if rows and not np.isnan(ys).all():
            ax.plot(lams, ys, marker="o", ms=3, lw=1.2, color=colour, ls=style, label=label)
    ax.axvline(used, color="#999999", ls="--", lw=1, label=f"used: λ = {used:g}")
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("λ (CLIP's share of the ensemble)")
    ax.set_ylabel("mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title if rows else f"{title}: no sweep (eval.lambda_sweep is empty)",
                 fontsize=9)
    fig.tight_layout()
    return figure_png(fig, dpi=90)


def confusions_png(rows: list[dict], title: str) -> bytes:
    """Horizontal bars of the most mislabelled class pairs (pipeline/segment/confusions.py's
    rows): length the share of all mislabelled pixels, colour the similarity of the two
    names (light: near-synonyms, partly credited by Open mIoU; dark: unrelated)."""
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.24 * max(len(rows), 1)))
    cmap = plt.get_cmap("viridis_r")
    ax.barh(range(len(rows)), [r["share_of_errors"] for r in rows],
            color=[cmap(r["similarity"]) for r in rows])
    ax.set_yticks(range(len(rows)),
                  [f"{r['ground_truth'].split(',')[0]} → {r['predicted'].split(',')[0]} "
                   f"({r['similarity']:.2f})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("share of all mislabelled pixels (ground truth → predicted (similarity))")
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap=cmap), ax=ax,
                 label="name similarity", fraction=0.04)
    ax.set_title(title if rows else f"{title}: no mislabelled pixels", fontsize=9)
    fig.tight_layout()
    return figure_png(fig, dpi=90)
