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


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                     ignore: int = 255) -> np.ndarray:
    """(K, K) int64 counts, rows = ground-truth class, columns = predicted class.
    pred, gt: (H, W) integer label maps; pred must lie in [0, K)."""
    keep = gt != ignore
    g, p = gt[keep].astype(np.int64), pred[keep].astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        raise ValueError(f"ground-truth labels outside [0, {num_classes}) and not the ignore "
                         f"label {ignore}: {sorted(set(np.unique(g)) - set(range(num_classes)))}"
                         " (wrong class list for this dataset?)")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted labels outside [0, {num_classes})")
    return np.bincount(g * num_classes + p, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


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
