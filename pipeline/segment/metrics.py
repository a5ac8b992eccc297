"""Semantic-segmentation scores from a streamed confusion matrix (OVSeg §4.1: mIoU).

Two mIoU formulas, since papers differ:
- `miou_d2_legacy` (detectron2 <= 0.6, which OVSeg's numbers use): the sum of IoU over
  classes present in the ground truth, divided by the number of classes present in the
  ground truth OR the prediction. A class that is only predicted counts 0 in the mean.
- `miou` (newer detectron2): the mean IoU over classes present in the ground truth.
Pixels whose ground truth is the ignore label are left out of everything.
"""

from __future__ import annotations

import numpy as np
import torch


def check_labels(gt: np.ndarray, num_classes: int, ignore: int = 255, where: str = "") -> None:
    """ValueError naming the labels of the (H, W) ground truth `gt` that are neither a class
    of [0, K) nor the ignore label (`where`: the file, for the message). The evaluation
    checks each label map on the host as it is read, so that `confusion_counts` on the
    device reads nothing back."""
    g = gt[gt != ignore]
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        bad = sorted(set(np.unique(g).tolist()) - set(range(num_classes)))
        raise ValueError(f"{where + ': ' if where else ''}ground-truth labels outside "
                         f"[0, {num_classes}) and not the ignore label {ignore}: {bad}"
                         " (wrong class list for this dataset?)")


def confusion_counts(pred: torch.Tensor, gt: torch.Tensor, num_classes: int,
                     ignore: int = 255) -> torch.Tensor:
    """(V, K, K) int64 counts on the label maps' device, rows = ground-truth class, columns
    = predicted class, one matrix per label map: pred (V, H, W) or (H, W) integer label
    maps in [0, K), gt (H, W) with labels in [0, K) or `ignore` (`check_labels`). Nothing is
    read back: ignored pixels go to a spare cell, dropped after (a boolean selection, or
    `bincount`'s output size, would wait for the device)."""
    k = num_classes
    maps = pred.reshape(-1, *gt.shape[-2:]).long()  # (V, H, W)
    keep = gt != ignore
    cells = torch.where(keep, gt.long() * k + maps, k * k).flatten(1)  # (V, H*W)
    counts = torch.zeros(len(maps), k * k + 1, dtype=torch.long, device=maps.device)
    counts.scatter_add_(1, cells, torch.ones(1, dtype=torch.long, device=maps.device)
                        .expand_as(cells))  # (no (V, H*W) tensor of ones)
    return counts[:, :-1].reshape(len(maps), k, k)


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                     ignore: int = 255) -> np.ndarray:
    """(K, K) int64 counts of one (H, W) label map on the host, rows = ground-truth class,
    columns = predicted class (`check_labels`, then `confusion_counts`)."""
    check_labels(gt, num_classes, ignore)
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predicted labels outside [0, {num_classes})")
    return confusion_counts(torch.from_numpy(np.asarray(pred, dtype=np.int64)),
                            torch.from_numpy(np.asarray(gt, dtype=np.int64)), num_classes,
                            ignore)[0].numpy()


def mean_ious(iou, pos_gt, pos_pred, subset) -> dict:
    """Both mIoU formulas of per-class `iou` (K,) over the classes of `subset` (K,) bool,
    which classes count decided by the ground-truth and predicted pixel counts (K,)."""
    in_gt = (pos_gt > 0) & subset
    in_either = ((pos_gt + pos_pred) > 0) & subset
    if not in_gt.any():
        return {"miou": None, "miou_d2_legacy": None, "classes_in_gt": 0}
    return {"miou": float(iou[in_gt].mean()),
            "miou_d2_legacy": float(iou[in_gt].sum() / in_either.sum()),
            "classes_in_gt": int(in_gt.sum())}


def mious_by_part(iou: np.ndarray, pos_gt: np.ndarray, pos_pred: np.ndarray,
                  seen: np.ndarray | None = None) -> dict:
    """`mean_ious` over all classes and, when `seen` (K,) bool is given, under "seen" and
    "unseen" over the classes seen and unseen in training."""
    out = mean_ious(iou, pos_gt, pos_pred, np.ones(len(iou), dtype=bool))
    if seen is not None:
        seen = np.asarray(seen, dtype=bool)
        out["seen"] = mean_ious(iou, pos_gt, pos_pred, seen)
        out["unseen"] = mean_ious(iou, pos_gt, pos_pred, ~seen)
    return out


def segmentation_scores(conf: np.ndarray, seen: np.ndarray | None = None) -> dict:
    """Scores of a (K, K) confusion matrix: both mIoU formulas, pixel accuracy, per-class
    IoU (None for classes in neither ground truth nor prediction), and the mIoUs over
    classes seen and unseen in training when `seen` (K,) bool is given."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    pos_gt, pos_pred = conf.sum(axis=1), conf.sum(axis=0)
    union = pos_gt + pos_pred - tp
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
    out = mious_by_part(iou, pos_gt, pos_pred, seen)
    out["pixel_accuracy"] = float(tp.sum() / pos_gt.sum()) if pos_gt.sum() else None
    out["per_class_iou"] = [float(v) if u > 0 else None for v, u in zip(iou, union)]
    return out
